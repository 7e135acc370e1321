"""Statistics of the diagnostic: every interval and test works at the *question* level (METHOD.md, Statistics).

Nodes of one question share the prompt, the rollouts and the continuations, so they are not independent: the unit of
resampling is the question (the *cluster*). This module is the one place where intervals and tests are computed:

- :func:`cluster_bootstrap` -- percentile CI of a mean or weighted mean, resampling questions with replacement
  (``scipy.stats.bootstrap`` on per-question sums: a weighted mean over nodes is a ratio of per-question sums).
- :func:`cluster_bootstrap_stat` -- percentile CI of any statistic of the nodes (difference of group means, Spearman,
  Kendall...), resampling questions; resamples where the statistic is undefined are dropped and counted.
- :func:`group_permutation_test` -- difference of two groups of nodes (e.g. correct vs incorrect paths). What is
  permuted: the group label of each *unit* (a rollout: all its nodes keep one label) among the units of the *same
  question*; labels never move across questions. Under the null (within a question, alignment does not depend on
  the label) this is exact, and question-to-question differences in baseline alignment or accuracy cannot create a
  spurious effect.
- :func:`sign_flip_test` -- paired test on per-question mean differences (teacher A vs B on the same nodes): under
  the null each question's difference is symmetric around 0, so its sign is flipped at random
  (``scipy.stats.permutation_test``, ``permutation_type="samples"``; exact when 2^n <= permutations).
- :func:`holm`, :func:`benjamini_hochberg` -- multiplicity corrections (statsmodels ``multipletests``), NaN-aware.
- :func:`correlation_ci` -- Spearman or Kendall correlation with a question-level bootstrap CI.

Every random function takes ``seed`` and builds its own ``numpy.random.Generator``: results do not depend on call
order. Defaults: 2,000 bootstrap resamples, 10,000 permutations.
"""
from __future__ import annotations

import gc
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import scipy.stats
from statsmodels.stats.multitest import multipletests

RESAMPLES = 2_000
PERMUTATIONS = 10_000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile interval and the n it rests on."""

    estimate: float
    lo: float
    hi: float
    n_clusters: int  # questions
    n: int  # nodes (or whatever the rows are)
    undefined: int = 0  # bootstrap resamples where the statistic was undefined (dropped)

    def asdict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TestResult:
    statistic: float
    pvalue: float
    n_clusters: int
    n: int

    def asdict(self) -> dict:
        return asdict(self)


_NAN_INTERVAL = dict(estimate=math.nan, lo=math.nan, hi=math.nan)


def cluster_codes(clusters: Sequence) -> tuple[np.ndarray, int]:
    """Integer code (0..C-1, order of first appearance) of each row's cluster, and C."""
    clusters = np.asarray(clusters, dtype=object)
    if clusters.size == 0:
        return np.zeros(0, dtype=np.intp), 0
    _, first, codes = np.unique(clusters.astype(str), return_index=True, return_inverse=True)
    # renumber by first appearance so codes do not depend on string sorting
    order = np.argsort(first)
    remap = np.empty_like(order)
    remap[order] = np.arange(order.size)
    return remap[codes.ravel()], int(order.size)


def _finite(values, weights=None) -> np.ndarray:
    ok = np.isfinite(np.asarray(values, dtype=float))
    if weights is not None:
        ok &= np.isfinite(np.asarray(weights, dtype=float))
    return ok


