"""harness.reports.compare: teachers x students from several runs, and the `opd compare` command."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.api.errors import ConfigError
from harness.cli.main import main
from harness.reports import stats
from harness.reports.compare import best_teachers, compare, load_runs, matrix, rank_agreement
from harness.reports.leaderboard import build
from harness.storage.records import NODE_SCHEMA, QUESTION_SCHEMA, rows_to_table, write_json, write_table
from tests.helpers import planted_nodes


def two_students():
    small = planted_nodes(n_questions=12)
    large = planted_nodes(n_questions=12, seed=1)
    large["student"] = "large"
    # the large student prefers "near": swap its alignments
    swap = large.teacher.map({"near": "far", "far": "near"})
    large["teacher"] = swap
    return pd.concat([small, large], ignore_index=True)


def test_matrix_ranks_agreement_and_best():
    nodes = two_students()
    board = build(nodes, options=stats.Options(permutations=5000, resamples=30))  # 2^12 < 5000: exact
    wide = matrix(board.table)
    rkl = wide[wide.loss == "rkl"].set_index("teacher")
    assert rkl.loc["far", "s rank"] == 1 and rkl.loc["near", "s rank"] == 2
    assert rkl.loc["near", "large rank"] == 1
    assert rkl.loc["far", "s walign"] == pytest.approx(
        board.table.query("student == 's' and teacher == 'far' and loss == 'rkl'").walign.iloc[0])
    agreement = rank_agreement(board.table)
    assert (agreement.tau == -1.0).all() and (agreement.teachers == 2).all()
    assert (agreement.p == 1.0).all()  # two teachers in opposite order: one of the 2! orders as extreme, each way
    best = best_teachers(board).set_index(["student", "loss"])
    row = best.loc[("s", "rkl")]
    assert row.best == "far" and row.runner_up == "near"
    assert row.group == "a" and row.runner_up_group == "b" and row.verdict == "ahead"
    walign = board.table.query("student == 's' and loss == 'rkl'").set_index("teacher").walign
    assert row["diff"] == pytest.approx(walign["far"] - walign["near"])  # the same nodes: the pair's difference
    assert row.p_holm == pytest.approx(2 / 2 ** 12)  # 12 questions all one way: exact sign-flip p = 2 / 2^12
    assert board.table.query("student == 's' and loss == 'rkl' and teacher == 'near'").behind.iloc[0] == "far"
    # a leader claim per cell: BH across the students of each loss, by hand (two p-values: q = max(p_(1) 2, p_(2)))
    best = best_teachers(board)
    for _, group in best.groupby("loss"):
        p = np.sort(group.p_holm.to_numpy(float))
        by_hand = {p[0]: min(p[0] * 2, p[1]), p[1]: p[1]}
        for r in group.itertuples():
            assert r.q_bh == pytest.approx(by_hand[r.p_holm])


def test_opd_compare_two_runs(tmp_path, capsys):
    nodes = two_students()
    for student in ("s", "large"):
        run = tmp_path / student
        part = nodes[nodes.student == student]
        write_table(rows_to_table(part.to_dict("records"), NODE_SCHEMA), run / "nodes.parquet")
        write_table(rows_to_table([], QUESTION_SCHEMA), run / "questions.parquet")
    assert main(["compare", str(tmp_path / "s"), str(tmp_path / "large"), "--format", "json", "--resamples", "20",
                 "--permutations", "50"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"matrix", "agreement", "best"}
    assert len(out["best"]) == 2 * 4
    assert set(compare(nodes, options=stats.Options(resamples=10, permutations=10))) == set(out)


# ---------------------------------------------------------------- several runs of one (task, student)

CONFIG = {"task": "boolq", "student": "smollm2-135m", "seed": 0, "backend": "transformers",
          "settings": {"rollouts": 4, "continuations": 2}, "teachers": [], "limit": 2}


def write_run(path, nodes, **config):
    write_table(rows_to_table(nodes.to_dict("records"), NODE_SCHEMA), path / "nodes.parquet")
    write_table(rows_to_table([], QUESTION_SCHEMA), path / "questions.parquet")
    write_json({"config": {**CONFIG, **config}, "device": "cpu", "dtype": "float32"}, path / "run.json")
    return path


def issue_runs(tmp_path):
    """RUN_A: teachers self and demo on 2 questions; RUN_B: the same seed, five teachers on question 0 (so its demo
    rows of q0 are A's rows again); RUN_C: an @int4 student."""
    both = planted_nodes(n_questions=2).assign(task="boolq", student="smollm2-135m")
    demo = both[both.teacher == "far"].assign(teacher="self:correct-demo")
    control = both[both.teacher == "near"].assign(teacher="self")
    run_a = pd.concat([control, demo], ignore_index=True)
    extra = [both[both.teacher == "near"].assign(teacher=name) for name in ("x", "y", "z")]
    run_b = pd.concat([control, demo, *extra], ignore_index=True)
    run_b = run_b[run_b.question_id == "q0"]
    run_c = run_a.assign(student="smollm2-135m@int4")
    return (write_run(tmp_path / "A", run_a, teachers=["self", "self:correct-demo"]),
            write_run(tmp_path / "B", run_b, teachers=["self", "self:correct-demo", "x", "y", "z"], limit=1),
            write_run(tmp_path / "C", run_c, student="smollm2-135m@int4"), run_a)


def test_runs_of_one_student_stay_separate_columns_by_default(tmp_path):
    a, b, c, run_a = issue_runs(tmp_path)
    runs = load_runs([a, b, c])
    students = set(runs.nodes.student)
    assert students == {"smollm2-135m [A]", "smollm2-135m [B]", "smollm2-135m@int4"}
    assert runs.notes and "A, B" in runs.notes[0] and "--combine" in runs.notes[0]
    # column A holds exactly RUN_A's demo rows: nothing from B is pooled into it
    demo_a = runs.nodes[(runs.nodes.student == "smollm2-135m [A]") & (runs.nodes.teacher == "self:correct-demo")]
    assert len(demo_a) == len(run_a[run_a.teacher == "self:correct-demo"])
    wide = matrix(build(runs.nodes, options=stats.Options(permutations=50)).table)
    assert {"smollm2-135m [A] walign", "smollm2-135m [B] walign", "smollm2-135m@int4 walign"} <= set(wide.columns)


def test_combine_counts_every_node_once(tmp_path):
    a, b, c, run_a = issue_runs(tmp_path)
    runs = load_runs([a, b, c], combine=True)
    student = runs.nodes[runs.nodes.student == "smollm2-135m"]
    demo = student[student.teacher == "self:correct-demo"]
    # B's demo rows of q0 are A's again: the combined column has A's rows, once
    assert len(demo) == len(run_a[run_a.teacher == "self:correct-demo"])
    assert not student.duplicated(["question_id", "rollout_id", "position", "teacher"]).any()
    assert set(student.teacher) == {"self", "self:correct-demo", "x", "y", "z"}
    assert "counted once" in runs.notes[0]
    combined = build(runs.nodes, options=stats.Options(permutations=50)).table
    alone = build(run_a, options=stats.Options(permutations=50)).table
    got = combined[(combined.student == "smollm2-135m") & (combined.teacher == "self:correct-demo")]
    want = alone[alone.teacher == "self:correct-demo"]
    pd.testing.assert_series_equal(got.walign.reset_index(drop=True), want.walign.reset_index(drop=True))


def test_combine_refuses_other_configurations_and_differing_copies(tmp_path):
    a, b, _, run_a = issue_runs(tmp_path)
    other_seed = write_run(tmp_path / "D", run_a, seed=1)
    with pytest.raises(ConfigError, match=r"differ in seed"):
        load_runs([a, other_seed], combine=True)
    changed = run_a.copy()
    changed.loc[changed.index[0], "align_rkl"] += 0.5
    different = write_run(tmp_path / "E", changed)
    with pytest.raises(ConfigError, match=r"different values in two runs"):
        load_runs([a, different], combine=True)
    (tmp_path / "E" / "run.json").unlink()
    with pytest.raises(ConfigError, match=r"no readable run\.json"):
        load_runs([a, different], combine=True)


def test_opd_compare_prints_the_note_and_combines_on_request(tmp_path, capsys):
    a, b, c, run_a = issue_runs(tmp_path)
    argv = ["compare", str(a), str(b), str(c), "--format", "json", "--permutations", "50", "--resamples", "10"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert "separate columns" in out["notes"][0]
    assert main([*argv, "--combine"]) == 0
    assert "counted once" in json.loads(capsys.readouterr().out)["notes"][0]
    assert main(["compare", str(a), str(write_run(tmp_path / "F", run_a, seed=9)), "--combine"]) == 2
    assert "differ in seed" in capsys.readouterr().out
