"""The one shape in which long work reports its progress: units of work by kind (``"questions"``, ``"rollouts"``,
``"training steps"``, ``"answers"``...), announced with :meth:`Progress.add_total` and counted off with
:meth:`Progress.advance`. The diagnostic, the runner, the accuracy evaluation and the validation all take one;
:class:`harness.render.progress.RichProgress` draws one bar per kind, :class:`NoProgress` draws nothing."""
from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Where work reports how much there is of each kind and how much is done."""

    def add_total(self, kind: str, amount: int) -> None:
        """``amount`` more units of ``kind`` to do."""

    def advance(self, kind: str, amount: int = 1) -> None:
        """``amount`` units of ``kind`` done."""


class NoProgress:
    """Progress that shows nothing (``--quiet``, tests, library use)."""

    def add_total(self, kind: str, amount: int) -> None:
        pass

    def advance(self, kind: str, amount: int = 1) -> None:
        pass
