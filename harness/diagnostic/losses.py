"""The distillation losses the diagnostic compares, as descent directions on the student's logits (METHOD.md).

Each registered loss is a factory returning a frozen :class:`Loss`. A loss gives its descent direction ``d`` twice:

* ``full_direction`` over the whole vocabulary, from the full-vocabulary log-probs at a node; this is what the
  tests check against autograd.
* ``support_direction`` on the support ``C(u)`` plus one tail bucket (tail last), computed only from the columns
  ``nodes.parquet`` stores, so alignments can be recomputed from records without the models.

Both are produced by the *same* per-loss formula, evaluated either over the full vocabulary or over the support
entries. A formula may need one full-vocabulary statistic (``lbar`` for rkl, ``rbar`` for jsd): over the full
vocabulary it is computed, on the support it is read from the record. Every direction sums to zero over the full
vocabulary (each is ``p * (something - its p-mean)`` or a difference of two distributions), so the tail entry is
minus the sum of the support entries.

Everything is float64: directions are compared by cosine and tails are differences of near-equal sums.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.api.method import JSD_BETA
from harness.api.registry import Registry
from harness.storage.records import KL_STUDENT_TEACHER

__all__ = [
    "LOSSES",
    "Loss",
    "NodeDistributions",
    "RecordedDirections",
    "SupportView",
    "jsd_rbar",
    "kl_divergence",
    "register_loss",
    "resolve_loss",
]


@dataclass(frozen=True)
class NodeDistributions:
    """Full-vocabulary inputs at one node."""

    logp: torch.Tensor  # float64 [V] student log-probs (log_softmax of the logits)
    logq: torch.Tensor | None  # float64 [V] teacher log-probs; None for teacher-free losses
    sampled: int  # token id the rollout took at the node
    advantage: float = 0.0  # GRPO advantage R(rollout) - mean_G R


@dataclass(frozen=True)
class SupportView:
    """What ``nodes.parquet`` stores for one node: the support C(u) in its fixed order plus two scalars."""

    student_logprobs: np.ndarray  # log p_k, k in C
    teacher_logprobs: np.ndarray | None  # log q_k, k in C; None when there is no teacher
    sampled_index: int  # index of the sampled token inside the support
    kl_student_teacher: float  # full-vocab KL(p||q) = lbar
    jsd_rbar: float  # full-vocab sum_k p_k log(p_k / M_k), for the jsd beta the record was written with
    advantage: float = 0.0


@dataclass(frozen=True)
class Loss:
    """One distillation loss (or the GRPO reference row), as descent directions in logit space."""

    name: str
    description: str
    uses_teacher: bool  # False: the direction needs no teacher (grpo)
    full_direction: Callable[[NodeDistributions], torch.Tensor]  # d over the full vocab, float64 [V]
    support_direction: Callable[[SupportView], np.ndarray]  # d on support + tail (tail last), len |C|+1


LOSSES: Registry[Loss] = Registry("loss")


def register_loss(name: str, description: str | None = None) -> Callable:
    """Decorator for a loss factory: ``@register_loss("rkl") def rkl() -> Loss``."""
    return LOSSES.register(name, description)


def resolve_loss(name: str, **options: float) -> Loss:
    """Registry name -> a :class:`Loss` (``options`` go to the factory, e.g. ``beta`` for jsd)."""
    return LOSSES.get(name)(**options)


# --- full-vocabulary statistics --------------------------------------------------------------------------------


def _f64(x: torch.Tensor) -> torch.Tensor:
    # Directions are plain computations, never part of a graph: detach so callers may pass live tensors.
    return x.detach().to(torch.float64)


def _plogratio(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """``p_k (log p_k - log q_k)`` with the convention 0 * log(0 / q) = 0 (no NaN from -inf - -inf)."""
    return torch.where(logp > -math.inf, logp.exp() * (logp - logq), torch.zeros_like(logp))


def kl_divergence(logp: torch.Tensor, logq: torch.Tensor) -> float:
    """KL(p || q) in nats over the full vocabulary, from log-probs (tokens with p_k = 0 contribute 0)."""
    return float(_plogratio(_f64(logp), _f64(logq)).sum())


def _log_mixture(logp: torch.Tensor, logq: torch.Tensor, beta: float) -> torch.Tensor:
    """log M with M = (1-beta) p + beta q, in log space so tiny probabilities don't underflow to log 0."""
    return torch.logaddexp(logp + math.log1p(-beta), logq + math.log(beta))


