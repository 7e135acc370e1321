"""Targeted rollouts, steps 1-2 of METHOD: depth windows and per-window node selection by priority.

Two layouts of the depth windows (``--depth-windows``), each used by both selections below:

* ``exponential`` (METHOD, the default): ``[0,1), [1,2), [2,4), [4,8), ...``. A 150-512-token chain has 9 or 10
  windows, 4 of them in its first 8 tokens, and its second half lies in one or two (parts of) windows.
* ``even``: as many windows as the exponential layout gives the rollout (so the same node budget, ``B`` per
  window), of equal width in ``depth_norm = position / length``: position ``i`` of a ``length``-token rollout lies
  in window ``floor(i * W / length)``, ``W = window_count(length)``. Every window is non-empty (``W <= length``),
  and every window holds the same number of candidates (give or take one), so the top-priority node of a late
  window is no more extreme than that of an early one.

Two selection designs (``--selection``):

* ``windows`` (METHOD, the default): the top ``B`` positions of every depth window by priority become nodes, and
  ``M`` forced continuations per support token estimate ``S_hat`` (the rollout itself one more trial of its token).
* ``screened``: a two-stage design that spends continuations where ``g*`` is non-zero. Candidates are the top
  positions of every window by priority (``SCREEN_CANDIDATES_PER_NODE`` per node the window may keep), skipping
  positions where the task says the answer is already fixed and positions whose support is a single token (both
  provably uninformative). Each candidate is *screened*: its
  evidence is the rollout's own outcome (a free trial of the sampled token), the outcomes of sibling rollouts that
  share its prefix (free trials of the tokens they took there) and, when those all agree, one cheap continuation of
  its most likely alternative token without a free trial. A candidate whose evidence holds both a success and a
  failure is kept, up to ``B`` per window (with more candidates per node, a window screens its next candidate
  while it holds fewer). Only then are ``M`` **fresh** continuations per support token drawn for
  every kept node, from random streams the screen never touched, and ``S_hat`` comes from them alone: neither the
  screening continuation nor the rollout (both of which decided the keep) is counted, so ``S_hat`` is an unbiased
  estimate of ``S`` for every kept node. The screen's outcomes are recorded per node (``screen_correct``,
  ``screen_trials``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from harness.api.method import DEFAULT_DEPTH_WINDOWS

PRIORITIES = ("entropy", "disagreement")
DEPTH_WINDOWS = ("exponential", "even")
SELECTIONS = ("windows", "screened")
# screened: how many candidates a window may screen per node it may keep (B). One: the candidates are METHOD's own
# nodes (the top B of each window), screened before any estimation. Measured on BoolQ with SmolLM2-135M (6 questions,
# the demo's knobs), screening a second candidate per window, or raising B, found no further informative node and
# only spent screening tokens (2.85 against 2.19 informative nodes per 1,000 tokens at 1 and 2).
SCREEN_CANDIDATES_PER_NODE = 1
SCREEN_ALTERNATIVES = 1


def depth_window(position: int) -> int:
    """Window index of a response position: [0,1) -> 0, [1,2) -> 1, [2,4) -> 2, [4,8) -> 3, ..."""
    return 0 if position == 0 else int(position).bit_length()


def window_count(length: int) -> int:
    """How many exponential depth windows a rollout of ``length`` tokens has (0 for an empty one): the window of
    its last position, plus one. The ``even`` layout uses as many."""
    return depth_window(length - 1) + 1 if length > 0 else 0


def even_window(position: int, length: int) -> int:
    """Window index of a position under the ``even`` layout: ``floor(position * W / length)`` with
    ``W = window_count(length)``, i.e. equal-width windows in ``depth_norm`` (integer arithmetic: no rounding)."""
    return position * window_count(length) // length


def window_of(position: int, length: int, layout: str = DEFAULT_DEPTH_WINDOWS) -> int:
    """Window index of ``position`` in a ``length``-token rollout under ``layout`` (one of :data:`DEPTH_WINDOWS`)."""
    if layout == "exponential":
        return depth_window(position)
    if layout == "even":
        return even_window(position, length)
    raise ValueError(f"unknown depth-window layout {layout!r}; known: {', '.join(DEPTH_WINDOWS)}")


def window_candidates(priority: Sequence[float], limit: int | None = None,
                      layout: str = DEFAULT_DEPTH_WINDOWS) -> dict[int, list[int]]:
    """Per depth window (``layout``; the rollout's length is ``len(priority)``), its positions by decreasing
    priority (ties to the earlier position), at most ``limit`` each. NaN priorities (non-finite logits, or
    positions ruled out beforehand) are never candidates."""
    length = len(priority)
    by_window: dict[int, list[tuple[float, int]]] = {}
    for position, score in enumerate(priority):
        if score == score:  # skip NaN
            by_window.setdefault(window_of(position, length, layout), []).append((-float(score), position))
    return {window: [position for _, position in sorted(candidates)[:limit]]
            for window, candidates in by_window.items()}


def select_nodes(priority: Sequence[float], per_window: int,
                 layout: str = DEFAULT_DEPTH_WINDOWS) -> list[tuple[int, int]]:
    """Up to ``per_window`` positions per depth window (``layout``), highest priority first; ties go to the earlier
    position.

    Returns ``(position, window)`` pairs sorted by position. NaN priorities (e.g. non-finite logits) are never chosen.
    """
    return sorted((position, window) for window, positions in window_candidates(priority, per_window, layout).items()
                  for position in positions)


def sibling_trials(responses: Sequence[Sequence[int]], outcomes: Sequence[bool], rollout: int, position: int,
                   support: Sequence[int]) -> tuple[list[int], list[int]]:
    """Free screening evidence for node ``(rollout, position)``: every *other* rollout of the question that shares
    the prefix ``y_<position`` went on with some token there and was graded, so it is one trial of that token from
    this very node. Returns (correct, trials) per support token (tokens outside the support are not counted)."""
    prefix = list(responses[rollout][:position])
    index_of = {token: k for k, token in enumerate(support)}
    correct, trials = [0] * len(support), [0] * len(support)
    for other, (tokens, outcome) in enumerate(zip(responses, outcomes)):
        if other == rollout or len(tokens) <= position or list(tokens[:position]) != prefix:
            continue
        k = index_of.get(int(tokens[position]))
        if k is not None:
            correct[k] += int(outcome)
            trials[k] += 1
    return correct, trials


def screen_keeps(rollout_correct: bool, correct: Sequence[int], trials: Sequence[int]) -> bool:
    """Keep a candidate when its evidence (the rollout's own outcome, plus ``correct``/``trials`` per support token
    from sibling rollouts and screening continuations) holds both a success and a failure: its success
    probabilities plausibly differ, so ``g*`` is plausibly non-zero."""
    successes = int(rollout_correct) + sum(correct)
    return 0 < successes < 1 + sum(trials)


def screen_tokens(support: Sequence[int], trials: Sequence[int]) -> list[int]:
    """The tokens a candidate spends its cheap screening continuations on: the most likely alternatives to the
    sampled token (the support lists it first, then the top-K by probability) that have no free trial yet."""
    return [token for token, free in zip(support[1:], trials[1:]) if not free][:SCREEN_ALTERNATIVES]


def entropy_rows(logits: torch.Tensor) -> torch.Tensor:
    """Student entropy (nats) at every position of ``logits`` [n, V] (float32 is plenty for ranking)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def tv_rows(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Total variation between student and teacher at every position."""
    p = torch.softmax(student_logits.float(), dim=-1)
    q = torch.softmax(teacher_logits.float(), dim=-1)
    return 0.5 * (p - q).abs().sum(dim=-1)