def cluster_bootstrap(values, clusters, weights=None, *, resamples: int = RESAMPLES, seed: int = 0,
                      level: float = LEVEL) -> Interval:
    """Mean (or ``weights``-weighted mean) of ``values`` with a question-level percentile bootstrap interval.

    Rows with a non-finite value or weight are ignored. Fewer than 2 questions: the interval is NaN (a bootstrap over
    one cluster has no spread to show).
    """
    values = np.asarray(values, dtype=float)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, dtype=float)
    ok = _finite(values, weights)
    values, weights = values[ok], weights[ok]
    codes, n_clusters = cluster_codes(np.asarray(clusters, dtype=object)[ok])
    total = float(weights.sum())
    estimate = float(np.dot(values, weights) / total) if values.size and total > 0 else math.nan
    if n_clusters < 2 or not math.isfinite(estimate):
        return Interval(estimate, math.nan, math.nan, n_clusters, int(values.size))
    # a weighted mean over nodes = (sum over questions of sum w*v) / (sum over questions of sum w): resampling
    # questions is an ordinary paired bootstrap of these per-question sums, which scipy does directly
    num = np.bincount(codes, weights=values * weights, minlength=n_clusters)
    den = np.bincount(codes, weights=weights, minlength=n_clusters)

    def ratio(a, b, axis=-1):
        return a.sum(axis=axis) / b.sum(axis=axis)

    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate data (all questions equal) gives a zero-width interval, fine
        result = scipy.stats.bootstrap((num, den), ratio, paired=True, vectorized=True, n_resamples=resamples,
                                       confidence_level=level, method="percentile",
                                       rng=np.random.default_rng(seed))
    lo, hi = result.confidence_interval
    return Interval(estimate, float(lo), float(hi), n_clusters, int(values.size))


def _resampled_rows(codes: np.ndarray, n_clusters: int, resamples: int, seed: int) -> np.ndarray:
    """Row indices of ``resamples`` question-level resamples, one per matrix row, padded with -1.

    Each resample draws C questions with replacement and takes all rows of each (a question drawn twice contributes
    its rows twice), so resamples differ in length.
    """
    members = [np.flatnonzero(codes == c) for c in range(n_clusters)]
    draws = np.random.default_rng(seed).integers(0, n_clusters, size=(resamples, n_clusters))
    rows = [np.concatenate([members[c] for c in draw]) for draw in draws]
    out = np.full((resamples, max(map(len, rows))), -1, dtype=np.intp)
    for i, row in enumerate(rows):
        out[i, : row.size] = row
    return out


def _percentile_interval(estimate: float, stats: np.ndarray, n_clusters: int, n: int, level: float) -> Interval:
    ok = np.isfinite(stats)
    if not ok.any():
        return Interval(estimate, math.nan, math.nan, n_clusters, n, int(stats.size))
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats[ok], [alpha, 1 - alpha])
    return Interval(estimate, float(lo), float(hi), n_clusters, n, int((~ok).sum()))


def cluster_bootstrap_stat(statistic: Callable[[np.ndarray], float], clusters, *, resamples: int = RESAMPLES,
                           seed: int = 0, level: float = LEVEL) -> Interval:
    """Any statistic of the rows, ``statistic(row_indices) -> float``, with a question-level percentile interval.

    Resamples where the statistic is NaN (e.g. no incorrect path drawn) are dropped and counted in ``undefined``;
    ``scipy.stats.bootstrap`` cannot drop them, hence this loop.
    """
    codes, n_clusters = cluster_codes(clusters)
    n = int(codes.size)
    estimate = float(statistic(np.arange(n))) if n else math.nan
    if n_clusters < 2 or not math.isfinite(estimate):
        return Interval(estimate, math.nan, math.nan, n_clusters, n)
    index = _resampled_rows(codes, n_clusters, resamples, seed)
    stats = np.array([statistic(row[row >= 0]) for row in index], dtype=float)
    return _percentile_interval(estimate, stats, n_clusters, n, level)


def mean_difference(values, in_a, in_b, weights=None) -> Callable[[np.ndarray], float]:
    """Statistic for :func:`cluster_bootstrap_stat`: (weighted) mean of group a minus mean of group b."""
    values = np.asarray(values, dtype=float)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, dtype=float)
    in_a, in_b = np.asarray(in_a, dtype=bool), np.asarray(in_b, dtype=bool)

    def statistic(index: np.ndarray) -> float:
        v, w, a, b = values[index], weights[index], in_a[index], in_b[index]
        wa, wb = w[a].sum(), w[b].sum()
        if wa <= 0 or wb <= 0:
            return math.nan
        return float(np.dot(v[a], w[a]) / wa - np.dot(v[b], w[b]) / wb)

    return statistic


