"""Ideal gradient, projection, cosine, divergences and support selection against hand and numpy computations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from harness.diagnostic.alignment import (
    cosine,
    divergences,
    entropy,
    ideal_gradient,
    is_informative,
    project_to_support,
    success_rates,
    support_tokens,
)


def _log_softmax(values) -> torch.Tensor:
    return torch.log_softmax(torch.as_tensor(values, dtype=torch.float64), dim=0)


# --- success rates and the ideal gradient ------------------------------------------------------------------------


def test_success_rates_are_plain_fractions() -> None:
    s = success_rates([0, 3, 5], [4, 4, 5])
    assert s.dtype == np.float64
    np.testing.assert_array_equal(s, [0.0, 0.75, 1.0])
    with pytest.raises(ValueError):
        success_rates([1], [0])
    with pytest.raises(ValueError):
        success_rates([5], [4])
    with pytest.raises(ValueError):
        success_rates([1, 2], [4])


def test_is_informative() -> None:
    assert is_informative([0.0, 0.25])
    assert not is_informative([0.5, 0.5, 0.5])
    assert not is_informative(success_rates([1, 2], [3, 6]))  # 1/3 and 2/6 are the same double
    assert not is_informative([0.7])  # a single token: nothing to compare


def test_ideal_gradient_by_hand() -> None:
    p = np.array([0.5, 0.2, 0.1])  # p_C = 0.8, tail mass 0.2
    s = np.array([1.0, 0.0, 0.5])
    v_hat = (0.5 * 1.0 + 0.2 * 0.0 + 0.1 * 0.5) / 0.8  # 0.6875
    expected = [0.5 * (1.0 - v_hat), 0.2 * (0.0 - v_hat), 0.1 * (0.5 - v_hat), 0.0]
    np.testing.assert_allclose(ideal_gradient(p, s), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(expected, [0.15625, -0.1375, -0.01875, 0.0], atol=1e-15)


def test_ideal_gradient_is_exactly_zero_when_uninformative() -> None:
    g = ideal_gradient(np.array([0.3, 0.1, 0.07]), np.array([1 / 3, 1 / 3, 1 / 3]))
    assert np.all(g == 0.0)
    assert math.isnan(cosine(g, np.array([1.0, -1.0, 0.5, -0.5])))


def test_ideal_gradient_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        ideal_gradient(np.array([0.5, 0.5]), np.array([1.0]))
    with pytest.raises(ValueError):
        ideal_gradient(np.array([0.0, 0.0]), np.array([1.0, 0.0]))


@settings(max_examples=50, deadline=None)
@given(
    p=arrays(np.float64, st.integers(1, 12), elements=st.floats(1e-6, 1.0)),
    data=st.data(),
)
def test_ideal_gradient_sums_to_zero(p: np.ndarray, data) -> None:
    p = p / p.sum() * data.draw(st.floats(0.05, 1.0))  # support mass p_C <= 1, the rest is tail
    trials = data.draw(arrays(np.int64, p.shape, elements=st.integers(1, 9)))
    correct = np.array([data.draw(st.integers(0, int(t))) for t in trials])
    g = ideal_gradient(p, success_rates(correct, trials))
    assert g.shape == (p.size + 1,) and g[-1] == 0.0
    assert abs(g.sum()) < 1e-14
    # The ideal direction never points against the best-estimated token: its component is >= 0.
    s = success_rates(correct, trials)
    assert g[int(np.argmax(s))] >= -1e-15


# --- projection -------------------------------------------------------------------------------------------------


def test_project_to_support_orders_entries_and_sums_the_tail() -> None:
    d = torch.tensor([1.0, -2.0, 3.0, 0.5, -4.0], dtype=torch.float64)
    np.testing.assert_allclose(project_to_support(d, [3, 0]), [0.5, 1.0, 3.0 - 2.0 - 4.0])
    np.testing.assert_allclose(project_to_support(d, range(5)), [1.0, -2.0, 3.0, 0.5, -4.0, 0.0], atol=1e-15)
    with pytest.raises(ValueError):
        project_to_support(d, [1, 1])
    with pytest.raises(ValueError):
        project_to_support(d, [5])


@settings(max_examples=50, deadline=None)
@given(
    d=arrays(np.float64, st.integers(1, 30), elements=st.floats(-10.0, 10.0)),
    data=st.data(),
)
def test_projection_tail_carries_the_rest_of_the_sum(d: np.ndarray, data) -> None:
    ids = data.draw(st.lists(st.integers(0, d.size - 1), unique=True, max_size=d.size))
    projected = project_to_support(torch.from_numpy(d), ids)
    assert projected.shape == (len(ids) + 1,)
    np.testing.assert_array_equal(projected[:-1], d[ids])
    outside = np.setdiff1d(np.arange(d.size), ids)
    assert projected[-1] == pytest.approx(math.fsum(d[outside]), abs=1e-12)


# --- cosine -----------------------------------------------------------------------------------------------------


def test_cosine_edge_cases() -> None:
    g = np.array([1.0, -1.0, 0.0])
    assert math.isnan(cosine(np.zeros(3), g))
    assert math.isnan(cosine(np.zeros(3), np.zeros(3)))
    assert math.isnan(cosine(g, np.zeros(3)))  # a zero direction has no angle (METHOD: zero d, NaN)
    assert cosine(g, g) == 1.0
    assert cosine(g, -g) == -1.0
    assert cosine(g, np.array([1.0, 1.0, 5.0])) == pytest.approx(0.0, abs=1e-15)
    assert cosine(np.array([3.0, 4.0]), np.array([4.0, 3.0])) == pytest.approx(24 / 25, rel=1e-15)
    # Vectors far outside the range where squared norms are representable still give the right angle.
    assert cosine(1e-200 * g, 1e200 * g) == 1.0
    with pytest.raises(ValueError):
        cosine(np.ones(2), np.ones(3))


# Magnitudes kept clear of the subnormal range, where scaling by 1e-3 would itself lose the vector (to zero).
finite = st.floats(-1e6, 1e6).filter(lambda x: x == 0.0 or abs(x) > 1e-100)


@settings(max_examples=50, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 10),
    a=st.floats(1e-3, 1e3),
    b=st.floats(1e-3, 1e3),
)
def test_cosine_bounded_and_scale_invariant(data, n: int, a: float, b: float) -> None:
    g = data.draw(arrays(np.float64, n, elements=finite))
    d = data.draw(arrays(np.float64, n, elements=finite))
    c = cosine(g, d)
    if not np.any(g) or not np.any(d):
        assert math.isnan(c)  # a zero vector has no angle (METHOD: zero d)
        return
    assert -1.0 <= c <= 1.0
    assert cosine(a * g, b * d) == pytest.approx(c, abs=1e-12)
    assert cosine(d, g) == pytest.approx(c, abs=1e-12)


# --- divergences and entropy ------------------------------------------------------------------------------------


def test_divergences_match_numpy() -> None:
    rng = np.random.default_rng(0)
    logp, logq = _log_softmax(2 * rng.standard_normal(40)), _log_softmax(2 * rng.standard_normal(40))
    p, q = logp.exp().numpy(), logq.exp().numpy()
    out = divergences(logp, logq, top_k=10)
    assert set(out) == {"kl_student_teacher", "kl_teacher_student", "l2", "cos_pq", "tv", "topk_shared_mass"}
    shared = np.union1d(np.argsort(-p)[:10], np.argsort(-q)[:10])
    expected = {
        "kl_student_teacher": np.sum(p * np.log(p / q)),
        "kl_teacher_student": np.sum(q * np.log(q / p)),
        "l2": np.sqrt(np.sum((p - q) ** 2)),
        "cos_pq": p @ q / np.sqrt((p @ p) * (q @ q)),
        "tv": 0.5 * np.abs(p - q).sum(),
        "topk_shared_mass": p[shared].sum(),
    }
    for key, value in expected.items():
        assert isinstance(out[key], float)
        assert out[key] == pytest.approx(float(value), rel=1e-12), key


def test_divergences_of_identical_distributions() -> None:
    logp = _log_softmax([0.1, 2.0, -1.0, 0.3])
    out = divergences(logp, logp.clone(), top_k=10)  # top_k above the vocabulary size is clamped
    assert out["kl_student_teacher"] == 0.0 and out["kl_teacher_student"] == 0.0
    assert out["l2"] == 0.0 and out["tv"] == 0.0
    assert out["cos_pq"] == pytest.approx(1.0, abs=1e-15)
    assert out["topk_shared_mass"] == pytest.approx(1.0, abs=1e-15)


def test_entropy() -> None:
    assert entropy(_log_softmax(np.zeros(8))) == pytest.approx(math.log(8), rel=1e-15)
    logits = torch.tensor([0.0, -math.inf, 1.0], dtype=torch.float64)  # a zero-probability token adds 0
    p = torch.softmax(logits, 0).numpy()[[0, 2]]
    assert entropy(torch.log_softmax(logits, 0)) == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-14)


# --- support selection ------------------------------------------------------------------------------------------


def test_support_tokens_order_dedupe_and_threshold() -> None:
    probs = np.array([0.40, 0.25, 0.15, 0.10, 0.0499, 0.05, 0.00005, 0.00005])
    logp = torch.log(torch.as_tensor(probs / probs.sum(), dtype=torch.float64))
    # sampled first, then top-4 by descending probability, then extras; duplicates and p < 1e-4 dropped
    assert support_tokens(logp, sampled=4, top_k=4, extra=(5, 0, 7)) == [4, 0, 1, 2, 3, 5]
    # the sampled token is kept even below the threshold, and not repeated when it is also a top token
    assert support_tokens(logp, sampled=6, top_k=2) == [6, 0, 1]
    assert support_tokens(logp, sampled=1, top_k=3) == [1, 0, 2]
    assert support_tokens(logp, sampled=0, top_k=0, extra=(3,)) == [0, 3]
    assert support_tokens(logp, sampled=2, top_k=8, min_prob=0.12) == [2, 0, 1]
    with pytest.raises(ValueError):
        support_tokens(logp, sampled=8)
    with pytest.raises(ValueError):
        support_tokens(logp, sampled=0, extra=(-1,))


def test_support_tokens_break_ties_by_token_id() -> None:
    logp = _log_softmax([1.0, 2.0, 2.0, 2.0, 0.0])
    assert support_tokens(logp, sampled=4, top_k=2) == [4, 1, 2]
