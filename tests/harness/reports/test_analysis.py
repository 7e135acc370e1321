"""harness.reports.analysis on synthetic nodes with planted relations (checked against scipy and pandas on the same rows),
and the `opd analyze` command."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from harness.cli.main import main
from harness.reports import stats
from harness.reports.analysis import (
    DEPTH_GIVEN_ENTROPY,
    VARIABLES,
    analyze,
    correlations,
    oracle_routing,
    proxy_ranking,
    reliability,
)
from harness.storage.records import NODE_SCHEMA, QUESTION_SCHEMA, rows_to_table, write_table
from tests.helpers import planted_nodes
from tests.helpers import node_row

OPTIONS = stats.Options(resamples=100, permutations=500)


def test_correlations_match_scipy_with_bh_and_n():
    nodes = planted_nodes()
    table = correlations(nodes, options=OPTIONS)
    far = table[(table.teacher == "far") & (table.loss == "rkl")].set_index("variable")
    assert set(VARIABLES) | {DEPTH_GIVEN_ENTROPY} <= set(far.index)
    rows = nodes[nodes.teacher == "far"]
    assert far.loc["kl_student_teacher", "rho"] == pytest.approx(
        scipy.stats.spearmanr(rows.kl_student_teacher, rows.align_rkl).statistic)
    assert far.loc["l2", "rho"] == pytest.approx(far.loc["kl_student_teacher", "rho"])  # l2 = kl / 2: same ranks
    row = far.loc["kl_student_teacher"]
    assert (row.questions, row.rollouts, row.nodes) == (12, 24, 96)
    assert row.rho_lo <= row.rho <= row.rho_hi and row.p < 0.05
    assert np.isnan(far.loc["cos_pq", "rho"])  # a constant variable has no correlation
    # q: Benjamini-Hochberg over every row of the table, by hand
    p = table.p.to_numpy()[np.isfinite(table.p.to_numpy())]
    by_hand, running = np.empty(p.size), 1.0
    for position, index in enumerate(np.argsort(p)[::-1]):  # largest p first: q_(i) = min over j >= i of p_(j) m / j
        running = min(running, p[index] * p.size / (p.size - position))
        by_hand[index] = running
    np.testing.assert_allclose(table.q.dropna().to_numpy(), by_hand)
    grpo = table[table.loss == "grpo"]
    assert list(grpo.variable) == ["depth_norm", DEPTH_GIVEN_ENTROPY]


def test_depth_controlling_for_entropy_removes_a_selection_confound():
    """Alignment driven by entropy, entropy rising with depth: the plain depth correlation is strong, the partial
    one (controlling for entropy) is not."""
    rng = np.random.default_rng(1)
    rows = []
    for q in range(15):
        for pos in range(8):
            depth = pos / 8
            entropy = depth + 0.1 * rng.normal()
            rows.append(node_row("boolq", "s", "t", f"q{q}", 0, pos, depth_norm=depth, entropy=entropy,
                                 align_rkl=float(entropy + 0.1 * rng.normal())))
    table = correlations(pd.DataFrame(rows), options=OPTIONS)
    rkl = table[table.loss == "rkl"].set_index("variable")
    assert rkl.loc["depth_norm", "rho"] > 0.6 and rkl.loc["depth_norm", "p"] < 0.01
    assert abs(rkl.loc[DEPTH_GIVEN_ENTROPY, "rho"]) < 0.25


def test_oracle_routing_in_sample_bound_and_switches():
    nodes = planted_nodes()
    table = oracle_routing(nodes, options=OPTIONS).set_index("loss")
    row = table.loc["rkl"]
    wide = nodes.pivot_table(index=["question_id", "rollout_id", "position"], columns="teacher", values="align_rkl")
    assert row.best_single == "far"
    assert row.oracle_walign == pytest.approx(wide.max(axis=1).mean())  # unit weights: walign = mean
    assert row.best_single_walign == pytest.approx(wide["far"].mean())
    # per rollout of 4 nodes: near, far, far, far -> 1 switch in 3 consecutive pairs
    assert row.switch_rate == pytest.approx(1 / 3)
    # the planted switch is real: routing wins on held-out halves too
    assert row.cv_gain > 0 and row.p_cv_gain < 0.05 and row.cv_questions == 12
    # a routing claim per cell: BH per loss over the cells with 10+ questions; one cell here, so q = p, and a
    # second student on 6 questions stays out of the family
    assert row.q_cv_gain == pytest.approx(row.p_cv_gain)
    few = nodes[nodes.question_id.isin(sorted(nodes.question_id.unique())[:6])].assign(student="tiny")
    both = oracle_routing(pd.concat([nodes, few], ignore_index=True), options=OPTIONS)
    rkl = both[both.loss == "rkl"].set_index("student")
    assert math.isnan(rkl.loc["tiny", "q_cv_gain"]) and rkl.loc["tiny", "cv_questions"] == 6
    assert rkl.drop("tiny").q_cv_gain.iloc[0] == pytest.approx(row.p_cv_gain)


def test_cross_fitted_gain_has_a_null_that_can_say_no_gain():
    """Two teachers that are noisy copies of each other at every node: the in-sample oracle still 'gains' (max of
    noise), the cross-fitted gain does not."""
    rng = np.random.default_rng(2)
    rows = []
    for q in range(20):
        for pos in range(4):
            truth = rng.normal(0.2, 0.2)
            for teacher in ("x", "y"):
                a, b = truth + 0.2 * rng.normal(), truth + 0.2 * rng.normal()
                rows.append(node_row("boolq", "s", teacher, f"q{q}", 0, pos, align_rkl=(a + b) / 2,
                                     align_rkl_a=a, align_rkl_b=b))
    row = oracle_routing(pd.DataFrame(rows), options=OPTIONS).set_index("loss").loc["rkl"]
    assert row.oracle_walign - row.best_single_walign > 0.05  # the in-sample bound is biased upwards
    assert row.cv_gain_lo < 0 < row.cv_gain_hi and row.p_cv_gain > 0.05
    assert math.isfinite(row.mde_cv_gain)


def test_proxy_ranking_tau():
    table = proxy_ranking(planted_nodes(), options=OPTIONS).set_index("loss")
    row = table.loc["rkl"]
    assert row.proxy_order == "far > near" and row.teachers == 2
    far = planted_nodes().query("teacher == 'far'").align_rkl.mean()
    assert row.tau == (1.0 if far > 0.1 else -1.0)


def test_reliability_per_row_is_spearman_brown():
    nodes = planted_nodes()
    table = reliability(nodes).set_index(["teacher", "loss"])
    rows = nodes[nodes.teacher == "far"]
    r = np.corrcoef(rows.align_rkl_a, rows.align_rkl_b)[0, 1]
    assert table.loc[("far", "rkl"), "reliability"] == pytest.approx(2 * r / (1 + r))
    assert table.loc[("far", "rkl"), "nodes"] == len(rows)


def test_opd_analyze_json(tmp_path, capsys):
    nodes = planted_nodes(n_questions=3)
    write_table(rows_to_table(nodes.to_dict("records"), NODE_SCHEMA), tmp_path / "nodes.parquet")
    write_table(rows_to_table([], QUESTION_SCHEMA), tmp_path / "questions.parquet")
    assert main(["analyze", str(tmp_path), "--format", "json", "--resamples", "30", "--permutations", "50"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"correlations", "routing", "proxy", "reliability", "notes"}
    assert all({"rho_lo", "p", "q", "rollouts"} <= set(record) for record in out["correlations"])
    assert all(record["rho_lo"] is None for record in out["correlations"])  # 3 questions: no interval
    assert set(analyze(nodes, options=OPTIONS)) == set(out) - {"notes"}
