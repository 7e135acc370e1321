"""The task contract: what a benchmark adapter in ``tasks/`` provides to the diagnostic.

A task file defines a frozen dataclass implementing :class:`Task` and registers a small factory returning it with
``@register_task("name")``. Questions are normalised to :class:`Question`, grades to :class:`Grade`. A task without
a training split inherits :class:`NoTrainSplit` (its ``load_train`` returns None).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

from harness.api.registry import Registry, resolve_spec


@dataclass(frozen=True)
class Question:
    """One benchmark item, normalised across tasks."""

    id: str
    prompt: str  # the user-turn text shown to the student (instructions included)
    gold: str  # canonical gold answer, e.g. "yes", "C", "204"
    demonstration: str  # a worked, correct response in the task's answer format (for demo teachers)
    meta: Mapping[str, Any] = field(default_factory=dict)  # subject, year, source row...


@dataclass(frozen=True)
class Grade:
    """The grader's verdict on one full response."""

    extracted: str | None  # the answer found in the response (None: none found)
    correct: bool


@runtime_checkable
class Task(Protocol):
    """A benchmark adapter. ``load`` reads questions, ``grade`` is the reward R(x, y) in {0, 1}."""

    name: str
    description: str
    max_new_tokens: int

    def load(self, data_dir: Path | None, limit: int | None = None) -> Sequence[Question]:
        """Questions in a fixed order; ``data_dir`` is a local dataset root (None: the public hub dataset)."""
        ...

    def load_train(self, data_dir: Path | None, limit: int | None = None) -> Sequence[Question] | None:
        """Questions of the task's *training* split in a fixed order, none of them one of ``load``'s (``opd validate``
        trains on them); None when the task has no training split (callers then use a disjoint index range of
        ``load``'s questions)."""
        ...

    def grade(self, question: Question, response: str) -> Grade:
        ...

    def answer_is_final(self, response: str) -> bool:
        """True once ``response`` already fixes the answer, so generation may stop early."""
        ...


class NoTrainSplit:
    """Base of a task without a training split: :meth:`Task.load_train` says so (None)."""

    def load_train(self, data_dir: Path | None, limit: int | None = None) -> None:
        return None


TASKS: Registry[Task] = Registry("task")


def register_task(name: str, description: str | None = None) -> Callable:
    """Decorator for a task factory: ``@register_task("boolq") def boolq(**options) -> BoolQ``."""
    return TASKS.register(name, description)


LM_EVAL_FAMILY = "lm_eval"  # the one family that takes extra task directories (``--include-path``)


def resolve_task(spec: str, include_paths: Sequence[str] = ()) -> Task:
    """``name`` or ``name:argument`` (e.g. ``mmlu:anatomy``) -> a Task instance.

    ``include_paths``: lm-eval task YAML directories (``--include-path``), handed to the ``lm_eval`` family's factory
    as an argument; for any other task they are refused, as they would change nothing."""
    if not include_paths:
        return resolve_spec(TASKS, spec)
    family, _, argument = spec.partition(":")
    if family != LM_EVAL_FAMILY or family not in TASKS:
        from harness.api.errors import ConfigError

        raise ConfigError(f"--include-path adds lm-eval task directories, so it applies to --task "
                          f"{LM_EVAL_FAMILY}:<name> only (got --task {spec}); drop --include-path or pick an "
                          f"{LM_EVAL_FAMILY}: task.")
    return TASKS.get(family)(argument, include_paths=tuple(include_paths))