def jsd_rbar(logp: torch.Tensor, logq: torch.Tensor, beta: float = 0.5) -> float:
    """Full-vocab ``rbar = sum_k p_k log(p_k / M_k)`` = KL(p || M), the statistic the jsd direction centres on."""
    _check_beta(beta)
    logp, logq = _f64(logp), _f64(logq)
    return float(_plogratio(logp, _log_mixture(logp, logq, beta)).sum())


def _check_beta(beta: float) -> None:
    # At beta = 0 the mixture is p itself and at beta = 1 the (1 - beta) factor kills the direction: either way
    # the "jsd" row would silently be all zeros, so the endpoints are refused.
    if not 0.0 < beta < 1.0:
        raise ValueError(f"jsd beta must lie strictly between 0 and 1, got {beta!r}.")


# --- one formula, two index sets --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entries:
    """What a direction formula reads, over either the full vocabulary or the support C(u)."""

    logp: torch.Tensor  # log p over this index set
    logq: torch.Tensor | None  # log q over this index set
    sampled: int  # position of the sampled token y within this index set
    advantage: float


Formula = Callable[[_Entries, float], torch.Tensor]  # (entries, full-vocab statistic) -> d over the entries


def _one_hot_minus_p(e: _Entries) -> torch.Tensor:
    """``(e_y - p)_k``: the logit gradient of log p_y, shared by the sampled and grpo rows."""
    d = -e.logp.exp()
    d[e.sampled] += 1.0
    return d


def _teacher(e: _Entries) -> torch.Tensor:
    if e.logq is None:
        raise ValueError("this loss needs teacher log-probs, but none were given (logq / teacher_logprobs is None).")
    return e.logq


def _make_loss(
    name: str,
    formula: Formula,
    *,
    uses_teacher: bool = True,
    full_stat: Callable[[_Entries], float] = lambda e: 0.0,
    record_stat: Callable[[SupportView], float] = lambda v: 0.0,
) -> Loss:
    """Wrap a formula into a :class:`Loss`: the full-vocab and the record paths differ only in where the
    statistic comes from and in the tail bucket appended on the support."""

    def full_direction(node: NodeDistributions) -> torch.Tensor:
        logp = _f64(node.logp)
        logq = None if node.logq is None or not uses_teacher else _f64(node.logq)
        if logp.ndim != 1 or (logq is not None and logq.shape != logp.shape):
            raise ValueError(f"expected 1-D logp/logq of equal length, got {tuple(logp.shape)} and "
                             f"{None if logq is None else tuple(logq.shape)}.")
        _check_index(node.sampled, logp.numel(), "sampled token id")
        e = _Entries(logp, logq, int(node.sampled), float(node.advantage))
        return formula(e, full_stat(e))

    def support_direction(view: SupportView) -> np.ndarray:
        logp = torch.as_tensor(np.asarray(view.student_logprobs, dtype=np.float64))
        logq = None
        if uses_teacher and view.teacher_logprobs is not None:
            logq = torch.as_tensor(np.asarray(view.teacher_logprobs, dtype=np.float64))
            if logq.shape != logp.shape:
                raise ValueError("student_logprobs and teacher_logprobs must have the same length.")
        _check_index(view.sampled_index, logp.numel(), "sampled_index")
        e = _Entries(logp, logq, int(view.sampled_index), float(view.advantage))
        d = formula(e, float(record_stat(view))).numpy()
        # The full direction sums to zero over the vocabulary, so what lies outside C(u) is minus what lies in it.
        return np.append(d, -d.sum())

    return Loss(name, LOSSES.describe(name), uses_teacher, full_direction, support_direction)


def _check_index(index: int, size: int, what: str) -> None:
    if not 0 <= int(index) < size:
        raise ValueError(f"{what} {index} is out of range for {size} entries.")


# --- the registered losses ---------------------------------------------------------------------------------------