def group_permutation_test(values, labels, clusters, units=None, *, permutations: int = PERMUTATIONS,
                           seed: int = 0) -> TestResult:
    """Two-sided test of mean(values | label True) - mean(values | label False), labels permuted within questions.

    ``units`` (e.g. rollout ids) name the rows that carry one label together; a unit must lie inside one cluster and
    carry a single label. What is permuted: the labels of the units of each question among themselves (a question with
    3 correct and 1 incorrect rollout keeps 3 and 1). Rows with a non-finite value are ignored.
    p = (1 + #{|T_perm| >= |T_obs|}) / (1 + permutations).
    """
    values = np.asarray(values, dtype=float)
    labels = np.asarray(labels, dtype=bool)
    clusters = np.asarray(clusters, dtype=object)
    units = np.arange(values.size) if units is None else np.asarray(units, dtype=object)
    ok = np.isfinite(values)
    values, labels, clusters, units = values[ok], labels[ok], clusters[ok], units[ok]
    cluster_code, n_clusters = cluster_codes(clusters)
    # one unit = one (question, unit) pair: unit ids only need to be unique inside a question
    unit_code, n_units = cluster_codes(np.array([f"{c}\x1f{u}" for c, u in zip(cluster_code, units)], dtype=object))
    sums = np.bincount(unit_code, weights=values, minlength=n_units)
    counts = np.bincount(unit_code, minlength=n_units).astype(float)
    unit_label = np.zeros(n_units, dtype=bool)
    unit_label[unit_code] = labels
    unit_cluster = np.zeros(n_units, dtype=np.intp)
    unit_cluster[unit_code] = cluster_code

    def statistic(label_matrix: np.ndarray) -> np.ndarray:
        lab = label_matrix.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return lab @ sums / (lab @ counts) - (1 - lab) @ sums / ((1 - lab) @ counts)

    observed = float(statistic(unit_label[None, :])[0])
    if not math.isfinite(observed):
        return TestResult(observed, math.nan, n_clusters, int(values.size))
    # within-question shuffle, vectorised: sort units by (question, random key); the question blocks stay in place
    order = np.argsort(unit_cluster, kind="stable")
    keys = unit_cluster[order][None, :] + np.random.default_rng(seed).random((permutations, n_units))
    shuffled = np.empty((permutations, n_units), dtype=bool)
    shuffled[:, order] = unit_label[order][np.argsort(keys, axis=1)]
    null = statistic(shuffled)
    extreme = np.abs(null) >= abs(observed) - 1e-12 * max(1.0, abs(observed))  # ties count as extreme
    return TestResult(observed, float((1 + extreme.sum()) / (1 + permutations)), n_clusters, int(values.size))


