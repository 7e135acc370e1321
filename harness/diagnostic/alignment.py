"""Alignment arithmetic at one node (METHOD.md): the support C(u), the ideal gradient g*, projection of a
full-vocabulary direction onto support + tail, the cosine, and the teacher-student divergences.

Vectors "on the support" have length ``|C| + 1``: the support entries in the fixed order of C(u), then one tail
bucket holding the sum of the components over all tokens outside C(u). Everything is float64.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from harness.diagnostic.losses import kl_divergence
from harness.storage.records import (
    COS_PQ,
    KL_STUDENT_TEACHER,
    KL_TEACHER_STUDENT,
    L2,
    SHARED_TOP_K,
    TOPK_SHARED_MASS,
    TV,
)

__all__ = [
    "cosine",
    "divergences",
    "entropy",
    "ideal_gradient",
    "is_informative",
    "project_to_support",
    "success_rates",
    "support_tokens",
]


def success_rates(correct: Sequence[int] | np.ndarray, trials: Sequence[int] | np.ndarray) -> np.ndarray:
    """``S_hat_k = correct_k / trials_k``: the plain fraction, no smoothing (METHOD step 5)."""
    correct = np.asarray(correct, dtype=np.float64)
    trials = np.asarray(trials, dtype=np.float64)
    if correct.shape != trials.shape:
        raise ValueError(f"correct and trials differ in shape: {correct.shape} vs {trials.shape}.")
    if np.any(trials <= 0) or np.any(correct < 0) or np.any(correct > trials):
        raise ValueError("every support token needs trials > 0 and 0 <= correct <= trials.")
    return correct / trials


def is_informative(s_hat: Sequence[float] | np.ndarray) -> bool:
    """A node is informative when its success estimates are not all equal (otherwise g* = 0).

    Exact comparison is right here: the estimates are correctly rounded fractions, so equal fractions such as
    1/3 and 2/6 are equal doubles.
    """
    s = np.asarray(s_hat, dtype=np.float64)
    return bool(s.size > 1 and s.max() != s.min())


def ideal_gradient(p_support: np.ndarray, s_hat: np.ndarray) -> np.ndarray:
    """``g*_k = p_k (S_hat_k - V_hat)`` on the support, with ``V_hat = sum_C p_k S_hat_k / p_C``; tail entry 0.

    The tail is treated as neutral (its success rate is taken to be V_hat), hence its ideal component is 0.
    """
    p = np.asarray(p_support, dtype=np.float64)
    s = np.asarray(s_hat, dtype=np.float64)
    if p.shape != s.shape or p.ndim != 1:
        raise ValueError(f"p_support and s_hat must be 1-D of equal length, got {p.shape} and {s.shape}.")
    p_c = p.sum()
    if not p_c > 0:
        raise ValueError("the support carries no student probability mass (p_C = 0).")
    g = np.zeros(p.size + 1)
    # When all estimates are equal g* is exactly 0, but p * (S - V_hat) would leave round-off noise whose
    # "direction" cosine() would happily report; write the exact zero so alignment comes out NaN instead.
    if is_informative(s):
        v_hat = float(p @ s) / p_c
        g[:-1] = p * (s - v_hat)
    return g


def project_to_support(d_full: torch.Tensor, support_ids: Sequence[int]) -> np.ndarray:
    """A full-vocabulary vector on support + tail: ``[d_k for k in C] + [sum of d outside C]``.

    The tail is computed as (total sum) - (support sum) in float64: one reduction over the vocabulary instead of
    building a mask, with an absolute error of order eps * sum|d|, far below anything a cosine can see.
    """
    d = d_full.detach().to(torch.float64).cpu().numpy().reshape(-1)
    ids = np.asarray(support_ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= d.size):
        raise ValueError(f"support ids must lie in [0, {d.size}).")
    if np.unique(ids).size != ids.size:
        raise ValueError("support ids must be distinct (a repeated token would be counted twice).")
    support = d[ids]
    return np.append(support, d.sum() - support.sum())


def cosine(g: np.ndarray, d: np.ndarray) -> float:
    """``cos(g, d)`` clipped to [-1, 1].

    NaN when either vector is zero: the angle is undefined. ``||g|| = 0`` is an uninformative node; ``||d|| = 0`` a
    zero distillation direction (teacher == student, or grpo with advantage 0), which METHOD keeps out of every
    mean and counts in the row's ``zero d`` share (the record's ``dnorm_<loss>`` column shows it).
    """
    g = np.asarray(g, dtype=np.float64).reshape(-1)
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    if g.shape != d.shape:
        raise ValueError(f"g and d differ in length: {g.size} vs {d.size}.")
    g_scale, d_scale = _max_abs(g), _max_abs(d)
    if g_scale == 0.0 or d_scale == 0.0:
        return math.nan
    # Rescale to unit max-magnitude first, so very small or very large vectors neither underflow nor overflow in
    # the squared norms (gradients at confident nodes can be ~1e-200).
    g, d = g / g_scale, d / d_scale
    # One square root of the product (not a product of two norms): sqrt(x * x) == x exactly in IEEE arithmetic,
    # so parallel vectors give exactly +-1 rather than 0.9999999999999998.
    c = float(g @ d) / math.sqrt(float(g @ g) * float(d @ d))
    return float(np.clip(c, -1.0, 1.0))  # NaN (from NaN inputs) passes through clip unchanged


def _max_abs(x: np.ndarray) -> float:
    return float(np.max(np.abs(x))) if x.size else 0.0


def entropy(logp: torch.Tensor) -> float:
    """Shannon entropy of the student distribution in nats (tokens with p_k = 0 contribute 0)."""
    logp = logp.detach().to(torch.float64)
    return -float(torch.where(logp > -math.inf, logp.exp() * logp, torch.zeros_like(logp)).sum())


def divergences(logp: torch.Tensor, logq: torch.Tensor, top_k: int = SHARED_TOP_K) -> dict[str, float]:
    """Teacher-student divergences at one node, over the full vocabulary (METHOD "Alignment")."""
    logp, logq = logp.detach().to(torch.float64), logq.detach().to(torch.float64)
    if logp.shape != logq.shape or logp.ndim != 1:
        raise ValueError(f"logp and logq must be 1-D of equal length, got {tuple(logp.shape)}, {tuple(logq.shape)}.")
    p, q = logp.exp(), logq.exp()
    k = min(top_k, p.numel())
    shared = torch.unique(torch.cat([torch.topk(p, k).indices, torch.topk(q, k).indices]))
    return {
        KL_STUDENT_TEACHER: kl_divergence(logp, logq),
        KL_TEACHER_STUDENT: kl_divergence(logq, logp),
        L2: float(torch.linalg.vector_norm(p - q)),
        COS_PQ: float(p @ q / (torch.linalg.vector_norm(p) * torch.linalg.vector_norm(q))),
        TV: 0.5 * float((p - q).abs().sum()),
        TOPK_SHARED_MASS: float(p[shared].sum()),
    }


def support_tokens(
    logp: torch.Tensor,
    sampled: int,
    top_k: int = 4,
    extra: Sequence[int] = (),
    min_prob: float = 1e-4,
) -> list[int]:
    """C(u) in its fixed order: the sampled token, then the top-K of p (descending), then ``extra`` (teacher top
    tokens); de-duplicated, dropping every token except the sampled one whose p_k < ``min_prob``.

    The sampled token is always kept: the rollout's own outcome is a trial for it, and the record promises it
    is in the support.
    """
    logp = logp.detach().to(torch.float64).reshape(-1)
    vocab = logp.numel()
    for token in (sampled, *extra):
        if not 0 <= int(token) < vocab:
            raise ValueError(f"token id {token} is out of range for a vocabulary of {vocab}.")
    # A stable descending sort breaks probability ties by token id, so the support order is reproducible.
    top = torch.sort(logp, descending=True, stable=True).indices[: max(top_k, 0)].tolist()
    support = [int(sampled)]
    for token in (*top, *(int(t) for t in extra)):
        if token not in support and float(logp[token].exp()) >= min_prob:
            support.append(token)
    return support
