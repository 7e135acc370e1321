"""Statistics of the diagnostic: every interval and test works at the *question* level (METHOD.md, Statistics).

Nodes of one question share the prompt, the rollouts and the continuations, so they are not independent: the unit of
resampling is the question (the *cluster*). This module is the one place where intervals, tests, power and
reliability are computed.

**Estimates of means** (:func:`cluster_mean`, :func:`paired_difference`, :func:`mean_of_questions`). Each is a ratio of
per-question sums, ``theta = sum_q num_q / sum_q den_q`` (a node-pooled, possibly ``||g*||``-weighted mean; or, with
``den_q = 1``, a mean over questions). One procedure gives its test and its interval, so the two always agree:

- the test of ``theta = delta`` flips the sign of each question's contribution ``num_q - delta den_q`` (a paired
  randomisation test, exact by enumeration when ``2^questions <= permutations``, else Monte Carlo with
  ``p = (1 + #{|T*| >= |T|}) / (1 + permutations)``); ``pvalue`` is the test of ``theta = 0``;
- the interval is every ``delta`` that test does not reject at ``1 - level`` (test inversion). It covers the truth at
  the nominal rate under symmetric question contributions and stays close to it otherwise: in the simulations of
  ``tests/harness/reports/test_stats.py`` it covers >= 93% from 10 questions on, where the percentile bootstrap covers 91%
  (84% at 5). Below :data:`MIN_QUESTIONS` questions no interval is given (NaN): the n is too small;
- ``se`` is the cluster-robust (linearised) standard error, used for power (:func:`minimum_detectable_effect`,
  :func:`questions_needed`).

**Statistics that are not means** (rank correlations, Kendall tau of rankings): :func:`bootstrap_t` resamples
questions for a standard error and gives the t interval and t test with ``questions - 1`` degrees of freedom (again
one computation for both). :func:`cluster_bootstrap_stat` keeps the plain percentile interval for internal benchmarks.

**Families**: :func:`holm` (pairwise claims), :func:`benjamini_hochberg` (many cells); :func:`settle` draws more
permutations for Monte Carlo p-values near the decision, and keeps tests that cannot reach a verdict out of the family;
:func:`rank_groups` turns pairwise verdicts into compact letter groups. ``Estimate.at_floor`` marks a Monte Carlo
p-value at its floor ``1 / (permutations + 1)`` (the true p is at most that: printed ``<=``).
**Reliability**: :func:`split_half_reliability` (Spearman-Brown).

Every random function takes ``seed`` and builds its own ``numpy.random.Generator``: results do not depend on call
order. Defaults: 2,000 bootstrap resamples, 10,000 permutations.
"""
from __future__ import annotations

import functools
import gc
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import scipy.stats
from statsmodels.stats.multitest import multipletests

from harness.api.method import ALPHA, PERMUTATIONS, POWER, RESAMPLES  # METHOD's levels and draws, owned there

