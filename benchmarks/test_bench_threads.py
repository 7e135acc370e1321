"""Robust under load: a demo-sized run alone and beside one competing process of the same kind, side by side for
this checkout and for the previous commit's code path.

Issue (cost per informative node): "beside a competitor at most 2x its time alone (today 7.7x), and alone no slower
than today". Each run is a separate ``opd run`` process as a user starts it (the workload: the embedded demo's
configuration on ``--limit 1``, i.e. one BoolQ question); "beside" means a second ``opd`` process of the same code
(the demo on ``--limit 10``, started first and stopped once the timed run ends) keeps the machine busy for the whole
timed run. Today's code path is the commit before this work (``processes.BASELINE_COMMIT``), extracted with ``git archive`` and run the same way.

Figures: ``slowdown`` = beside seconds / alone seconds for each code path (aim <= 2 for this checkout), and
``alone_vs_baseline`` = this checkout's alone seconds / the baseline's (aim <= 1). The two code paths draw different
random streams (per-row seeds here), so they generate somewhat different token counts; tokens per second are given
next to every time. About 10-15 minutes on 2 CPU cores, most of it the baseline beside its competitor.
"""
from __future__ import annotations

import pytest
from local import local_data
from processes import BASELINE_COMMIT, ROOT, environment, extract_commit, run_alone, run_beside

from harness.cli.commands.run import DEMO_ARGS


def _with_limit(args: list[str], limit: int) -> list[str]:
    """The demo's workload with ``limit`` questions, under METHOD's windows selection: the one design the previous
    commit also has (it refuses --selection), so both code paths do the same work."""
    args = list(args)
    args[args.index("--limit") + 1] = str(limit)
    if "--selection" in args:
        del args[args.index("--selection"):args.index("--selection") + 2]
    return args


@pytest.fixture(scope="module")
def data_env():
    return environment(OPD_DATA_DIR=str(local_data("boolq")))


def test_threads_alone_and_beside_a_competitor(benchmark, data_env, tmp_path):
    baseline_dir = extract_commit(BASELINE_COMMIT, tmp_path / "baseline")
    args, competitor = _with_limit(DEMO_ARGS, 1), _with_limit(DEMO_ARGS, 10)
    results = {}

    def measure():
        for name, code_dir in (("current", ROOT), ("baseline", baseline_dir)):
            if code_dir is None:
                continue
            # the baseline's own demo arguments are those of its DEMO_ARGS; the workload flags here are explicit
            results[f"{name}_alone"] = run_alone(code_dir, args, tmp_path / f"{name}-alone", data_env)
            results[f"{name}_beside"] = run_beside(code_dir, args, competitor, tmp_path / f"{name}-beside", data_env)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    info = {}
    for key, run in results.items():
        info[f"{key}_s"] = round(run.wall_s, 1)
        info[f"{key}_tokens_per_s"] = round(run.tokens / run.wall_s, 1)
    for name in ("current", "baseline"):
        if f"{name}_alone" in results:
            info[f"{name}_slowdown"] = round(results[f"{name}_beside"].wall_s / results[f"{name}_alone"].wall_s, 2)
    if "baseline_alone" in results:
        info["alone_vs_baseline"] = round(results["current_alone"].wall_s / results["baseline_alone"].wall_s, 2)
    else:
        info["baseline"] = f"commit {BASELINE_COMMIT} not available: current code path only"
    info["threads"] = results["current_alone"].meta.get("threads")
    info["wait_policy"] = results["current_alone"].meta.get("omp_wait_policy")
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k}={v}" for k, v in info.items()))
