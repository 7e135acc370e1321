"""harness.reports.stats against independent computations: brute-force sign enumeration, test inversion on a grid, closed
forms, hand-written Holm / BH, scipy on hand-made data, and simulations of coverage, size and power."""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import scipy.stats

from harness.reports import stats


def exact_flip_pvalue(num: np.ndarray, den: np.ndarray, delta: float) -> float:
    """Two-sided p of theta = delta by enumerating every sign vector (written independently of harness.reports.stats)."""
    contributions = num - delta * den
    observed = abs(contributions.sum())
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(num))))
    return float(np.mean(np.abs(signs @ contributions) >= observed - 1e-12))


def grid_interval(num: np.ndarray, den: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """Test inversion by brute force: the extreme grid points whose exact p-value is >= alpha."""
    theta = num.sum() / den.sum()
    grid = theta + np.linspace(-1.5, 1.5, 3001)
    accepted = [d for d in grid if exact_flip_pvalue(num, den, d) >= alpha]
    return min(accepted), max(accepted)


def test_pvalue_equals_exact_enumeration_and_scipy():
    rng = np.random.default_rng(0)
    num, den = rng.normal(0.3, 1.0, 8), rng.uniform(0.5, 3.0, 8)
    got = stats.cluster_ratio(num, den)
    assert got.estimate == pytest.approx(num.sum() / den.sum())
    assert got.pvalue == pytest.approx(exact_flip_pvalue(num, den, 0.0))
    # a mean of one value per question is scipy's paired sign-flip test, exact at this n
    d = rng.normal(0.4, 1.0, 9)
    scipy_p = scipy.stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=10_000,
                                           alternative="two-sided").pvalue
    assert stats.mean_of_questions(d).pvalue == pytest.approx(scipy_p)
    assert stats.sign_flip_test(d).pvalue == pytest.approx(scipy_p)


def test_interval_is_the_inverted_test():
    rng = np.random.default_rng(1)
    num, den = rng.normal(0.2, 1.0, 10), rng.uniform(0.5, 2.0, 10)
    got = stats.cluster_ratio(num, den)
    lo, hi = grid_interval(num, den)
    step = 3.0 / 3000
    assert got.lo == pytest.approx(lo, abs=step) and got.hi == pytest.approx(hi, abs=step)
    # agreement with the test: 0 lies outside the interval exactly when p < 0.05
    assert (got.lo > 0 or got.hi < 0) == (got.pvalue < 0.05)


def test_no_interval_below_ten_questions_and_degenerate_inputs():
    nine = stats.mean_of_questions(np.linspace(0.1, 0.9, 9))
    assert math.isnan(nine.lo) and math.isnan(nine.hi) and nine.too_few and nine.questions == 9
    assert np.isfinite(nine.pvalue)  # the exact test stays valid at any n
    ten = stats.mean_of_questions(np.linspace(0.1, 1.0, 10))
    assert np.isfinite(ten.lo) and not ten.too_few
    assert math.isnan(stats.cluster_mean([], []).estimate)
    one = stats.cluster_mean([1.0, 2.0], ["q", "q"])
    assert one.estimate == 1.5 and one.pvalue == 1.0 and one.questions == 1 and one.n == 2
    assert stats.sign_flip_test([0.0, 0.0]).pvalue == 1.0
    assert math.isnan(stats.sign_flip_test([]).pvalue)


def test_cluster_mean_is_pooled_and_weighted():
    values = np.array([1.0, 3.0, 2.0, np.nan, 5.0])
    clusters = np.array(["a", "a", "b", "b", "c"])
    weights = np.array([1.0, 3.0, 2.0, 1.0, 0.0])  # weight 0 and NaN value: left out
    got = stats.cluster_mean(values, clusters, weights)
    assert got.estimate == pytest.approx((1 * 1 + 3 * 3 + 2 * 2) / (1 + 3 + 2))
    assert (got.questions, got.n) == (2, 3)
    diff = stats.paired_difference([1.0, 2.0, np.nan], [0.5, 0.0, 1.0], ["a", "b", "b"])
    assert diff.estimate == pytest.approx((0.5 + 2.0) / 2) and diff.n == 2