LEVEL = 1 - ALPHA  # 0.95 (exactly, in floating point too)
MIN_QUESTIONS = 10  # METHOD: below this, no interval (the n is too small for a conclusion)
_SIGN_BLOCK = 2_000  # sign vectors drawn at a time (memory: block x questions)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval, its test against 0, and the n it rests on.

    ``lo``/``hi`` are NaN below :data:`MIN_QUESTIONS` questions; ``se`` is the cluster-robust standard error.
    """

    estimate: float
    lo: float
    hi: float
    pvalue: float
    questions: int
    n: int  # rows (nodes) behind the estimate
    se: float = math.nan
    draws: int = 0  # Monte Carlo sign-flip draws behind ``pvalue`` (0: exact enumeration, or not a sign-flip test)

    @property
    def too_few(self) -> bool:
        """Fewer questions than a conclusion needs (METHOD: no interval below :data:`MIN_QUESTIONS`)."""
        return self.questions < MIN_QUESTIONS

    @property
    def at_floor(self) -> bool:
        """The Monte Carlo p-value is its smallest possible value ``1 / (draws + 1)``: the true p is at most that
        (printed with ``<=``, METHOD Statistics)."""
        return self.draws > 0 and math.isfinite(self.pvalue) and self.pvalue <= (1 + 1e-9) / (self.draws + 1)

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


@dataclass(frozen=True)
class Options:
    """How every interval and test of one report is drawn (each from its own ``Generator(seed)``)."""

    seed: int = 0
    permutations: int = PERMUTATIONS  # sign-flip draws (all 2^questions when fewer)
    resamples: int = RESAMPLES  # bootstrap resamples (statistics that are not means)
    alpha: float = ALPHA

    @property
    def test(self) -> dict[str, int]:
        """Keywords of the sign-flip procedures (:func:`cluster_ratio` and the functions built on it)."""
        return {"permutations": self.permutations, "seed": self.seed}

    @property
    def bootstrap(self) -> dict[str, int]:
        """Keywords of the bootstrap procedures (:func:`bootstrap_t`, :func:`correlation_ci`)."""
        return {"resamples": self.resamples, "seed": self.seed}


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


def question_sums(values, clusters, weights=None) -> tuple[np.ndarray, np.ndarray, int]:
    """Per question ``(sum w*v, sum w)`` over rows whose value and weight are finite and whose weight is > 0, and
    the number of such rows. Questions with no such row are left out."""
    values = np.asarray(values, dtype=float)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, dtype=float)
    ok = _finite(values, weights) & (weights > 0)
    codes, n_clusters = cluster_codes(np.asarray(clusters, dtype=object)[ok])
    num = np.bincount(codes, weights=values[ok] * weights[ok], minlength=n_clusters)
    den = np.bincount(codes, weights=weights[ok], minlength=n_clusters)
    return num, den, int(ok.sum())


def _sign_sums(num: np.ndarray, den: np.ndarray, permutations: int, seed: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(S @ num, S @ den, exact)`` for sign vectors S: all ``2^C`` of them when that is at most ``permutations``
    (exact test), else ``permutations`` random ones, drawn in blocks to bound memory."""
    c = num.size
    if c <= 20 and 2 ** c <= permutations:
        signs = 1.0 - 2.0 * ((np.arange(2 ** c)[:, None] >> np.arange(c)[None, :]) & 1)
        return signs @ num, signs @ den, True
    rng = np.random.default_rng(seed)
    a, b = np.empty(permutations), np.empty(permutations)
    for start in range(0, permutations, _SIGN_BLOCK):
        stop = min(permutations, start + _SIGN_BLOCK)
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(stop - start, c), dtype=np.int8)
        a[start:stop], b[start:stop] = signs @ num, signs @ den
    return a, b, False


def cluster_ratio(num, den, *, n: int | None = None, permutations: int = PERMUTATIONS, seed: int = 0,
                  level: float = LEVEL, min_questions: int = MIN_QUESTIONS) -> Estimate:
    """``theta = sum(num) / sum(den)`` over questions, with its sign-flip test of 0 and test-inversion interval.

    ``num``/``den`` hold one entry per question (``den > 0``); ``n`` is the number of rows behind them (defaults to
    the number of questions). See the module docstring for the procedure.
    """
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    c = int(num.size)
    n = c if n is None else int(n)
    if c == 0 or not den.sum() > 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, c, n)
    total = float(den.sum())
    theta = float(num.sum()) / total
    if c < 2:
        # one question: both sign assignments are equally extreme, so the exact two-sided p-value is 1
        return Estimate(theta, math.nan, math.nan, 1.0, c, n)
    residual = num - theta * den
    se = math.sqrt(c / (c - 1) * float(residual @ residual)) / total
    a, b, exact = _sign_sums(num, den, permutations, seed)
    count = a.size

    def pvalue(delta: np.ndarray) -> np.ndarray:
        """Two-sided p-values of theta = delta for each delta (vectorised over a 1-D array)."""
        delta = np.atleast_1d(np.asarray(delta, dtype=float))
        observed = np.abs(num.sum() - delta * total)
        null = np.abs(a[None, :] - delta[:, None] * b[None, :])
        # ties count as extreme (relative tolerance: sums of floats in another order)
        extreme = (null >= observed[:, None] * (1 - 1e-9) - 1e-12).sum(axis=1)
        return extreme / count if exact else (1 + extreme) / (1 + count)

    p0 = float(pvalue(0.0)[0])
    draws = 0 if exact else count
    if c < min_questions or se == 0.0:
        lo = hi = math.nan if c < min_questions else theta  # all contributions equal: a zero-width interval
        return Estimate(theta, lo, hi, min(1.0, p0), c, n, se, draws)
    alpha = 1 - level
    # the first step must move theta in floating point: a standard error of pure round-off (all questions equal)
    # would otherwise never leave it
    step = max(se, 1e-9 * max(1.0, abs(theta)))
    lo, hi = (_boundary(pvalue, theta, direction * step, alpha) for direction in (-1.0, 1.0))
    return Estimate(theta, lo, hi, min(1.0, p0), c, n, se, draws)


