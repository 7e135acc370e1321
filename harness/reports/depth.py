"""Where the nodes are (METHOD): how a run's informative nodes spread over the response, computed from its records.

A node at the first response token (position 0) is a state every rollout of its question shares: there ``g*``
only says which first token leads to success, and correct and incorrect paths cannot differ. A diagnostic whose
informative nodes sit mostly there (a direct-answer task) measures the answer prior, not a reasoning chain, so every
run states the distribution: the share of its informative nodes at the first response token and the quartiles of
their ``depth_norm`` (``position / rollout length``; numpy's default linear interpolation between order
statistics). Each node counts once, whatever the number of teachers (informativeness does not depend on the
teacher). Rendering lives in :mod:`harness.render.tables`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

NODE_IDENTITY = ("task", "student", "question_id", "rollout_id", "position")  # one node, whatever the teacher
QUARTILES = (0.25, 0.5, 0.75)
MOSTLY = 0.5  # METHOD: nodes "mostly" on the first token, i.e. more than half of them


@dataclass(frozen=True)
class DepthSummary:
    """The spread over depth of one set of nodes (informative ones, by default): how many, how many at the first
    response token, and the quartiles of their ``depth_norm`` (None without nodes)."""

    nodes: int
    first_token: int
    quartiles: tuple[float, float, float] | None
    selected: int | None = None  # every node selected (informative or not), for context; None when not counted

    @property
    def first_token_share(self) -> float | None:
        return self.first_token / self.nodes if self.nodes else None

    @property
    def mostly_first_token(self) -> bool:
        """More than half of the nodes at the first response token: the answer prior, not a chain."""
        share = self.first_token_share
        return share is not None and share > MOSTLY

    def as_json(self) -> dict[str, Any]:
        """The run.json form (no NaN: JSON has none)."""
        return {"informative_nodes": self.nodes, "selected_nodes": self.selected,
                "first_token_nodes": self.first_token, "first_token_share": self.first_token_share,
                "depth_norm_quartiles": list(self.quartiles) if self.quartiles is not None else None,
                "mostly_first_token": self.mostly_first_token}


def summarize(positions: np.ndarray, depth_norm: np.ndarray, selected: int | None = None) -> DepthSummary:
    """The summary of the nodes at ``positions`` (response positions) with these ``depth_norm`` values."""
    positions = np.asarray(positions, dtype=np.int64)
    depth = np.asarray(depth_norm, dtype=float)
    if depth.size == 0:
        return DepthSummary(0, 0, None, selected)
    quartiles = tuple(float(q) for q in np.quantile(depth, QUARTILES))
    return DepthSummary(int(depth.size), int(np.sum(positions == 0)), quartiles, selected)


def depth_shares(depth_norm: np.ndarray, bins: int = 4) -> list[float]:
    """Share of the nodes in each of ``bins`` equal-width depth_norm bins ``[j/bins, (j+1)/bins)`` (empty input:
    NaN shares). ``depth_norm`` lies in [0, 1) (``position / length`` with position < length)."""
    depth = np.asarray(depth_norm, dtype=float)
    if depth.size == 0:
        return [float("nan")] * bins
    index = np.minimum((depth * bins).astype(np.int64), bins - 1)
    return [float(share) for share in np.bincount(index, minlength=bins) / depth.size]


def unique_nodes(nodes: pd.DataFrame) -> pd.DataFrame:
    """One row per node (the first teacher's), in the records' order."""
    key = [name for name in NODE_IDENTITY if name in nodes.columns]
    return nodes.drop_duplicates(subset=key)


def depth_summary(nodes: pd.DataFrame, informative_only: bool = True) -> DepthSummary:
    """The spread over depth of the informative nodes of a nodes table (``nodes.parquet`` as pandas; every node
    with ``informative_only=False``), each node once."""
    unique = unique_nodes(nodes)
    chosen = unique[unique["informative"].eq(True)] if informative_only else unique
    return summarize(chosen["position"].to_numpy(), chosen["depth_norm"].to_numpy(dtype=float, na_value=np.nan),
                     selected=len(unique))


def depth_summaries(nodes: pd.DataFrame, informative_only: bool = True) -> dict[tuple[str, str], DepthSummary]:
    """:func:`depth_summary` per (task, student), in order of first appearance (one leaderboard each)."""
    return {(str(task), str(student)): depth_summary(group, informative_only)
            for (task, student), group in nodes.groupby(["task", "student"], sort=False, dropna=False)}
