"""End to end on the embedded demo: nodes diagnosed per CPU-minute, and adding a teacher with the reuse cache.

Issue (speed and scale): "end-to-end nodes diagnosed per CPU-minute on the demo". The demo is ``opd run`` without
arguments: ``harness.cli.commands.run.DEMO_ARGS`` (BoolQ, SmolLM2-135M-Instruct, teachers ``self:correct-demo`` and ``self``,
3 questions, G = 4, B = 1, M = 2, METHOD's other defaults), run here through ``harness.workflows.runner.run`` into a temporary
directory with a fresh, empty reuse cache, as a first ``opd run`` finds it.

* ``test_demo_nodes_per_cpu_minute``: nodes per CPU-minute (``time.process_time`` over the whole ``run`` call,
  every thread of the process) and per wall-clock minute. The student is loaded once beforehand (a few seconds
  from the on-disk cache), so the figure is the diagnostic's own work, data loading and record writing included.
* ``test_add_teacher_with_reuse_cache_vs_from_scratch``: side by side, adding ``self:self-demo`` to that finished run
  (same ``out``, one more teacher, same reuse cache: only the new teacher's forward passes and scoring run) against
  the same three-teacher run computed from scratch (new ``out``, no cache). The two must give the same records.
  ``reuse_speedup`` = scratch seconds / cached-add seconds.

* ``test_demo_informative_nodes_per_cpu_minute_vs_previous_commit`` and
  ``test_demo_generation_vs_plain_batched_generate``: the issue's aims 4 and 3 (see each docstring).

The whole file takes about 15-20 minutes on 2 CPU cores (five demo-sized runs, one cached add, one replay).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from local import local_data, local_student
from processes import BASELINE_COMMIT, ROOT, environment, extract_commit, run_alone
from replay import replay_with_generate

from harness.api.data import resolve_data_dir
from harness.cli.commands.run import DEMO_ARGS
from harness.sampling.models import load_model
from harness.storage.cache import WorkCache
from harness.workflows.runner import RunConfig, run

ADDED_TEACHER = "self:self-demo"
_DEMO: dict = {}  # the demo run, made once per module and reused by the add-teacher benchmark


def demo_config() -> RunConfig:
    """``RunConfig`` of ``opd run`` with no arguments, built by the CLI itself from ``DEMO_ARGS``."""
    from harness.cli.commands.run import config_from
    from harness.cli.main import build_parser

    return config_from(build_parser().parse_args(["run", *DEMO_ARGS]))


def _run(config: RunConfig, out: Path, cache: WorkCache | None) -> tuple[dict, float, float]:
    """``run`` with its CPU seconds (all threads) and wall seconds."""
    cpu, wall = time.process_time(), time.perf_counter()
    meta = run(config, out, cache=cache)
    return meta, time.process_time() - cpu, time.perf_counter() - wall


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    local_data("boolq")
    local_student(demo_config().student)  # loaded (and dequantised once) outside the timings
    return tmp_path_factory.mktemp("end_to_end")


def _demo(workdir: Path) -> dict:
    if not _DEMO:
        cache = WorkCache(workdir / "cache")  # fresh and empty, as a first `opd run` finds its cache
        meta, cpu_s, wall_s = _run(demo_config(), workdir / "demo", cache)
        _DEMO.update(meta=meta, cpu_s=cpu_s, wall_s=wall_s, cache=cache)
    return _DEMO


def test_demo_nodes_per_cpu_minute(benchmark, workdir):
    demo = benchmark.pedantic(lambda: _demo(workdir), rounds=1, iterations=1)
    meta, cpu_s, wall_s = demo["meta"], demo["cpu_s"], demo["wall_s"]
    counts = meta["counts"]
    nodes = counts["nodes"]
    benchmark.extra_info.update(
        nodes_per_cpu_minute=round(60 * nodes / cpu_s, 2), nodes_per_wall_minute=round(60 * nodes / wall_s, 2),
        nodes=nodes, informative_nodes=counts["informative_nodes"], questions=counts["questions"],
        rollouts=counts["rollouts"], teachers=len(meta["config"]["teachers"]),
        generated_tokens=counts["generated_tokens_this_session"], cpu_s=round(cpu_s, 1), wall_s=round(wall_s, 1),
        threads=meta.get("threads"), harness_nodes_per_minute=meta["timings"]["nodes_per_minute"],
    )
    print("\n" + ", ".join(f"{k}={v}" for k, v in benchmark.extra_info.items()))


def _records(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    nodes = pq.read_table(out / "nodes.parquet").to_pandas()
    questions = pq.read_table(out / "questions.parquet").to_pandas()
    nodes = nodes.sort_values(["question_id", "rollout_id", "position", "teacher"]).reset_index(drop=True)
    questions = questions.sort_values(["question_id", "rollout_id"]).reset_index(drop=True)
    return nodes, questions


def _same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    except AssertionError:
        return False
    return True


def test_add_teacher_with_reuse_cache_vs_from_scratch(benchmark, workdir):
    demo = _demo(workdir)
    base = demo_config()
    extended = dataclasses.replace(base, teachers=(*base.teachers, ADDED_TEACHER))

    added = {}

    def add():  # the finished demo run, one more --teacher, the same reuse cache
        added["meta"], added["cpu_s"], added["wall_s"] = _run(extended, workdir / "demo", demo["cache"])

    benchmark.pedantic(add, rounds=1, iterations=1)
    scratch_meta, scratch_cpu, scratch_wall = _run(extended, workdir / "scratch", None)  # new out, no cache

    added_nodes, added_questions = _records(workdir / "demo")
    scratch_nodes, scratch_questions = _records(workdir / "scratch")
    same = _same(added_nodes, scratch_nodes) and _same(added_questions, scratch_questions)
    benchmark.extra_info.update(
        reuse_speedup=round(scratch_wall / added["wall_s"], 2), cached_add_s=round(added["wall_s"], 1),
        scratch_s=round(scratch_wall, 1), cached_add_cpu_s=round(added["cpu_s"], 1),
        scratch_cpu_s=round(scratch_cpu, 1), teachers=len(extended.teachers),
        nodes=scratch_meta["counts"]["nodes"], records_identical=same,
        cached_add_generated_tokens=added["meta"]["counts"]["generated_tokens_this_session"],
        scratch_generated_tokens=scratch_meta["counts"]["generated_tokens_this_session"],
    )
    hits = added["meta"].get("cache_hits") or {}
    benchmark.extra_info.update(cache_sampled_hits=hits.get("sampled_hits"),
                                cache_teacher_hits=sum((hits.get("teacher_hits") or {}).values()),
                                cache_teacher_misses=sum((hits.get("teacher_misses") or {}).values()))
    print("\n" + ", ".join(f"{k}={v}" for k, v in benchmark.extra_info.items()))
    assert same, "adding a teacher through the reuse cache gave other records than computing the run from scratch"


# ------------------------------------------------------------------------------------------------ the aims


def test_demo_informative_nodes_per_cpu_minute_vs_previous_commit(benchmark, workdir):
    """Issue (cost per informative node), aim 4: the demo's informative nodes per CPU-minute, this checkout against
    the previous commit's code path (``processes.BASELINE_COMMIT``, extracted with ``git archive``), each run as
    a user runs it (``opd run`` without arguments: each code path's own demo, ``--no-cache``, a separate process,
    CPU seconds of every thread from start to exit, imports and model loading included). Also this checkout's
    demo with METHOD's ``--selection windows``, which separates the pipeline's share of the gain from the
    selection's. This checkout's demo runs once before and once after the baseline and counts by their mean CPU
    seconds, so a machine that speeds up or slows down during the benchmark does not favour either side."""
    baseline_dir = extract_commit(BASELINE_COMMIT, workdir / "baseline-code")
    env = environment(OPD_DATA_DIR=str(resolve_data_dir(None)))
    windows_args = _with_selection(DEMO_ARGS, "windows")
    results = {}

    def measure():
        first = run_alone(ROOT, [], workdir / "current-demo", env)
        if windows_args != DEMO_ARGS:
            results["current_windows"] = run_alone(ROOT, windows_args, workdir / "current-windows", env)
        if baseline_dir is not None:
            results["baseline"] = run_alone(baseline_dir, [], workdir / "baseline-demo", env)
        second = run_alone(ROOT, [], workdir / "current-demo-again", env)
        assert (first.informative, first.tokens) == (second.informative, second.tokens)  # the same work twice
        results["current"] = dataclasses.replace(first, cpu_s=(first.cpu_s + second.cpu_s) / 2,
                                                 wall_s=(first.wall_s + second.wall_s) / 2)
        info["current_cpu_s_before_after"] = [round(first.cpu_s, 1), round(second.cpu_s, 1)]

    info: dict = {}
    benchmark.pedantic(measure, rounds=1, iterations=1)
    for name, result in results.items():
        info[f"{name}_informative_per_cpu_minute"] = round(60 * result.informative / result.cpu_s, 2)
        info.update({f"{name}_informative": result.informative, f"{name}_nodes": result.meta["counts"]["nodes"],
                     f"{name}_cpu_s": round(result.cpu_s, 1), f"{name}_wall_s": round(result.wall_s, 1),
                     f"{name}_tokens": result.tokens,
                     f"{name}_selection": result.meta["config"]["settings"].get("selection", "windows")})
    if "baseline" in results:
        for name in ("current", "current_windows"):
            if name in results:
                info[f"{name}_vs_baseline"] = round(info[f"{name}_informative_per_cpu_minute"]
                                                    / info["baseline_informative_per_cpu_minute"], 2)
    else:
        info["baseline"] = f"commit {BASELINE_COMMIT} not available"
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k}={v}" for k, v in info.items()))


def _with_selection(args: list[str], selection: str) -> list[str]:
    args = list(args)
    if "--selection" in args:
        args[args.index("--selection") + 1] = selection
    else:
        args += ["--selection", selection]
    return args


def test_demo_generation_vs_plain_batched_generate(benchmark, workdir, monkeypatch):
    """Issue, aim 3: the demo's generated tokens per second, the whole run's wall time (every teacher pass,
    grading, selection and record writing included; the student loaded beforehand), against plain batched
    ``model.generate`` on the same model and the same batch shapes: every generation call of the demo is replayed
    as ``generate`` of as many rows (in chunks of the live-row cap the pipeline honours, ``rows_per_batch``),
    continuing a prefilled prefix as long as the call's longest (the cache handed to ``generate``, so only
    decoding is timed), each row sampling the call's mean row length. Aim >= 0.8. The demo's calls merge its
    questions (``harness.sampling.lockstep``), so the replayed shapes are the merged ones. The demo runs before and after
    the replay (the same records both times) and counts by its mean wall time, so a machine whose speed drifts
    during the benchmark favours neither side."""
    import harness.sampling.backends as backends

    calls = []
    original = backends.generate_branches

    def recording(lm, sources, branches, **kwargs):
        generated = original(lm, sources, branches, **kwargs)
        calls.append((len(branches), max(b.prefix_len for b in branches), [len(g.tokens) for g in generated]))
        return generated

    monkeypatch.setattr(backends, "generate_branches", recording)
    config = demo_config()
    student = load_model(config.student)
    measured = {}

    def demo():
        measured["meta"], measured["cpu_s"], measured["wall_s"] = _run(config, workdir / "engine-demo", None)

    benchmark.pedantic(demo, rounds=1, iterations=1)
    monkeypatch.setattr(backends, "generate_branches", original)
    demo_tokens = measured["meta"]["counts"]["generated_tokens_this_session"]
    assert demo_tokens == sum(sum(lengths) for _, _, lengths in calls)
    reference_tokens, reference_s = replay_with_generate(student, calls)
    again, _, again_wall_s = _run(config, workdir / "engine-demo-again", None)
    assert again["counts"] == measured["meta"]["counts"]  # the same work as the first time
    demo_wall_s = (measured["wall_s"] + again_wall_s) / 2
    demo_rate, reference_rate = demo_tokens / demo_wall_s, reference_tokens / reference_s
    info = {"engine_fraction": round(demo_rate / reference_rate, 3), "demo_tokens": demo_tokens,
            "demo_wall_s": round(demo_wall_s, 1),
            "demo_wall_s_before_after": [round(measured["wall_s"], 1), round(again_wall_s, 1)],
            "demo_tokens_per_s": round(demo_rate, 1),
            "generate_tokens": reference_tokens, "generate_s": round(reference_s, 1),
            "generate_tokens_per_s": round(reference_rate, 1), "generation_calls": len(calls),
            "mean_rows_per_call": round(sum(rows for rows, _, _ in calls) / max(len(calls), 1), 1)}
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k}={v}" for k, v in info.items()))