def _boundary(pvalue: Callable[[np.ndarray], np.ndarray], theta: float, step: float, alpha: float) -> float:
    """The point on one side of ``theta`` where the test starts rejecting (bisection after a doubling search)."""
    inside, outside = theta, theta + step
    for _ in range(60):  # p -> 2/2^C < alpha far out, so a rejecting point exists once C >= MIN_QUESTIONS
        if pvalue(outside)[0] < alpha:
            break
        inside, outside = outside, theta + 2 * (outside - theta)
    else:
        return math.inf * np.sign(step)
    for _ in range(60):
        middle = 0.5 * (inside + outside)
        if pvalue(middle)[0] >= alpha:
            inside = middle
        else:
            outside = middle
        if abs(outside - inside) <= 1e-10 * max(1.0, abs(theta)):
            break
    return float(inside)


def cluster_mean(values, clusters, weights=None, **options) -> Estimate:
    """Node-pooled (``weights``-weighted) mean of ``values`` with its question-level test and interval.

    Rows with a non-finite value or weight, or a weight <= 0, are ignored. ``options`` go to :func:`cluster_ratio`.
    """
    num, den, n = question_sums(values, clusters, weights)
    return cluster_ratio(num, den, n=n, **options)


def paired_difference(a, b, clusters, weights=None, **options) -> Estimate:
    """Pooled (weighted) mean of ``a - b`` over the rows where both are finite: the difference of the two pooled
    means on the same rows. Its test flips each question's sign (the two labels are exchangeable inside a question
    under the null), so it is a paired test at the question level."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return cluster_mean(a - b, clusters, weights, **options)


def mean_of_questions(per_question, **options) -> Estimate:
    """Mean of one value per question (e.g. a within-question contrast) with its sign-flip test and interval."""
    d = np.asarray(per_question, dtype=float)
    d = d[np.isfinite(d)]
    return cluster_ratio(d, np.ones_like(d), **options)


def sign_flip_test(differences, *, permutations: int = PERMUTATIONS, seed: int = 0) -> TestResult:
    """Two-sided paired test that the mean of per-question differences is 0, flipping each question's sign."""
    result = mean_of_questions(differences, permutations=permutations, seed=seed)
    return TestResult(result.estimate, result.pvalue, result.questions, result.n)


# ---------------------------------------------------------------- power


def _spread(estimate: Estimate) -> float:
    """Per-question standard deviation of the contributions behind an estimate (``se * sqrt(questions)``)."""
    if estimate.questions < 2 or not math.isfinite(estimate.se):
        return math.nan
    return estimate.se * math.sqrt(estimate.questions)