def _clustered(rng, questions: int, shift: float = 0.0):
    """Node alignments with a question effect, 1-20 nodes per question and lognormal ||g*|| weights; the pooled
    weighted mean's truth is 0.2 + shift (means and weights independent of question size)."""
    sizes = rng.integers(1, 21, questions)
    q = np.repeat(np.arange(questions), sizes)
    values = np.repeat(0.2 + shift + rng.uniform(-0.3, 0.3, questions), sizes) + rng.normal(0.0, 0.3, q.size)
    return values, q, rng.lognormal(0.0, 0.5, q.size)


@pytest.mark.parametrize("questions", [10, 20])
def test_coverage_of_nominal_95_intervals(questions):
    """METHOD: >= 93% coverage from 10 questions on. A percentile bootstrap covers ~88-91% here."""
    rng = np.random.default_rng(questions)
    covered = 0
    draws = 1000
    for _ in range(draws):
        values, q, w = _clustered(rng, questions)
        got = stats.cluster_mean(values, q, w, permutations=2000, seed=int(rng.integers(1 << 30)))
        covered += got.lo <= 0.2 <= got.hi
    assert covered / draws >= 0.93


def test_null_pvalues_hold_their_size():
    rng = np.random.default_rng(7)
    rejections = [stats.mean_of_questions(rng.normal(size=15), permutations=499,
                                          seed=int(rng.integers(1 << 30))).pvalue < 0.05 for _ in range(300)]
    assert 0.02 <= np.mean(rejections) <= 0.08


def test_minimum_detectable_effect_has_the_stated_power():
    """Data with a true effect equal to the MDE computed from a pilot are detected in ~80% of experiments."""
    rng = np.random.default_rng(11)
    sd, n = 0.3, 20
    pilot = stats.mean_of_questions(rng.normal(0.0, sd, n))
    mde = stats.minimum_detectable_effect(pilot)
    spread = pilot.se * math.sqrt(n)
    detected = [stats.mean_of_questions(rng.normal(mde, spread, n), permutations=999,
                                        seed=int(rng.integers(1 << 30))).pvalue < 0.05 for _ in range(400)]
    assert 0.72 <= np.mean(detected) <= 0.88
    # closed form (normal approximation) for the questions needed: n ~ ((z_.975 + z_.8) spread / effect)^2
    needed = stats.questions_needed(pilot, 0.1)
    normal = ((scipy.stats.norm.ppf(0.975) + scipy.stats.norm.ppf(0.8)) * spread / 0.1) ** 2
    assert normal <= needed <= normal + 4  # the t distribution asks for a few more
    assert stats.minimum_detectable_effect(stats.mean_of_questions([0.1])) != stats.minimum_detectable_effect(pilot)


def holm_by_hand(p):
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (m - rank) * p[index])
        adjusted[index] = min(1.0, running)
    return adjusted


def bh_by_hand(p):
    order = np.argsort(p)[::-1]
    m = len(p)
    adjusted = np.empty(m)
    running = 1.0
    for position, index in enumerate(order):
        rank = m - position
        running = min(running, p[index] * m / rank)
        adjusted[index] = running
    return adjusted


def test_holm_and_bh_against_hand_computation_with_nan():
    p = np.array([0.01, 0.2, np.nan, 0.03, 0.04, 0.001])
    ok = np.isfinite(p)
    for ours, by_hand in ((stats.holm, holm_by_hand), (stats.benjamini_hochberg, bh_by_hand)):
        got = ours(p)
        assert np.isnan(got[2])
        np.testing.assert_allclose(got[ok], by_hand(p[ok]))
    assert np.isnan(stats.holm([np.nan])).all()


