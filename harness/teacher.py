"""The teacher contract: a model plus a context builder producing the teacher's prompt.

The teacher's next-token distribution ``q_t(. | x, y_<i)`` comes from one forward pass over
``context prompt + student response`` (teacher forcing). A teacher file in ``teachers/`` registers a small
factory returning a frozen :class:`Teacher` with ``@register_teacher("name")``; a *family* registers the part
before ``:`` and receives the rest as its argument (``model:<spec>``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Protocol

from harness.registry import Registry, resolve_spec
from harness.task import Question, Task


@dataclass(frozen=True)
class RolloutView:
    """What a context builder may see of one student rollout on the question."""

    rollout_id: int
    response: str
    correct: bool


@dataclass(frozen=True)
class ContextInputs:
    """Everything a context builder may use for one (question, scored rollout)."""

    task: Task
    question: Question
    rollout_id: int  # the rollout being scored: a builder must never show it to the teacher
    rollouts: Sequence[RolloutView]


class ContextBuilder(Protocol):
    def __call__(self, inputs: ContextInputs) -> str | None:
        """The teacher's user-turn text, or None where the context cannot be built for this question."""
        ...


@dataclass(frozen=True)
class Teacher:
    """A resolved teacher. ``model=None`` means the student model itself; ``context=None`` the student's prompt."""

    name: str  # the spec as given on the command line
    description: str
    model: str | None = None
    context: ContextBuilder | None = None
    needs: tuple[str, ...] = ()  # e.g. ("gold",), ("rollouts",), ("second model",)

    @property
    def is_student_itself(self) -> bool:
        """Same model and same prompt as the student: q == p exactly, no forward pass needed."""
        return self.model is None and self.context is None


TEACHERS: Registry[Teacher] = Registry("teacher")


def register_teacher(name: str, description: str | None = None) -> Callable:
    return TEACHERS.register(name, description)


def resolve_teacher(spec: str) -> Teacher:
    """``self``, ``self:correct-demo`` (exact names) or a family with an argument (``model:<spec>``)."""
    return resolve_spec(TEACHERS, spec)


def question_with_context(question: Question, preamble: str) -> str:
    """Shared layout for context teachers: the privileged material first, then the unchanged question."""
    return f"{preamble.strip()}\n\n{question.prompt}"
