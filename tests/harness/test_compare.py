"""harness.compare: teachers x students from several runs, and the `opd compare` command."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from test_analysis import planted_nodes

from harness.cli import main
from harness.compare import best_teachers, compare, matrix, rank_agreement
from harness import stats
from harness.leaderboard import build
from harness.records import NODE_SCHEMA, QUESTION_SCHEMA, rows_to_table, write_table


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
    best = best_teachers(board).set_index(["student", "loss"])
    row = best.loc[("s", "rkl")]
    assert row.best == "far" and row.runner_up == "near"
    assert row.group == "a" and row.runner_up_group == "b" and row.verdict == "ahead"
    walign = board.table.query("student == 's' and loss == 'rkl'").set_index("teacher").walign
    assert row["diff"] == pytest.approx(walign["far"] - walign["near"])  # the same nodes: the pair's difference
    assert row.p_holm == pytest.approx(2 / 2 ** 12)  # 12 questions all one way: exact sign-flip p = 2 / 2^12
    assert board.table.query("student == 's' and loss == 'rkl' and teacher == 'near'").behind.iloc[0] == "far"


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