def paired_question_differences(a, b, clusters, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-question (weighted) mean of ``a - b`` over rows where both are finite: ``(differences, question_ids)``."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    weights = np.ones_like(a) if weights is None else np.asarray(weights, dtype=float)
    ok = _finite(a - b, weights) & (weights > 0)
    clusters = np.asarray(clusters, dtype=object)[ok]
    codes, n_clusters = cluster_codes(clusters)
    diff, w = (a - b)[ok], weights[ok]
    per_q = np.bincount(codes, weights=diff * w, minlength=n_clusters) / np.bincount(codes, weights=w,
                                                                                     minlength=n_clusters)
    names = np.empty(n_clusters, dtype=object)
    names[codes] = clusters
    return per_q, names


def sign_flip_test(differences, *, permutations: int = PERMUTATIONS, seed: int = 0) -> TestResult:
    """Two-sided paired test that the mean of per-question differences is 0, flipping each question's sign."""
    d = np.asarray(differences, dtype=float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return TestResult(math.nan, math.nan, 0, 0)
    observed = float(d.mean())
    if np.all(d == 0) or d.size < 2:
        # one question: its two sign assignments are equally extreme, so the exact two-sided p-value is 1
        return TestResult(observed, 1.0, int(d.size), int(d.size))
    result = scipy.stats.permutation_test((d,), np.mean, permutation_type="samples", vectorized=True,
                                          n_resamples=permutations, alternative="two-sided",
                                          rng=np.random.default_rng(seed))
    return TestResult(observed, float(min(1.0, result.pvalue)), int(d.size), int(d.size))


def _adjust(pvalues, method: str) -> np.ndarray:
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = np.isfinite(p)
    if ok.any():
        # statsmodels' Holm branch calls gc.collect() on every call (~0.15 s with pandas loaded, once per leaderboard
        # family); freezing the existing heap first makes that collection cheap without changing any result
        gc.freeze()
        try:
            out[ok] = multipletests(p[ok], method=method)[1]  # NaN entries (no test) are not part of the family
        finally:
            gc.unfreeze()
    return out


def holm(pvalues) -> np.ndarray:
    """Holm-adjusted p-values (family-wise error); NaN stays NaN and is not counted in the family."""
    return _adjust(pvalues, "holm")


def benjamini_hochberg(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate); NaN stays NaN."""
    return _adjust(pvalues, "fdr_bh")


def _correlation(method: str) -> Callable[[np.ndarray, np.ndarray], float]:
    func = {"spearman": scipy.stats.spearmanr, "kendall": scipy.stats.kendalltau}[method]

    def correlate(x: np.ndarray, y: np.ndarray) -> float:
        if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
            return math.nan  # a constant variable has no rank correlation
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(func(x, y).statistic)

    return correlate


def correlation(x, y, method: str = "spearman") -> float:
    """Spearman or Kendall rank correlation, NaN when undefined (fewer than 2 points or a constant variable)."""
    return _correlation(method)(np.asarray(x, dtype=float), np.asarray(y, dtype=float))


def _batched_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman of each matrix row (NaN = padding): Pearson of midranks, as ``spearmanr`` computes it."""
    rx = scipy.stats.rankdata(x, axis=1, nan_policy="omit")
    ry = scipy.stats.rankdata(y, axis=1, nan_policy="omit")
    rx = rx - np.nanmean(rx, axis=1, keepdims=True)
    ry = ry - np.nanmean(ry, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nansum(rx * ry, axis=1) / np.sqrt(np.nansum(rx**2, axis=1) * np.nansum(ry**2, axis=1))


def correlation_ci(x, y, clusters, method: str = "spearman", *, resamples: int = RESAMPLES, seed: int = 0,
                   level: float = LEVEL) -> Interval:
    """Spearman (``scipy.stats.spearmanr``) or Kendall (``kendalltau``) with a question-level bootstrap interval.

    The point estimate always comes from scipy. Spearman's resamples are computed in one batch (ranks per row,
    ``rankdata(axis=1)``): calling ``spearmanr`` 2,000 times per cell made ``opd analyze`` take minutes.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = _finite(x) & _finite(y)
    x, y, clusters = x[ok], y[ok], np.asarray(clusters, dtype=object)[ok]
    correlate = _correlation(method)
    if method != "spearman":
        return cluster_bootstrap_stat(lambda index: correlate(x[index], y[index]), clusters, resamples=resamples,
                                      seed=seed, level=level)
    codes, n_clusters = cluster_codes(clusters)
    estimate = correlate(x, y)
    if n_clusters < 2 or not math.isfinite(estimate):
        return Interval(estimate, math.nan, math.nan, n_clusters, int(x.size))
    index = _resampled_rows(codes, n_clusters, resamples, seed)
    pad = index < 0
    xs, ys = np.where(pad, np.nan, x[index]), np.where(pad, np.nan, y[index])
    stats = _batched_spearman(xs, ys)
    # a resample with a constant variable has no rank correlation (0/0 above): NaN, dropped like elsewhere
    return _percentile_interval(estimate, stats, n_clusters, int(x.size), level)