def test_rank_groups_compact_letters():
    # A > B > C > D; only A-C, A-D and B-D are separated: groups {A, B}, {B, C}, {C, D}
    separated = [{"A", "C"}, {"A", "D"}, {"B", "D"}]
    groups = stats.rank_groups(["A", "B", "C", "D"], lambda a, b: {a, b} in separated)
    assert groups == {"A": "a", "B": "ab", "C": "bc", "D": "c"}
    assert stats.rank_groups(["x", "y"], lambda a, b: False) == {"x": "a", "y": "a"}
    assert stats.rank_groups(["x", "y", "z"], lambda a, b: True) == {"x": "a", "y": "b", "z": "c"}


def test_spearman_interval_and_test_agree_and_match_scipy():
    rng = np.random.default_rng(4)
    q = np.repeat(np.arange(30), 5)
    x = np.repeat(rng.normal(size=30), 5) + rng.normal(size=q.size)
    y = x + rng.normal(size=x.size)
    got = stats.correlation_ci(x, y, q, resamples=300, seed=0)
    assert got.estimate == pytest.approx(scipy.stats.spearmanr(x, y).statistic)
    assert got.lo < got.estimate < got.hi and got.lo > 0 and got.pvalue < 0.05
    half = scipy.stats.t.ppf(0.975, 29) * got.se
    assert (got.lo, got.hi) == pytest.approx((got.estimate - half, got.estimate + half))
    kendall = stats.correlation_ci(x, y, q, "kendall", resamples=100, seed=0)
    assert kendall.estimate == pytest.approx(scipy.stats.kendalltau(x, y).statistic)
    assert np.isnan(stats.correlation([1, 1, 1], [1, 2, 3]))


def test_batched_spearman_equals_scipy_with_ties_and_padding():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, (20, 12)).astype(float)  # many ties
    y = rng.normal(size=(20, 12))
    x[:, 9:], y[:, 9:] = np.nan, np.nan
    got = stats._batched_spearman(x, y)
    want = [scipy.stats.spearmanr(x[i, :9], y[i, :9]).statistic for i in range(20)]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_kendall_test_p_is_the_exact_share_of_orderings():
    """Five pairs in the same order: of the 5! = 120 equally likely orderings one is as concordant and one as
    discordant, so the exact two-sided p is 2/120; a constant variable has neither statistic nor p."""
    tau, p = stats.correlation_test([1, 2, 3, 4, 5], [10, 20, 30, 40, 50], "kendall")
    assert tau == pytest.approx(1.0) and p == pytest.approx(2 / 120)
    assert all(math.isnan(v) for v in stats.correlation_test([1, 2, 3], [4, 4, 4], "kendall"))
    assert stats.correlation([1, 2, 3, 4, 5], [5, 4, 3, 2, 1], "kendall") == pytest.approx(-1.0)
    with pytest.raises(KeyError):
        stats.correlation([1, 2], [1, 2], "pearson")


def test_partial_spearman_equals_rank_residual_correlation():
    """Partial rank correlation = correlation of the ranks of x and y after regressing each on the ranks of z."""
    rng = np.random.default_rng(5)
    z = rng.normal(size=200)
    x, y = z + rng.normal(size=200), z + rng.normal(size=200)
    rx, ry, rz = (scipy.stats.rankdata(v) for v in (x, y, z))
    design = np.column_stack([np.ones(200), rz])
    res_x = rx - design @ np.linalg.lstsq(design, rx, rcond=None)[0]
    res_y = ry - design @ np.linalg.lstsq(design, ry, rcond=None)[0]
    assert stats.partial_spearman(x, y, z) == pytest.approx(scipy.stats.pearsonr(res_x, res_y).statistic)
    # x and y share only z: the plain correlation is large, the partial one small
    assert scipy.stats.spearmanr(x, y).statistic > 0.3 and abs(stats.partial_spearman(x, y, z)) < 0.15