def minimum_detectable_effect(estimate: Estimate, *, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest true effect the two-sided test at ``alpha`` detects with probability ``power`` at this n and this
    between-question spread (one-sample t power, statsmodels ``TTestPower``, ``questions - 1`` degrees of freedom)."""
    spread = _spread(estimate)
    if not math.isfinite(spread):
        return math.nan
    return _standardized_mde(estimate.questions, alpha, power) * spread if spread > 0 else 0.0


@functools.lru_cache(maxsize=256)
def _standardized_mde(questions: int, alpha: float, power: float) -> float:
    """The detectable effect in units of the per-question spread: a pure function of its arguments, memoised
    because statsmodels solves it by root finding (~10 ms) and a leaderboard asks for the same n many times."""
    from statsmodels.stats.power import TTestPower

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        size = TTestPower().solve_power(effect_size=None, nobs=questions, alpha=alpha, power=power,
                                        alternative="two-sided")
    return float(size)


def questions_needed(estimate: Estimate, effect: float, *, alpha: float = ALPHA, power: float = POWER) -> float:
    """How many questions, with the same per-question spread, the test needs to detect ``effect`` with ``power``
    (rounded up; NaN without a spread to extrapolate from)."""
    from statsmodels.stats.power import TTestPower

    spread = _spread(estimate)
    if not math.isfinite(spread) or not effect > 0:
        return math.nan
    if spread == 0.0:
        return 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        needed = TTestPower().solve_power(effect_size=effect / spread, nobs=None, alpha=alpha, power=power,
                                          alternative="two-sided")
    needed = float(np.asarray(needed).reshape(-1)[0])
    return float(max(2, math.ceil(needed))) if math.isfinite(needed) else math.nan


# ---------------------------------------------------------------- bootstrap

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


def bootstrap_t(statistic: Callable[[np.ndarray], float], clusters, *, resamples: int = RESAMPLES, seed: int = 0,
                level: float = LEVEL, min_questions: int = MIN_QUESTIONS) -> Estimate:
    """A statistic of the rows (``statistic(row_indices) -> float``) with a question-level bootstrap standard error,
    and from it the t interval and the two-sided t test of 0 with ``questions - 1`` degrees of freedom: the interval
    excludes 0 exactly when the test rejects at ``1 - level``. Resamples where the statistic is undefined are
    dropped. No interval below ``min_questions`` questions."""
    codes, c = cluster_codes(clusters)
    n = int(codes.size)
    estimate = float(statistic(np.arange(n))) if n else math.nan
    if c < 2 or not math.isfinite(estimate):
        return Estimate(estimate, math.nan, math.nan, math.nan, c, n)
    index = _resampled_rows(codes, c, resamples, seed)
    draws = np.array([statistic(row[row >= 0]) for row in index], dtype=float)
    return _t_estimate(estimate, draws, c, n, level, min_questions)


def _t_estimate(estimate: float, draws: np.ndarray, c: int, n: int, level: float, min_questions: int) -> Estimate:
    draws = draws[np.isfinite(draws)]
    if draws.size < 2:
        return Estimate(estimate, math.nan, math.nan, math.nan, c, n)
    se = float(np.std(draws, ddof=1))
    df = c - 1
    if se == 0.0:
        pvalue = 1.0 if estimate == 0.0 else 0.0
        return Estimate(estimate, estimate, estimate, pvalue, c, n, se)
    pvalue = float(2 * scipy.stats.t.sf(abs(estimate) / se, df))
    if c < min_questions:
        return Estimate(estimate, math.nan, math.nan, pvalue, c, n, se)
    half = float(scipy.stats.t.ppf(0.5 + level / 2, df)) * se
    return Estimate(estimate, estimate - half, estimate + half, pvalue, c, n, se)


@dataclass(frozen=True)
class _Percentile:
    estimate: float
    lo: float
    hi: float
    n_clusters: int
    n: int
    undefined: int = 0


def cluster_bootstrap_stat(statistic: Callable[[np.ndarray], float], clusters, *, resamples: int = RESAMPLES,
                           seed: int = 0, level: float = LEVEL) -> _Percentile:
    """Percentile interval of a statistic of the rows, resampling questions (for internal benchmarks; it
    under-covers at small n, which is why the report tables use :func:`cluster_ratio` and :func:`bootstrap_t`).
    Resamples where the statistic is NaN are dropped and counted in ``undefined``."""
    codes, n_clusters = cluster_codes(clusters)
    n = int(codes.size)
    estimate = float(statistic(np.arange(n))) if n else math.nan
    if n_clusters < 2 or not math.isfinite(estimate):
        return _Percentile(estimate, math.nan, math.nan, n_clusters, n)
    index = _resampled_rows(codes, n_clusters, resamples, seed)
    draws = np.array([statistic(row[row >= 0]) for row in index], dtype=float)
    ok = np.isfinite(draws)
    if not ok.any():
        return _Percentile(estimate, math.nan, math.nan, n_clusters, n, int(draws.size))
    lo, hi = np.quantile(draws[ok], [(1 - level) / 2, (1 + level) / 2])
    return _Percentile(estimate, float(lo), float(hi), n_clusters, n, int((~ok).sum()))


# ---------------------------------------------------------------- families of tests

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


MAX_PERMUTATIONS = 1_000_000  # the most sign-flip draws :func:`settle` spends on one test near its threshold
_MC_Z = 3.0  # a decision counts as stable when the threshold is this many Monte Carlo standard errors away


def settle(estimates: Sequence[Estimate], redo: Callable[[int, int], Estimate], adjust: Callable = None, *,
           testable: Sequence[bool] | None = None, alpha: float = ALPHA,
           max_permutations: int = MAX_PERMUTATIONS) -> tuple[list[Estimate], np.ndarray]:
    """A family's estimates and adjusted p-values (``adjust``: :func:`holm` by default), with every Monte Carlo
    p-value whose adjusted value is near the decision (within a factor 2 of ``alpha``) drawn again with ten times
    the permutations (``redo(index, permutations)``) until the decision is stable (the threshold lies
    ``3`` Monte Carlo standard errors away, scaled by the adjustment) or ``max_permutations`` is reached.

    ``testable``: the tests that can reach a verdict (e.g. 10 questions or more); the others stay out of the family
    (adjusted p NaN) and are never redrawn (METHOD, Statistics).
    """
    adjust = adjust or holm
    estimates = list(estimates)
    testable = [True] * len(estimates) if testable is None else [bool(t) for t in testable]
    while True:
        raw = np.array([e.pvalue if ok else math.nan for e, ok in zip(estimates, testable)], dtype=float)
        adjusted = adjust(raw)
        again = []
        for index, (estimate, value) in enumerate(zip(estimates, adjusted)):
            if not (estimate.draws and estimate.draws < max_permutations and math.isfinite(value)):
                continue
            if not alpha / 2 <= value <= 2 * alpha:
                continue
            factor = value / estimate.pvalue if estimate.pvalue > 0 else 1.0
            error = factor * math.sqrt(estimate.pvalue * (1 - estimate.pvalue) / estimate.draws)
            if abs(value - alpha) <= _MC_Z * error:
                again.append(index)
        if not again:
            return estimates, adjusted
        for index in again:
            estimates[index] = redo(index, min(max_permutations, 10 * estimates[index].draws))


def rank_groups(order: Sequence[str], different: Callable[[str, str], bool]) -> dict[str, str]:
    """Compact letter display: teachers that no significant test separates share a letter.

    ``order`` lists the teachers best first; ``different(a, b)`` says whether a significant test separates them.
    Each maximal set of mutually non-separated teachers is a group; groups are lettered a, b, c... by their best
    member, so the leader's group is "a". A teacher in several groups gets several letters ("ab").
    """
    names = list(order)
    if len(names) > 16:  # maximal-clique enumeration below is exponential; leaderboards have a handful of teachers
        raise ValueError("rank_groups handles at most 16 teachers")
    same = {a: {b for b in names if b != a and not different(a, b)} for a in names}
    cliques: list[frozenset[str]] = []

    def expand(clique: set[str], candidates: set[str], excluded: set[str]) -> None:  # Bron-Kerbosch
        if not candidates and not excluded:
            cliques.append(frozenset(clique))
            return
        for name in sorted(candidates, key=names.index):
            expand(clique | {name}, candidates & same[name], excluded & same[name])
            candidates = candidates - {name}
            excluded = excluded | {name}

    expand(set(), set(names), set())
    cliques.sort(key=lambda group: sorted(names.index(name) for name in group))
    letters = {name: "" for name in names}
    for index, group in enumerate(cliques):
        for name in group:
            letters[name] += _letter(index)
    return {name: "".join(sorted(letters[name])) for name in names}


def _letter(index: int) -> str:
    return "abcdefghijklmnopqrstuvwxyz"[index] if index < 26 else f"<{index}>"


# ---------------------------------------------------------------- correlation and reliability

_RANK_CORRELATIONS = {"spearman": scipy.stats.spearmanr, "kendall": scipy.stats.kendalltau}


def _rank_result(method: str, x: np.ndarray, y: np.ndarray):
    """scipy's result for ``method`` on (x, y); None where no rank correlation is defined (fewer than 2 points or
    a constant variable)."""
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _RANK_CORRELATIONS[method](x, y)


def _correlation(method: str) -> Callable[[np.ndarray, np.ndarray], float]:
    if method not in _RANK_CORRELATIONS:  # fails here, before any resampling
        raise KeyError(method)

    def correlate(x: np.ndarray, y: np.ndarray) -> float:
        result = _rank_result(method, x, y)
        return math.nan if result is None else float(result.statistic)

    return correlate


def correlation_test(x, y, method: str = "spearman") -> tuple[float, float]:
    """:func:`correlation` with scipy's two-sided p-value of no association (Kendall: exact on small samples
    without ties); (NaN, NaN) where undefined."""
    result = _rank_result(method, np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    return (math.nan, math.nan) if result is None else (float(result.statistic), float(result.pvalue))


def correlation(x, y, method: str = "spearman") -> float:
    """Spearman or Kendall rank correlation, NaN when undefined (fewer than 2 points or a constant variable)."""
    return _correlation(method)(np.asarray(x, dtype=float), np.asarray(y, dtype=float))


def _batched_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman of each matrix row (NaN = padding): Pearson of midranks, as ``spearmanr`` computes it.

    Padding is ranked as +inf, above every real value, so the real values keep exactly their midranks among
    themselves; then it is masked out (much faster than ``rankdata(nan_policy="omit")``).
    """
    pad = np.isnan(x) | np.isnan(y)
    rx = np.where(pad, np.nan, scipy.stats.rankdata(np.where(pad, np.inf, x), axis=1))
    ry = np.where(pad, np.nan, scipy.stats.rankdata(np.where(pad, np.inf, y), axis=1))
    rx = rx - np.nanmean(rx, axis=1, keepdims=True)
    ry = ry - np.nanmean(ry, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nansum(rx * ry, axis=1) / np.sqrt(np.nansum(rx**2, axis=1) * np.nansum(ry**2, axis=1))


def correlation_ci(x, y, clusters, method: str = "spearman", *, given=None, resamples: int = RESAMPLES,
                   seed: int = 0, level: float = LEVEL) -> Estimate:
    """Spearman (``scipy.stats.spearmanr``) or Kendall (``kendalltau``) with a question-level bootstrap t interval
    and t test (:func:`bootstrap_t`). ``given`` (Spearman only): the partial rank correlation of x and y controlling
    for it (:func:`partial_spearman`). Spearman resamples are computed in one batch (ranks per row)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    z = None if given is None else np.asarray(given, dtype=float)
    ok = _finite(x) & _finite(y) & (True if z is None else _finite(z))
    x, y, clusters = x[ok], y[ok], np.asarray(clusters, dtype=object)[ok]
    z = None if z is None else z[ok]
    if method != "spearman":
        if z is not None:
            raise ValueError("a partial correlation is computed for Spearman only")
        correlate = _correlation(method)
        return bootstrap_t(lambda index: correlate(x[index], y[index]), clusters, resamples=resamples, seed=seed,
                           level=level)
    codes, c = cluster_codes(clusters)
    estimate = correlation(x, y) if z is None else partial_spearman(x, y, z)
    if c < 2 or not math.isfinite(estimate):
        return Estimate(estimate, math.nan, math.nan, math.nan, c, int(x.size))
    index = _resampled_rows(codes, c, resamples, seed)
    pad = index < 0

    def resampled(values: np.ndarray) -> np.ndarray:
        return np.where(pad, np.nan, values[index])

    xs, ys = resampled(x), resampled(y)
    if z is None:
        draws = _batched_spearman(xs, ys)
    else:
        zs = resampled(z)
        draws = _partial(_batched_spearman(xs, ys), _batched_spearman(xs, zs), _batched_spearman(ys, zs))
    return _t_estimate(estimate, draws, c, int(x.size), level, MIN_QUESTIONS)


def _partial(r_xy, r_xz, r_yz):
    """Partial correlation of x and y given z from the three pairwise correlations (NaN where undefined)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (r_xy - r_xz * r_yz) / np.sqrt((1 - r_xz ** 2) * (1 - r_yz ** 2))


def partial_spearman(x, y, z) -> float:
    """Spearman correlation of ``x`` and ``y`` controlling for ``z``: the partial correlation of their ranks,
    ``(r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2))`` with Spearman's r. NaN when undefined."""
    x, y, z = (np.asarray(v, dtype=float) for v in (x, y, z))
    if x.size < 3:
        return math.nan
    value = float(_partial(correlation(x, y), correlation(x, z), correlation(y, z)))
    return value if math.isfinite(value) else math.nan


def split_half_reliability(first_half, second_half) -> tuple[float, int]:
    """Spearman-Brown corrected correlation of two half-sample estimates over the rows where both are finite:
    ``2 r / (1 + r)`` with ``r`` Pearson's; ``(reliability, rows)``. NaN with fewer than 3 rows or no spread."""
    a, b = np.asarray(first_half, dtype=float), np.asarray(second_half, dtype=float)
    ok = _finite(a) & _finite(b)
    a, b = a[ok], b[ok]
    if a.size < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return math.nan, int(a.size)
    r = float(scipy.stats.pearsonr(a, b).statistic)
    return (2 * r / (1 + r) if r > -1 else -math.inf), int(a.size)
