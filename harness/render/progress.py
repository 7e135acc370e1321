"""Rich progress bars for long work, one bar per kind of work (:class:`harness.api.progress.Progress`): by default
the run's questions, rollouts, teacher passes and branch continuations."""
from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

KINDS = ("questions", "rollouts", "teacher passes", "branch continuations")


class RichProgress:
    """Implements :class:`harness.api.progress.Progress` with one bar per kind of work, on stderr."""

    def __init__(self, kinds: Sequence[str] = KINDS, console: Console | None = None, transient: bool = False) -> None:
        width = max(22, *(len(kind) for kind in kinds))
        self._progress = Progress(
            TextColumn(f"{{task.description:<{width}}}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=console or Console(stderr=True), transient=transient,
        )
        self._tasks = {kind: self._progress.add_task(kind, total=0) for kind in kinds}
        self._started = False

    def __enter__(self) -> "RichProgress":
        return self  # the bars appear with the first work, so an early configuration error prints alone

    def __exit__(self, *exc) -> None:
        if self._started:
            self._progress.stop()

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._progress.start()

    def add_total(self, kind: str, amount: int) -> None:
        self._start()
        task_id = self._tasks[kind]
        total = self._progress.tasks[task_id].total or 0
        self._progress.update(task_id, total=total + amount)

    def advance(self, kind: str, amount: int = 1) -> None:
        self._start()
        self._progress.advance(self._tasks[kind], amount)
