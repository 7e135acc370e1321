"""harness.stats: planted effects are found, null p-values are roughly uniform, intervals cover, corrections agree."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from statsmodels.stats.multitest import multipletests

from harness import stats


def clustered(rng, n_questions=20, per_question=6, shift=0.0):
    """Node values with a strong question effect (so node-level methods would be overconfident)."""
    q = np.repeat(np.arange(n_questions), per_question).astype(str)
    values = np.repeat(rng.normal(size=n_questions), per_question) + 0.5 * rng.normal(size=q.size) + shift
    return values, q


def test_bootstrap_matches_direct_loop_and_weights():
    rng = np.random.default_rng(0)
    values, q = clustered(rng)
    weights = rng.uniform(0.1, 2.0, values.size)
    ci = stats.cluster_bootstrap(values, q, weights, resamples=400, seed=1)
    assert ci.estimate == pytest.approx(np.average(values, weights=weights))
    assert ci.n_clusters == 20 and ci.n == values.size
    # direct recomputation: resample questions, weighted mean over the drawn questions' nodes
    direct = []
    members = [np.flatnonzero(q == name) for name in np.unique(q)]
    for draw in np.random.default_rng(5).integers(0, 20, size=(400, 20)):
        index = np.concatenate([members[c] for c in draw])
        direct.append(np.average(values[index], weights=weights[index]))
    lo, hi = np.quantile(direct, [0.025, 0.975])
    assert ci.lo == pytest.approx(lo, abs=0.1) and ci.hi == pytest.approx(hi, abs=0.1)
    assert stats.cluster_bootstrap(values, q, resamples=50, seed=3) == stats.cluster_bootstrap(values, q,
                                                                                               resamples=50, seed=3)


def test_bootstrap_coverage_sanity():
    # 95% intervals of the mean of clustered data: coverage of the true mean (0) should be near 95%, and a node-level
    # interval would fall far short; 120 draws, loose band
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(120):
        values, q = clustered(rng, n_questions=25, per_question=4)
        ci = stats.cluster_bootstrap(values, q, resamples=300, seed=int(rng.integers(1 << 30)))
        covered += ci.lo <= 0.0 <= ci.hi
    assert 0.82 <= covered / 120 <= 1.0


def test_degenerate_inputs_give_nan_intervals():
    one = stats.cluster_bootstrap([1.0, 2.0], ["q", "q"], resamples=10)
    assert one.estimate == 1.5 and np.isnan(one.lo) and one.n_clusters == 1
    empty = stats.cluster_bootstrap([], [], resamples=10)
    assert np.isnan(empty.estimate) and empty.n == 0
    assert np.isnan(stats.sign_flip_test([]).pvalue)
    assert stats.sign_flip_test([0.0, 0.0]).pvalue == 1.0


def labelled(rng, effect, n_questions=12, rollouts=4, nodes=3):
    q = np.repeat(np.arange(n_questions), rollouts * nodes).astype(str)
    rollout = np.tile(np.repeat(np.arange(rollouts), nodes), n_questions)
    label = np.repeat(rng.random(n_questions * rollouts) < 0.5, nodes)
    values = np.repeat(rng.normal(size=n_questions), rollouts * nodes) + rng.normal(size=q.size) + effect * label
    return values, label, q, rollout


def test_group_permutation_planted_effect_and_null_uniform():
    rng = np.random.default_rng(2)
    values, label, q, rollout = labelled(rng, effect=1.5)
    result = stats.group_permutation_test(values, label, q, rollout, permutations=500, seed=0)
    assert result.pvalue < 0.01 and result.statistic > 0
    pvalues = []
    for _ in range(200):
        values, label, q, rollout = labelled(rng, effect=0.0)
        pvalues.append(stats.group_permutation_test(values, label, q, rollout, permutations=99,
                                                    seed=int(rng.integers(1 << 30))).pvalue)
    assert 0.01 <= np.mean(np.array(pvalues) < 0.05) <= 0.10


def test_group_permutation_keeps_labels_inside_questions():
    # question a is all-label and high, question b all-unlabelled and low: the difference is entirely between
    # questions, so a within-question permutation cannot move it and p must be 1
    values = np.array([5.0, 5.1, 0.0, 0.1])
    result = stats.group_permutation_test(values, [True, True, False, False], ["a", "a", "b", "b"],
                                          permutations=200)
    assert result.pvalue == 1.0


def test_sign_flip_planted_and_null():
    rng = np.random.default_rng(3)
    assert stats.sign_flip_test(rng.normal(0.8, 1.0, 30), permutations=999).pvalue < 0.01
    pvalues = [stats.sign_flip_test(rng.normal(size=15), permutations=99, seed=int(rng.integers(1 << 30))).pvalue
               for _ in range(200)]
    assert 0.01 <= np.mean(np.array(pvalues) < 0.05) <= 0.10
    # small n: exact enumeration of the 2^3 sign patterns
    assert stats.sign_flip_test([1.0, 2.0, 3.0]).pvalue == pytest.approx(2 / 8)


def test_paired_question_differences():
    d, names = stats.paired_question_differences([1.0, 2.0, 3.0, np.nan], [0.0, 0.0, 1.0, 0.0], ["a", "a", "b", "b"],
                                                 weights=[1.0, 3.0, 1.0, 1.0])
    assert list(names) == ["a", "b"]
    np.testing.assert_allclose(d, [(1 * 1 + 3 * 2) / 4, 2.0])


def test_holm_and_bh_match_statsmodels_with_nan():
    p = np.array([0.01, 0.2, np.nan, 0.03, 0.04])
    ok = np.isfinite(p)
    for ours, method in ((stats.holm, "holm"), (stats.benjamini_hochberg, "fdr_bh")):
        got = ours(p)
        assert np.isnan(got[2])
        np.testing.assert_allclose(got[ok], multipletests(p[ok], method=method)[1])
    assert np.isnan(stats.holm([np.nan])).all()


def test_correlations_match_scipy_and_intervals():
    rng = np.random.default_rng(4)
    x, q = clustered(rng, n_questions=30, per_question=5)
    y = x + rng.normal(size=x.size)
    spearman = stats.correlation_ci(x, y, q, resamples=300, seed=0)
    assert spearman.estimate == pytest.approx(scipy.stats.spearmanr(x, y).statistic)
    assert spearman.lo < spearman.estimate < spearman.hi and spearman.lo > 0
    # the batched resample computation equals spearmanr on the same resampled rows
    codes, n = stats.cluster_codes(q)
    index = stats._resampled_rows(codes, n, 3, 0)
    batched = stats._batched_spearman(np.where(index < 0, np.nan, x[index]), np.where(index < 0, np.nan, y[index]))
    for row, value in zip(index, batched):
        assert value == pytest.approx(scipy.stats.spearmanr(x[row[row >= 0]], y[row[row >= 0]]).statistic)
    kendall = stats.correlation_ci(x, y, q, "kendall", resamples=100, seed=0)
    assert kendall.estimate == pytest.approx(scipy.stats.kendalltau(x, y).statistic)
    assert kendall.lo <= kendall.estimate <= kendall.hi
    assert np.isnan(stats.correlation([1, 1, 1], [1, 2, 3]))


def test_bootstrap_stat_drops_undefined_resamples():
    values = np.array([1.0, 0.0, 2.0, 0.5, 3.0])
    label = np.array([True, False, True, True, True])
    q = np.array(["a", "a", "b", "b", "c"])
    ci = stats.cluster_bootstrap_stat(stats.mean_difference(values, label, ~label), q, resamples=200, seed=0)
    assert ci.estimate == pytest.approx((1.0 + 2.0 + 0.5 + 3.0) / 4 - 0.0)
    assert ci.undefined > 0 and np.isfinite(ci.lo)  # resamples without question "a" have no unlabelled node