@register_loss("rkl")
def rkl() -> Loss:
    """Reverse KL(p || q) (the paper's GKD gradient): d_k = -p_k (l_k - lbar)."""

    def formula(e: _Entries, lbar: float) -> torch.Tensor:
        p, logq = e.logp.exp(), _teacher(e)
        l = torch.where(p > 0, e.logp - logq, torch.zeros_like(p))  # l_k is irrelevant where p_k = 0
        return -p * (l - lbar)

    return _make_loss(
        "rkl",
        formula,
        full_stat=lambda e: kl_divergence(e.logp, _teacher(e)),
        record_stat=lambda v: v.kl_student_teacher,
    )


@register_loss("fkl")
def fkl() -> Loss:
    """Forward KL(q || p): d_k = q_k - p_k."""

    def formula(e: _Entries, _: float) -> torch.Tensor:
        return _teacher(e).exp() - e.logp.exp()

    return _make_loss("fkl", formula)


@register_loss("jsd")
def jsd(beta: float = 0.5) -> Loss:
    """Generalized JSD, M = (1-beta) p + beta q: d_k = -(1-beta) p_k (r_k - rbar), r = log(p / M)."""
    _check_beta(beta)

    def formula(e: _Entries, rbar: float) -> torch.Tensor:
        p = e.logp.exp()
        r = torch.where(p > 0, e.logp - _log_mixture(e.logp, _teacher(e), beta), torch.zeros_like(p))
        return -(1.0 - beta) * p * (r - rbar)

    return _make_loss(
        "jsd",
        formula,
        full_stat=lambda e: jsd_rbar(e.logp, _teacher(e), beta),
        record_stat=lambda v: v.jsd_rbar,
    )


@register_loss("sampled")
def sampled() -> Loss:
    """Single-sample reverse-KL estimator at the sampled token y: d_k = -l_y (e_y - p)_k."""

    def formula(e: _Entries, _: float) -> torch.Tensor:
        l_y = e.logp[e.sampled] - _teacher(e)[e.sampled]
        return -l_y * _one_hot_minus_p(e)

    return _make_loss("sampled", formula)


@register_loss("grpo")
def grpo() -> Loss:
    """Reference row, no teacher: REINFORCE with group baseline, d_k = A (e_y - p)_k."""

    def formula(e: _Entries, _: float) -> torch.Tensor:
        return e.advantage * _one_hot_minus_p(e)

    return _make_loss("grpo", formula, uses_teacher=False)


# --- directions recomputed from a record row (opd view) ----------------------------------------------------------


def _absent(value: Any) -> bool:
    """None or NaN: pandas' null in an object column."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _column(node: Mapping[str, Any], name: str) -> float:
    value = node.get(name)
    return math.nan if _absent(value) else float(value)


@dataclass(frozen=True)
class RecordedDirections:
    """Each loss's direction ``d`` on support + tail recomputed from one ``nodes.parquet`` row's own columns, with the
    JSD beta the run was written with: what :mod:`harness.render.viewer` shows beside the stored alignment (the
    viewer is handed one, so that rendering never imports torch)."""

    jsd_beta: float = JSD_BETA

    def uses_teacher(self, loss: str) -> bool:
        return resolve_loss(loss).uses_teacher

    def direction(self, node: Mapping[str, Any], loss: str) -> np.ndarray | None:
        """``d`` of ``loss`` at the row; None when it cannot be recomputed (a teacher loss without q)."""
        teacher = node.get("teacher_logprobs")
        teacher = None if _absent(teacher) else teacher
        resolved = resolve_loss(loss, beta=self.jsd_beta) if loss == "jsd" else resolve_loss(loss)
        if resolved.uses_teacher and teacher is None:
            return None
        support = list(node["support_token_ids"])
        try:
            view = SupportView(np.asarray(list(node["student_logprobs"]), dtype=float),
                               None if teacher is None else np.asarray(list(teacher), dtype=float),
                               support.index(int(node["sampled_token_id"])), _column(node, KL_STUDENT_TEACHER),
                               _column(node, "jsd_rbar"), _column(node, "grpo_advantage"))
            return resolved.support_direction(view)
        except ValueError:
            return None
