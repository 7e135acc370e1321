"""harness.analysis on synthetic nodes with planted relations, and the `opd analyze` command."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_leaderboard import node_row

from harness.analysis import VARIABLES, analyze, correlations, oracle_routing, proxy_ranking
from harness.cli import main
from harness.records import NODE_SCHEMA, QUESTION_SCHEMA, rows_to_table, write_table

TEACHERS = ("near", "far")


def planted_nodes(n_questions=8, rollouts=2, positions=4, seed=0):
    """Teacher "far" has larger KL and alignment rising with KL; "near" has small KL and lower alignment.

    Node (q, r, 0) is where "near" is best, every other node "far": the best teacher switches once per rollout.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for teacher in TEACHERS:
        for q in range(n_questions):
            for r in range(rollouts):
                for pos in range(positions):
                    kl = float(rng.uniform(0.5, 2.0) if teacher == "far" else rng.uniform(0.01, 0.1))
                    align = 0.4 * kl + 0.01 * rng.normal() if teacher == "far" else 0.1
                    if pos == 0:
                        align = 0.6 if teacher == "near" else 0.2
                    rows.append(node_row("boolq", "s", teacher, f"q{q}", r, pos, rollout_len=positions,
                                         depth_norm=pos / positions, kl_student_teacher=kl, l2=kl / 2,
                                         ideal_norm=1.0, rollout_correct=bool(r),
                                         **{f"align_{loss}": align for loss in ("rkl", "fkl", "jsd", "sampled")}))
    return pd.DataFrame(rows)


def test_correlations_find_planted_relation():
    table = correlations(planted_nodes(), resamples=100)
    far = table[(table.teacher == "far") & (table.loss == "rkl")].set_index("variable")
    assert set(VARIABLES) <= set(far.index)
    assert far.loc["l2", "rho"] == pytest.approx(far.loc["kl_student_teacher", "rho"])  # l2 = kl / 2: same ranks
    assert far.loc["kl_student_teacher", "questions"] == 8 and far.loc["kl_student_teacher", "nodes"] == 64
    row = far.loc["kl_student_teacher"]
    assert row.rho_lo <= row.rho <= row.rho_hi
    # a constant variable (cos_pq is the same default everywhere) has no correlation
    assert np.isnan(far.loc["cos_pq", "rho"])
    grpo = table[table.loss == "grpo"]
    assert list(grpo.variable) == ["depth_norm"]


def test_oracle_routing_gain_and_switches():
    nodes = planted_nodes()
    table = oracle_routing(nodes, resamples=100).set_index("loss")
    row = table.loc["rkl"]
    wide = nodes.pivot_table(index=["question_id", "rollout_id", "position"], columns="teacher", values="align_rkl")
    assert row.best_single == "far"
    assert row.oracle_align == pytest.approx(wide.max(axis=1).mean())
    assert row.gain == pytest.approx(wide.max(axis=1).mean() - wide["far"].mean())
    assert row.gain_lo <= row.gain <= row.gain_hi
    # per rollout of 4 nodes: near, far, far, far -> 1 switch in 3 consecutive pairs
    assert row.switch_pairs == 8 * 2 * 3 and row.switch_rate == pytest.approx(1 / 3)


def test_proxy_ranking_tau():
    table = proxy_ranking(planted_nodes(), resamples=50).set_index("loss")
    row = table.loc["rkl"]
    assert row.proxy_order == "far > near" and row.teachers == 2
    far = planted_nodes().query("teacher == 'far'").align_rkl.mean()
    assert row.tau == (1.0 if far > 0.1 else -1.0)
    assert row.tau_lo <= row.tau <= row.tau_hi


def test_opd_analyze_json(tmp_path, capsys):
    nodes = planted_nodes(n_questions=3)
    write_table(rows_to_table(nodes.to_dict("records"), NODE_SCHEMA), tmp_path / "nodes.parquet")
    write_table(rows_to_table([], QUESTION_SCHEMA), tmp_path / "questions.parquet")
    assert main(["analyze", str(tmp_path), "--format", "json", "--resamples", "30"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"correlations", "routing", "proxy"}
    assert all("rho_lo" in record for record in out["correlations"])
    assert set(analyze(nodes, resamples=10)) == set(out)