def test_split_half_reliability_closed_form():
    """Two halves = latent + independent noise of equal variance: half correlation r = var_t / (var_t + var_e),
    and Spearman-Brown 2r / (1 + r) is the reliability of their average."""
    rng = np.random.default_rng(6)
    latent = rng.normal(0.0, 1.0, 20_000)
    a, b = latent + rng.normal(0.0, 1.0, latent.size), latent + rng.normal(0.0, 1.0, latent.size)
    value, n = stats.split_half_reliability(a, b)
    assert n == latent.size and value == pytest.approx(2 * 0.5 / 1.5, abs=0.02)
    small = stats.split_half_reliability([1.0, 2.0, np.nan], [1.0, 2.0, 3.0])
    assert math.isnan(small[0]) and small[1] == 2


def test_bootstrap_t_drops_undefined_resamples():
    values = np.array([1.0, 0.0, 2.0, 0.5, 3.0, 1.0] * 2)
    clusters = np.repeat(np.arange(12), 1)
    got = stats.bootstrap_t(lambda index: float(values[index].mean()), clusters, resamples=200, seed=0)
    assert got.estimate == pytest.approx(values.mean()) and got.questions == 12
    assert got.lo < got.estimate < got.hi


def test_equal_questions_give_a_zero_width_interval_not_an_infinite_one():
    """All questions contribute the same (a constant teacher): theta +- round-off is the whole interval."""
    got = stats.cluster_mean(np.full(24, 0.1), np.repeat(np.arange(12), 2), permutations=200)
    assert got.lo == pytest.approx(0.1, abs=1e-8) and got.hi == pytest.approx(0.1, abs=1e-8)


def test_a_monte_carlo_p_value_knows_its_floor():
    """30 questions all positive: no random sign pattern is as extreme, so p = 1/(draws+1) and it is at its floor;
    an exact (enumerated) p-value never is, whatever its value."""
    from harness.reports import stats

    mc = stats.mean_of_questions(np.linspace(1, 2, 30), permutations=500, seed=0)
    assert mc.draws == 500 and mc.pvalue == pytest.approx(1 / 501) and mc.at_floor
    exact = stats.mean_of_questions(np.linspace(1, 2, 8), permutations=500)
    assert exact.draws == 0 and exact.pvalue == pytest.approx(2 / 256) and not exact.at_floor
    noisy = stats.mean_of_questions(np.random.default_rng(0).normal(0, 1, 30), permutations=500)
    assert not noisy.at_floor


def test_settle_redraws_near_the_threshold_and_leaves_untestable_tests_out():
    """Three tests: one far below alpha, one whose Holm p sits near 0.05, one on 6 questions. Only the near one is
    redrawn (10x the draws, up to the cap), the small one has no Holm p and does not enlarge the family."""
    from harness.reports import stats

    far = stats.Estimate(0.5, 0.4, 0.6, 0.0001, 40, 40, 0.1, 10_000)
    near = stats.Estimate(0.2, 0.0, 0.4, 0.048, 40, 40, 0.1, 10_000)
    small = stats.Estimate(0.9, math.nan, math.nan, 0.03, 6, 6, 0.1, 10_000)
    calls = []

    def redo(index, permutations):
        calls.append((index, permutations))
        return dataclasses.replace(near, pvalue=0.051, draws=permutations)  # better drawn: the decision flips

    estimates, adjusted = stats.settle([far, near, small], redo, stats.holm, testable=[True, True, False],
                                       max_permutations=1_000_000)
    assert calls == [(1, 100_000), (1, 1_000_000)]  # still near at 10^5: drawn again, then the cap stops it
    assert math.isnan(adjusted[2]) and estimates[2] is small
    assert adjusted[1] == pytest.approx(0.051) and adjusted[0] == pytest.approx(2 * 0.0001)  # Holm over 2
    assert estimates[1].draws == 1_000_000
    # far from the threshold: nothing is redrawn
    assert stats.settle([far], redo, stats.holm)[0] == [far] and len(calls) == 2
