"""METHOD.md's defaults, written once: the diagnostic's knobs (:class:`Settings`) and the statistics' levels.

Every other default of these numbers reads them from here: the ``opd run`` flags (:mod:`harness.cli.main`), a suite's
settings (:mod:`harness.workflows.suite`), ``opd validate``'s jsd beta, the statistics (:mod:`harness.reports.stats`) and the
``--resamples``/``--permutations`` flags. The module imports nothing heavy (no torch, no scipy) so that the command
line can build its flags from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.api.task import Task

# METHOD, Targeted rollouts: G rollouts at temperature T; B nodes per depth window; the sampled token plus the top K;
# M forced continuations per candidate token; nodes ranked by student entropy
ROLLOUTS = 8
TEMPERATURE = 1.0
NODES_PER_WINDOW = 2
TOP_K = 4
CONTINUATIONS = 4
PRIORITY = "entropy"
JSD_BETA = 0.5  # METHOD, Distillation gradients: the generalized JSD's beta
DEFAULT_SELECTION = "windows"  # METHOD's top-B per depth window (harness.diagnostic.selection also offers "screened")
DEFAULT_DEPTH_WINDOWS = "exponential"  # METHOD's [0,1), [1,2), [2,4), ... (harness.diagnostic.selection also offers "even")

# METHOD, Statistics: tests at alpha 0.05 (95% intervals), power 80%; 2,000 bootstrap resamples, 10,000 sign flips
ALPHA = 0.05
POWER = 0.80
RESAMPLES = 2_000
PERMUTATIONS = 10_000


@dataclass(frozen=True)
class Settings:
    """METHOD's knobs (defaults are METHOD's defaults)."""

    rollouts: int = ROLLOUTS  # G
    temperature: float = TEMPERATURE  # T
    nodes_per_window: int = NODES_PER_WINDOW  # B
    top_k: int = TOP_K  # K
    continuations: int = CONTINUATIONS  # M
    priority: str = PRIORITY  # or "disagreement": max_t TV(p, q_t)
    jsd_beta: float = JSD_BETA
    max_new_tokens: int | None = None  # None: the task's default
    selection: str = DEFAULT_SELECTION  # "windows" (METHOD) or "screened" (harness.diagnostic.selection)
    depth_windows: str = DEFAULT_DEPTH_WINDOWS  # "exponential" (METHOD) or "even" (harness.diagnostic.selection)

    def new_tokens(self, task: Task) -> int:
        """The generation budget of a rollout or continuation: ``max_new_tokens``, else the task's default."""
        return self.max_new_tokens or task.max_new_tokens
