"""harness.compare: teachers x students from several runs, and the `opd compare` command."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from test_analysis import planted_nodes

from harness.cli import main
from harness.compare import best_teachers, compare, matrix, rank_agreement
from harness.leaderboard import leaderboard
from harness.records import NODE_SCHEMA, QUESTION_SCHEMA, rows_to_table, write_table


def two_students():
    small = planted_nodes(n_questions=6)
    large = planted_nodes(n_questions=6, seed=1)
    large["student"] = "large"
    # the large student prefers "near": swap its alignments
    swap = large.teacher.map({"near": "far", "far": "near"})
    large["teacher"] = swap
    return pd.concat([small, large], ignore_index=True)


def test_matrix_ranks_agreement_and_best():
    nodes = two_students()
    board = leaderboard(nodes, resamples=30, permutations=100)
    wide = matrix(board)
    rkl = wide[wide.loss == "rkl"].set_index("teacher")
    assert rkl.loc["far", "s rank"] == 1 and rkl.loc["near", "s rank"] == 2
    assert rkl.loc["near", "large rank"] == 1
    assert rkl.loc["far", "s walign"] == pytest.approx(
        board.query("student == 's' and teacher == 'far' and loss == 'rkl'").walign.iloc[0])
    agreement = rank_agreement(board)
    assert (agreement.tau == -1.0).all() and (agreement.teachers == 2).all()
    best = best_teachers(board).set_index(["student", "loss"])
    row = best.loc[("s", "rkl")]
    assert row.best == "far" and row.runner_up == "near"
    walign = board.query("student == 's' and loss == 'rkl'").set_index("teacher").walign
    assert row.margin == pytest.approx(walign["far"] - walign["near"])
    assert row.p_runner_up == pytest.approx(
        board.query("student == 's' and loss == 'rkl' and teacher == 'near'").p_vs_leader.iloc[0])
    assert row.p_runner_up == pytest.approx(2 / 64)  # 6 questions all one way: exact sign-flip p = 2 / 2^6
    assert board.query("student == 's' and loss == 'rkl' and teacher == 'near'").behind.iloc[0]


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
    assert set(compare(nodes, resamples=10, permutations=10)) == set(out)
