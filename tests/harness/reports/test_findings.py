"""harness.reports.findings: each of the paper's findings planted in synthetic nodes is reproduced, its opposite is called
opposite, noise is inconclusive; estimates checked against pandas / scipy on the same rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from harness.cli.main import main
from harness.reports import stats
from harness.reports.findings import by_size, findings
from harness.storage.records import NODE_SCHEMA, QUESTION_SCHEMA, rows_to_table, write_table
from tests.helpers import node_row

OPTIONS = stats.Options(permutations=2000, resamples=200)
TEACHERS = ("self:correct-demo", "self:self-demo", "self:correct-wrong", "model:big")


def planted(student="s@int4", questions=16, incorrect_boost=0.2, wrong_penalty=0.15, self_vs_external=0.1,
            depth_slope=0.4, seed=0):
    """Alignment = teacher level + boost on incorrect rollouts + slope * depth + KL effect + noise."""
    rng = np.random.default_rng(seed)
    level = {"self:correct-demo": 0.3, "self:self-demo": 0.3, "self:correct-wrong": 0.3 - wrong_penalty,
             "model:big": 0.3 - self_vs_external}
    rows = []
    for q in range(questions):
        base = rng.normal(0, 0.1)
        for r in range(4):
            correct = r < 2
            for pos in range(5):
                depth = pos / 5
                entropy = rng.uniform(0.5, 2)
                weight = float(rng.uniform(0.5, 1.5))
                for teacher in TEACHERS:
                    kl = float(rng.uniform(0.1, 1.0))
                    align = (level[teacher] + base + (0.0 if correct else incorrect_boost) + depth_slope * depth
                             + 0.3 * kl + rng.normal(0, 0.1))
                    rows.append(node_row("boolq", student, teacher, f"q{q}", r, pos, rollout_correct=correct,
                                         depth_norm=depth, entropy=entropy, ideal_norm=weight, kl_student_teacher=kl,
                                         l2=kl / 3, cos_pq=1 - kl, rollout_len=5,
                                         **{f"align_{l}": float(align) for l in ("rkl", "fkl", "jsd", "sampled")}))
    return pd.DataFrame(rows)


def test_planted_findings_are_reproduced():
    nodes = pd.concat([planted("s@int4", self_vs_external=0.2, depth_slope=0.8),
                       planted("s@int8", self_vs_external=0.0, seed=1)], ignore_index=True)
    table = findings(nodes, options=OPTIONS)
    claims = table[table.direction != "(context)"]
    assert (claims.verdict == "reproduced").all(), claims[["finding", "test", "student", "estimate", "p_holm"]]
    assert {row.split()[0] for row in claims.finding} == {"1", "2", "3", "4", "5"}
    # finding 1 by hand: per question, mean over teachers of (mean align | correct - mean align | incorrect)
    int4 = nodes[nodes.student == "s@int4"]
    per = int4.groupby(["question_id", "teacher", "rollout_correct"]).align_rkl.mean().unstack()
    by_hand = (per[True] - per[False]).groupby(level="question_id").mean().mean()
    row = table[(table.finding.str.startswith("1")) & (table.student == "s@int4")].iloc[0]
    assert row.estimate == pytest.approx(by_hand) and row.estimate == pytest.approx(-0.2, abs=0.05)
    # finding 4 by hand: Spearman over every teacher's nodes
    kl = table[(table.test == "Spearman(align, kl_student_teacher)") & (table.student == "s@int4")].iloc[0]
    assert kl.estimate == pytest.approx(scipy.stats.spearmanr(int4.kl_student_teacher, int4.align_rkl).statistic)
    # Holm over every claim
    np.testing.assert_allclose(claims.p_holm, stats.holm(claims.p))
    # finding 2: the smaller student's self contexts gain 0.2 on the external teacher, the larger's 0
    interaction = table[table.student == "s@int4 vs s@int8"].iloc[0]
    assert interaction.estimate == pytest.approx(0.2, abs=0.05)


def _partial_rank_correlation(frame):
    """Spearman of depth and alignment given entropy, as the Pearson correlation of the residuals of each rank
    vector regressed (least squares) on the entropy ranks."""
    ranks = {c: scipy.stats.rankdata(frame[c]) for c in ("depth_norm", "align_rkl", "entropy")}
    design = np.column_stack([np.ones(len(frame)), ranks["entropy"]])
    residual = {c: ranks[c] - design @ np.linalg.lstsq(design, ranks[c], rcond=None)[0]
                for c in ("depth_norm", "align_rkl")}
    return float(np.corrcoef(residual["depth_norm"], residual["align_rkl"])[0, 1])


@pytest.mark.parametrize("slopes, verdict", [((0.8, 0.0), "reproduced"), ((0.0, 0.8), "opposite")])
def test_depth_rises_more_clearly_for_the_smaller_student(slopes, verdict):
    nodes = pd.concat([planted("s@int4", depth_slope=slopes[0]), planted("s@int8", depth_slope=slopes[1], seed=1)],
                      ignore_index=True)
    table = findings(nodes, options=OPTIONS)
    row = table[table.test == "Spearman(align, depth | entropy) of s@int4 minus that of s@int8"].iloc[0]
    expected = (_partial_rank_correlation(nodes[nodes.student == "s@int4"])
                - _partial_rank_correlation(nodes[nodes.student == "s@int8"]))
    assert row.estimate == pytest.approx(expected, abs=1e-9)
    assert row.student == "s@int4 vs s@int8" and row.questions == 16 and row.lo < row.estimate < row.hi
    assert row.verdict == verdict


def test_opposite_and_inconclusive():
    nodes = planted(incorrect_boost=-0.2, wrong_penalty=0.0, depth_slope=0.0)
    table = findings(nodes, options=OPTIONS).set_index("test")
    assert table.loc["ok_minus_bad, mean over teachers", "verdict"] == "opposite"
    wrong = table[table.index.str.startswith("walign(self:correct-wrong)")]
    assert len(wrong) == 2 and (wrong.verdict == "inconclusive").all() and wrong.mde.notna().all()
    small = findings(planted(questions=6), options=OPTIONS)
    assert (small.verdict == "too few questions").all()


def test_sizes_from_specs_and_the_command(tmp_path, capsys):
    assert by_size(["m", "m@int8", "m@int4", "m@prune:0.6"]) == ["m@int4", "m@prune:0.6", "m@int8", "m"]
    assert by_size(["m@int8", "m@int4:g32", "m@int4", "m@int4:g128"]) == ["m@int4", "m@int4:g128", "m@int4:g32",
                                                                            "m@int8"]
    nodes = planted(questions=10)
    write_table(rows_to_table(nodes.to_dict("records"), NODE_SCHEMA), tmp_path / "nodes.parquet")
    write_table(rows_to_table([], QUESTION_SCHEMA), tmp_path / "questions.parquet")
    assert main(["findings", str(tmp_path), "--format", "json", "--permutations", "200", "--resamples", "50"]) == 0
    out = capsys.readouterr().out
    assert '"verdict"' in out and '"notes"' in out
    assert main(["findings", str(tmp_path), "--loss", "grpo"]) == 2


def test_finding_one_needs_nodes_past_the_divergence_and_small_claims_stay_out_of_holm():
    """The planted incorrect-path boost on nodes whose prefix a rollout of the other outcome shares (every node at
    position 0) tests nothing: finding 1 is "not testable", with no estimate. Claims on 6 questions have no Holm p
    and do not enlarge the family: Holm over the other claims equals Holm computed on them alone."""
    nodes = planted().assign(prefix_shared=True)
    row = findings(nodes, options=OPTIONS).set_index("test").loc["ok_minus_bad, mean over teachers"]
    assert row.verdict == "not testable" and row.questions == 0 and np.isnan(row.estimate) and np.isnan(row.mde)
    both = pd.concat([planted("s@int4"), planted("s@int8", questions=6, seed=2)], ignore_index=True)
    table = findings(both, options=OPTIONS)
    claims = table[table.direction != "(context)"]
    small = claims.questions < stats.MIN_QUESTIONS
    assert small.any() and claims[small].p_holm.isna().all()
    np.testing.assert_allclose(claims[~small].p_holm, stats.holm(claims[~small].p.to_numpy()))
