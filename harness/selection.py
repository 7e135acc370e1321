"""Targeted rollouts, step 1-2 of METHOD: exponential depth windows and per-window node selection by priority."""
from __future__ import annotations

from collections.abc import Sequence

import torch

PRIORITIES = ("entropy", "disagreement")


def depth_window(position: int) -> int:
    """Window index of a response position: [0,1) -> 0, [1,2) -> 1, [2,4) -> 2, [4,8) -> 3, ..."""
    return 0 if position == 0 else int(position).bit_length()


def select_nodes(priority: Sequence[float], per_window: int) -> list[tuple[int, int]]:
    """Up to ``per_window`` positions per depth window, highest priority first; ties go to the earlier position.

    Returns ``(position, window)`` pairs sorted by position. NaN priorities (e.g. non-finite logits) are never chosen.
    """
    by_window: dict[int, list[tuple[float, int]]] = {}
    for position, score in enumerate(priority):
        if score == score:  # skip NaN
            by_window.setdefault(depth_window(position), []).append((-float(score), position))
    chosen = []
    for window, candidates in by_window.items():
        for _, position in sorted(candidates)[:per_window]:
            chosen.append((position, window))
    return sorted(chosen)


def entropy_rows(logits: torch.Tensor) -> torch.Tensor:
    """Student entropy (nats) at every position of ``logits`` [n, V] (float32 is plenty for ranking)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def tv_rows(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Total variation between student and teacher at every position."""
    p = torch.softmax(student_logits.float(), dim=-1)
    q = torch.softmax(teacher_logits.float(), dim=-1)
    return 0.5 * (p - q).abs().sum(dim=-1)
