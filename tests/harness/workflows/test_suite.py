"""`opd suite`: a grid of tasks x students runs cell by cell, writes leaderboards and a cross-student comparison."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.workflows.runner import ConfigError
from harness.workflows.suite import load_suite, run_suite
from tests.helpers import FAKES, ROOT

SUITE = """
[suite]
name = "tiny"
students = ["tiny-random", "tiny-random:1"]
teachers = ["self", "self:correct-demo"]
losses = ["rkl", "grpo"]

[defaults]
rollouts = 3
continuations = 2
max_new_tokens = 8

[tasks.test-parity]
limit = 2
"""


def _write(tmp_path: Path, text: str = SUITE) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


def test_suite_runs_every_cell_and_compares_students(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["suite", str(_write(tmp_path)), "--out", str(out)]) == 0
    for student in ("tiny-random", "tiny-random_1"):
        cell = out / "test-parity" / student
        rows = json.loads((cell / "leaderboard.json").read_text())
        assert {row["loss"] for row in rows} == {"rkl", "grpo"}
        assert (cell / "nodes.parquet").is_file()
    compare = (out / "test-parity" / "compare.md").read_text()
    assert "tiny-random:1" in compare and "tiny-random" in compare
    assert "2 cells done" in capsys.readouterr().out

    # a teacher added to the suite file: every cell is extended from the reuse cache, nothing is sampled again
    added = SUITE.replace('teachers = ["self", "self:correct-demo"]',
                          'teachers = ["self", "self:correct-demo", "model:tiny-random:1"]')
    assert main(["suite", str(_write(tmp_path, added)), "--out", str(out)]) == 0
    for student in ("tiny-random", "tiny-random_1"):
        meta = json.loads((out / "test-parity" / student / "run.json").read_text())
        assert meta["added_teachers"] == ["model:tiny-random:1"]
        assert meta["counts"]["generated_tokens_this_session"] == 0
        assert meta["cache_hits"]["sampled_hits"] == 2


def test_bad_suite_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="needs \\[suite\\] students"):
        load_suite(_write(tmp_path, "[suite]\nname='x'\n"))
    with pytest.raises(ConfigError, match="unknown options \\['rolouts'\\]"):
        load_suite(_write(tmp_path, SUITE.replace("rollouts = 3", "rolouts = 3")))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_suite(_write(tmp_path, "[suite"))


def test_student_teachers_join_only_their_students_cells(tmp_path):
    text = SUITE.replace("[defaults]", '[suite.student_teachers]\n"tiny-random:1" = ["model:tiny-random"]\n\n[defaults]')
    suite = load_suite(_write(tmp_path, text))
    teachers = {cell.student: cell.config.teachers for cell in suite.cells}
    assert "model:tiny-random" in teachers["tiny-random:1"] and "model:tiny-random" not in teachers["tiny-random"]
    with pytest.raises(ConfigError, match="student_teachers"):
        load_suite(_write(tmp_path, text.replace('"tiny-random:1" =', '"nobody" =')))


def test_example_suite_parses():
    suite = load_suite(ROOT / "suites" / "example.toml")
    assert {(c.task, c.student) for c in suite.cells} >= {("boolq", "smollm2-135m"), ("mmlu", "tiny-random")}


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="needs Ray, which the test extra installs: pip install -e '.[test]'")
def test_suite_on_a_local_ray_instance_matches_sequential(tmp_path, monkeypatch):
    """`opd suite --ray` on a small local Ray instance (2 CPUs, no dashboard, a small object store, no usage
    reporting): the same records as the sequential suite. About 25 s on 2 cores, so CI runs it."""
    import pyarrow.parquet as pq
    import torch

    # a Ray worker with num_cpus=1 runs torch on one thread; float reductions depend on the thread count, so the
    # sequential reference runs on one thread too, and then the records must match bit for bit
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        suite = load_suite(_write(tmp_path), tmp_path / "seq")
        run_suite(suite)
    finally:
        torch.set_num_threads(threads)
    ray_suite = load_suite(_write(tmp_path), tmp_path / "ray")
    import ray

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")  # tests never touch the network
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 1024**2)
    try:
        run_suite(ray_suite, use_ray=True, include=(str(FAKES),))
    finally:
        ray.shutdown()
    import pandas as pd

    for seq_cell, ray_cell in zip(suite.cells, ray_suite.cells):
        for name in ("nodes.parquet", "questions.parquet"):  # pandas compares NaN equal; pyarrow's equals does not
            pd.testing.assert_frame_equal(pq.read_table(seq_cell.out / name).to_pandas(),
                                          pq.read_table(ray_cell.out / name).to_pandas())
