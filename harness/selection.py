"""Targeted rollouts, steps 1-2 of METHOD: exponential depth windows and per-window node selection by priority.

Two selection designs (``--selection``):

* ``windows`` (METHOD, the default): the top ``B`` positions of every depth window by priority become nodes, and
  ``M`` forced continuations per support token estimate ``S_hat`` (the rollout itself one more trial of its token).
* ``screened``: a two-stage design that spends continuations where ``g*`` is non-zero. Candidates are the top
  positions of every window by priority, skipping positions where the task says the answer is already fixed and
  positions whose support is a single token (both provably uninformative). Each candidate is *screened* with one
  cheap continuation of its most likely alternative token, compared with the rollout's own outcome (a free trial of
  the sampled token); a candidate whose screen disagrees is kept, up to ``B`` per window, screening the next
  candidate of a window while it has fewer. Only then are ``M`` **fresh** continuations per support token drawn for
  every kept node, from random streams the screen never touched, and ``S_hat`` comes from them alone: neither the
  screening continuation nor the rollout (both of which decided the keep) is counted, so ``S_hat`` is an unbiased
  estimate of ``S`` for every kept node. The screen's outcomes are recorded per node (``screen_correct``,
  ``screen_trials``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

PRIORITIES = ("entropy", "disagreement")
SELECTIONS = ("windows", "screened")
DEFAULT_SELECTION = "windows"
# screened: at most this many candidates screened per node a window may keep (B), so one window of near-identical
# positions cannot eat the budget; and this many alternative tokens screened per candidate
SCREEN_CANDIDATES_PER_NODE = 4
SCREEN_ALTERNATIVES = 1


def depth_window(position: int) -> int:
    """Window index of a response position: [0,1) -> 0, [1,2) -> 1, [2,4) -> 2, [4,8) -> 3, ..."""
    return 0 if position == 0 else int(position).bit_length()


def window_candidates(priority: Sequence[float], limit: int | None = None) -> dict[int, list[int]]:
    """Per depth window, its positions by decreasing priority (ties to the earlier position), at most ``limit``
    each. NaN priorities (non-finite logits, or positions ruled out beforehand) are never candidates."""
    by_window: dict[int, list[tuple[float, int]]] = {}
    for position, score in enumerate(priority):
        if score == score:  # skip NaN
            by_window.setdefault(depth_window(position), []).append((-float(score), position))
    return {window: [position for _, position in sorted(candidates)[:limit]]
            for window, candidates in by_window.items()}


def select_nodes(priority: Sequence[float], per_window: int) -> list[tuple[int, int]]:
    """Up to ``per_window`` positions per depth window, highest priority first; ties go to the earlier position.

    Returns ``(position, window)`` pairs sorted by position. NaN priorities (e.g. non-finite logits) are never chosen.
    """
    return sorted((position, window) for window, positions in window_candidates(priority, per_window).items()
                  for position in positions)


def screen_tokens(support: Sequence[int]) -> list[int]:
    """The tokens a screened candidate spends its cheap continuations on: its most likely alternatives to the
    sampled token (the support lists the sampled token first, then the top-K by probability)."""
    return list(support[1:1 + SCREEN_ALTERNATIVES])


def screen_keeps(rollout_correct: bool, screen_correct: Sequence[int], screen_trials: Sequence[int]) -> bool:
    """Keep a screened candidate when some screening continuation ended otherwise than the rollout did: the
    outcomes differ across its tokens, so its success probabilities plausibly do too."""
    return any(correct != (trials if rollout_correct else 0)
               for correct, trials in zip(screen_correct, screen_trials) if trials)


def entropy_rows(logits: torch.Tensor) -> torch.Tensor:
    """Student entropy (nats) at every position of ``logits`` [n, V] (float32 is plenty for ranking)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def tv_rows(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Total variation between student and teacher at every position."""
    p = torch.softmax(student_logits.float(), dim=-1)
    q = torch.softmax(teacher_logits.float(), dim=-1)
    return 0.5 * (p - q).abs().sum(dim=-1)
