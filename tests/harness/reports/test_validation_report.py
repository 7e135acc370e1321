"""``opd validate``'s statistics against independent computations on hand-made gains (scipy, brute force)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from harness.reports.validation_report import (
    build_report,
    minimum_detectable_rank_correlation,
    render_markdown,
    spearman_exact_p,
)

QUESTIONS = 12
TEACHERS = ["t-a", "t-b", "t-c", "t-d", "t-e"]
DIAG = [f"d{i}" for i in range(8)]


def _evaluation(correct, sampled):
    ids = [f"e{i}" for i in range(len(correct))]
    return {"question_ids": ids, "greedy_correct": list(map(bool, correct)),
            "greedy_parsed": [True] * len(correct), "greedy_response": [""] * len(correct),
            "sampled_correct": [list(map(bool, row)) for row in sampled],
            "sampled_parsed": [[True, i % 3 != 0] for i in range(len(correct))]}


def _fixture():
    rng = np.random.default_rng(3)
    before = _evaluation(rng.integers(0, 2, QUESTIONS), rng.integers(0, 2, (QUESTIONS, 2)))
    results = {("control", 0): {"seed": 0, "after": before, "seconds_per_step": None}}
    afters = {}
    for t, teacher in enumerate(["grpo", *TEACHERS]):
        for seed in (0, 1):
            after = _evaluation(rng.integers(0, 2, QUESTIONS), rng.integers(0, 2, (QUESTIONS, 2)))
            results[(teacher, seed)] = {"seed": seed, "after": after, "seconds_per_step": 1.0}
            afters[(teacher, seed)] = after
    # a diagnostic: per teacher a few nodes on each diagnostic question, with weights
    rows = []
    for teacher in TEACHERS:
        for q in DIAG:
            for position in range(3):
                rows.append({"task": "x", "student": "s", "teacher": teacher, "question_id": q, "rollout_id": 0,
                             "position": position, "informative": True, "context_ok": True,
                             "align_rkl": float(rng.uniform(-1, 1)), "ideal_norm": float(rng.uniform(0.1, 2)),
                             "dnorm_rkl": 1.0, "rollout_correct": bool(position % 2)})
    nodes = pd.DataFrame(rows)
    per_question = {"student": {q: float(rng.uniform()) for q in DIAG}}
    for teacher in TEACHERS:
        per_question[teacher] = {q: float(rng.uniform()) for q in DIAG}
    per_question["model:big"] = {q: float(rng.uniform()) for q in DIAG}
    predictors = {"per_question": per_question,
                  "plain_condition": {t: ("model:big" if t == "t-e" else "student") for t in TEACHERS}}
    protocol = {"config": {"training": {}, "samples": 2}, "eval_range": [8, 20], "train_range": [20, 40],
                "diagnostic_range": [0, 8], "diagnostic_ids": DIAG}
    return protocol, before, results, afters, nodes, predictors


def _sign_flip_p(d):
    return scipy.stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=math.inf,
                                        alternative="two-sided").pvalue


def test_gains_intervals_and_correlations_match_independent_computations():
    protocol, before, results, afters, nodes, predictors = _fixture()
    report = build_report(protocol, before, results, TEACHERS, predictors, nodes, "rkl", resamples=300)
    rows = {r["condition"]: r for r in report["rows"]}
    assert rows["control"]["gain_sampled"]["estimate"] == 0 and rows["control"]["gain_greedy"]["p"] == 1
    base_sampled = np.mean(before["sampled_correct"], axis=1)
    gains = {}
    for teacher in ["grpo", *TEACHERS]:
        after = np.mean([np.mean(afters[(teacher, s)]["sampled_correct"], axis=1) for s in (0, 1)], axis=0)
        d = after - base_sampled
        gains[teacher] = d.mean()
        entry = rows[teacher]["gain_sampled"]
        assert entry["estimate"] == pytest.approx(d.mean(), abs=1e-12)
        assert entry["p"] == pytest.approx(_sign_flip_p(d), abs=1e-9)
        # test inversion: just inside each bound the exact sign-flip test does not reject, just outside it does
        for bound, outward in ((entry["lo"], -1), (entry["hi"], 1)):
            assert _sign_flip_p(d - (bound - outward * 1e-6)) >= 0.05 - 1e-9
            assert _sign_flip_p(d - (bound + outward * 1e-3)) < 0.05
        greedy = np.mean([afters[(teacher, s)]["greedy_correct"] for s in (0, 1)], axis=0) - np.asarray(
            before["greedy_correct"], float)
        assert rows[teacher]["gain_greedy"]["estimate"] == pytest.approx(greedy.mean(), abs=1e-12)
    # predictors written out by hand
    walign = {t: (lambda g: (g.align_rkl * g.ideal_norm).sum() / g.ideal_norm.sum())(nodes[nodes.teacher == t])
              for t in TEACHERS}
    gap = {t: np.mean([predictors["per_question"][t][q] - predictors["per_question"]["student"][q] for q in DIAG])
           for t in TEACHERS}
    own = {t: np.mean(list(predictors["per_question"]["model:big" if t == "t-e" else "student"].values()))
           for t in TEACHERS}
    for t in TEACHERS:
        assert rows[t]["walign"]["estimate"] == pytest.approx(walign[t])
        assert rows[t]["gap"] == pytest.approx(gap[t]) and rows[t]["teacher_accuracy"] == pytest.approx(own[t])
    y = [gains[t] for t in TEACHERS]
    by_name = {c["predictor"]: c for c in report["correlations"]}
    for name, values in (("walign", walign), ("gap", gap), ("teacher_accuracy", own)):
        x = [values[t] for t in TEACHERS]
        c = by_name[name]
        assert c["spearman"] == pytest.approx(scipy.stats.spearmanr(x, y).statistic)
        assert c["kendall"] == pytest.approx(scipy.stats.kendalltau(x, y).statistic)
        assert c["kendall_p"] == pytest.approx(scipy.stats.kendalltau(x, y).pvalue)
        assert c["spearman_lo"] <= c["spearman"] <= c["spearman_hi"] or not math.isfinite(c["spearman_lo"])
    assert "walign" in report["verdict"] and report["minimum_detectable_spearman"] == 1.0  # n=5: only a perfect ranking
    text = render_markdown(report)
    assert "t-c" in text and "Verdict" in text


def _brute_spearman_p(x, y):
    observed = abs(scipy.stats.spearmanr(x, y).statistic)
    perms = [abs(scipy.stats.spearmanr(x, p).statistic) for p in itertools.permutations(y)]
    return np.mean(np.asarray(perms) >= observed - 1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_exact_spearman_p_is_the_permutation_distribution(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=6), rng.normal(size=6) + 0.5 * np.arange(6)
    assert spearman_exact_p(x, y) == pytest.approx(_brute_spearman_p(x, y), abs=1e-12)


def _brute_critical(n):
    rhos = np.round([abs(scipy.stats.spearmanr(range(n), p).statistic) for p in itertools.permutations(range(n))], 12)
    return min(r for r in set(rhos) if np.mean(rhos >= r) < 0.05)


@pytest.mark.parametrize("n", [5, 6, 7])
def test_minimum_detectable_rank_correlation_is_the_exact_critical_value(n):
    assert minimum_detectable_rank_correlation(n) == pytest.approx(_brute_critical(n))


def test_minimum_detectable_rank_correlation_at_six_teachers_is_about_089():
    # tables: the exact two-sided 5% critical value of Spearman's rho at n = 6 is 0.886
    assert minimum_detectable_rank_correlation(6) == pytest.approx(0.886, abs=1e-3)
    assert math.isnan(minimum_detectable_rank_correlation(2))


def test_verdict_against_hand_made_comparisons():
    from harness.reports.validation_report import verdict

    walign = {"predictor": "walign", "spearman": 0.95, "spearman_p": 0.01}
    gap = {"versus": "gap", "lo": 0.1, "hi": 0.9, "baseline_constant": False}
    acc = {"versus": "teacher_accuracy", "lo": math.nan, "hi": math.nan, "baseline_constant": True}
    assert "earns its cost here" in verdict([walign], [gap, acc], 6, 0.886)
    assert "has not shown" in verdict([{**walign, "spearman_p": 0.2}], [gap, acc], 6, 0.886)
    covers = verdict([walign], [{**gap, "lo": -0.2}], 6, 0.886)
    assert "inconclusive against in-context accuracy gap" in covers and "has not shown" in covers
    assert "worse than in-context" in verdict([walign], [{**gap, "lo": -0.9, "hi": -0.1}], 6, 0.886)
    assert verdict([walign], [gap], 2, math.nan).startswith("not testable")
    # three teachers: no rank correlation can be significant; the sentence says so instead of "|rho| >= nan"
    three = verdict([{**walign, "spearman": 0.5, "spearman_p": 1.0}], [gap], 3, math.nan)
    assert "no correlation can reach p < 0.05 with 3 teachers" in three and "nan" not in three


def test_sampled_gain_by_seed_is_each_seed_alone():
    protocol, before, results, afters, nodes, predictors = _fixture()
    report = build_report(protocol, before, results, TEACHERS, predictors, nodes, "rkl", resamples=50)
    base = np.mean([np.mean(k) for k in before["sampled_correct"]])
    row = next(r for r in report["rows"] if r["condition"] == "t-b")
    expected = {str(s): np.mean([np.mean(k) for k in afters[("t-b", s)]["sampled_correct"]]) - base for s in (0, 1)}
    assert row["sampled_gain_by_seed"] == pytest.approx(expected)
    assert row["gain_sampled"]["estimate"] == pytest.approx(np.mean(list(expected.values())))
    markdown = render_markdown(report)
    assert f"{expected['0']:+.3f} / {expected['1']:+.3f}" in markdown and "training noise" in markdown


def test_a_growing_validation_correlates_only_the_seeds_every_teacher_has():
    protocol, before, results, afters, nodes, predictors = _fixture()
    partial = {k: v for k, v in results.items() if k[1] == 0 or k[0] == "t-a"}  # t-a alone has seed 1 too
    report = build_report(protocol, before, partial, TEACHERS, predictors, nodes, "rkl", resamples=50)
    assert report["correlation_seeds"] == [0]
    base = np.mean([np.mean(k) for k in before["sampled_correct"]])
    seed0 = [np.mean([np.mean(k) for k in afters[(t, 0)]["sampled_correct"]]) - base for t in TEACHERS]
    walign = [next(r for r in report["rows"] if r["condition"] == t)["walign"]["estimate"] for t in TEACHERS]
    rho = next(c for c in report["correlations"] if c["predictor"] == "walign")["spearman"]
    assert rho == pytest.approx(scipy.stats.spearmanr(walign, seed0).statistic)
    row_a = next(r for r in report["rows"] if r["condition"] == "t-a")
    assert row_a["seeds"] == [0, 1]  # the row itself keeps both seeds
    assert "The correlations use only the seed(s) every scored teacher has finished (0)" in render_markdown(report)
    disjoint = {k: v for k, v in results.items() if k[0] != "t-a" and k[1] == 0 or k == ("t-a", 1)}
    report = build_report(protocol, before, disjoint, TEACHERS, predictors, nodes, "rkl", resamples=50)
    assert report["correlations"] == [] or all(not math.isfinite(c["spearman"]) for c in report["correlations"])
    assert report["verdict"].startswith("not testable yet: the trained teachers share no finished seed")


def test_spearman_by_seed_is_the_correlation_on_each_seed_alone():
    protocol, before, results, afters, nodes, predictors = _fixture()
    report = build_report(protocol, before, results, TEACHERS, predictors, nodes, "rkl", resamples=50)
    base = np.mean([np.mean(k) for k in before["sampled_correct"]])
    walign = [next(r for r in report["rows"] if r["condition"] == t)["walign"]["estimate"] for t in TEACHERS]
    entry = next(c for c in report["correlations"] if c["predictor"] == "walign")
    for seed in (0, 1):
        gains = [np.mean([np.mean(k) for k in afters[(t, seed)]["sampled_correct"]]) - base for t in TEACHERS]
        assert entry["spearman_by_seed"][str(seed)] == pytest.approx(scipy.stats.spearmanr(walign, gains).statistic)
    assert "(seeds 0, 1)" in render_markdown(report)


def test_commonest_greedy_answer_shows_a_collapse_to_one_label():
    """Before: 3 of 6 say no, 2 yes, 1 unparsed; after (two seeds): every answer yes. Counted by hand."""
    before = _evaluation([1, 0, 1, 0, 1, 0], [[1, 0]] * 6)
    before["greedy_answer"] = ["no", "yes", "no", None, "yes", "no"]
    afters = []
    for seed in (0, 1):
        after = _evaluation([0, 1, 0, 1, 0, 1], [[1, 1]] * 6)
        after["greedy_answer"] = ["yes"] * 6
        afters.append(after)
    results = {("control", 0): {"seed": 0, "after": before, "seconds_per_step": None},
               **{("grpo", s): {"seed": s, "after": a, "seconds_per_step": 1.0} for s, a in enumerate(afters)}}
    protocol = {"config": {"training": {}, "samples": 2}, "eval_range": [0, 6], "train_range": [6, 12],
                "diagnostic_ids": []}
    report = build_report(protocol, before, results, [], {}, None, "rkl", resamples=50)
    grpo = next(r for r in report["rows"] if r["condition"] == "grpo")
    assert grpo["commonest_before"] == {"answer": "no", "share": 0.5}
    assert grpo["commonest_after"] == {"answer": "yes", "share": 1.0}
    assert "no 0.50 -> yes 1.00" in render_markdown(report)
    # an evaluation written before greedy_answer existed has no commonest answer, and the table says so
    del before["greedy_answer"]
    old = build_report(protocol, before, results, [], {}, None, "rkl", resamples=50)
    assert next(r for r in old["rows"] if r["condition"] == "grpo")["commonest_before"] is None
