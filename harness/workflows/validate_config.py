"""The settings of ``opd validate``, apart from the protocol that runs them: the one place their defaults live.

Light on purpose (no torch, no TRL): the CLI reads its flags' defaults from these dataclasses at start-up, so
``opd --help`` stays fast and a default is written once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.api.errors import ConfigError
from harness.api.method import JSD_BETA
from harness.storage.records import REFERENCE_LOSS, VALIDATION_CONTROL

RESERVED = (VALIDATION_CONTROL, REFERENCE_LOSS)  # the reference conditions every validation runs


class ValidateError(ConfigError):
    """Invalid ``opd validate`` settings; the message says what to change."""


@dataclass(frozen=True)
class Training:
    """Hyper-parameters shared by every condition."""

    steps: int = 20
    lr: float = 1e-5
    batch: int = 2  # training questions per step
    rollouts: int = 4  # student samples per question per step (GRPO's group)
    loss: str = "rkl"
    jsd_beta: float = JSD_BETA
    max_new_tokens: int | None = None  # default: the task's
    checkpoint_every: int = 5


@dataclass(frozen=True)
class Ranges:
    """Index ranges in the task's question order; None starts a range right after the previous one. Training indexes
    the task's training split instead where it has one (None: from its start)."""

    eval_limit: int = 100
    train_limit: int = 100
    eval_start: int | None = None
    train_start: int | None = None


@dataclass(frozen=True)
class ValidateConfig:
    task: str
    student: str
    teachers: tuple[str, ...]
    training: Training = field(default_factory=Training)
    ranges: Ranges = field(default_factory=Ranges)
    seeds: tuple[int, ...] = (0,)
    samples: int = 4  # K answers per evaluation question at T=1 (besides the greedy answer)
    data_dir: str | None = None
    device: str | None = None
    diagnostic: str | None = None

    def problems(self) -> list[str]:
        t, r = self.training, self.ranges
        problems = []
        if not self.teachers:
            problems.append("no --teacher given: name the teachers whose ranking is to be validated")
        if len(set(self.teachers)) != len(self.teachers):
            problems.append("a teacher is listed twice")
        for name in RESERVED:
            if name in self.teachers:
                problems.append(f"{name!r} is a reference condition every validation runs, not a teacher spec")
        for flag, value, low in (("--steps", t.steps, 1), ("--batch", t.batch, 1), ("--rollouts", t.rollouts, 1),
                                 ("--eval-limit", r.eval_limit, 1), ("--train-limit", r.train_limit, 1),
                                 ("--samples", self.samples, 1), ("--checkpoint-every", t.checkpoint_every, 1)):
            if value < low:
                problems.append(f"{flag} must be at least {low} (got {value})")
        if not (t.lr > 0 and math.isfinite(t.lr)):
            problems.append(f"--lr must be a positive number (got {t.lr})")
        if t.batch > r.train_limit:
            problems.append(f"--batch {t.batch} is more than the {r.train_limit} training questions")
        if t.rollouts < 2:
            problems.append("--rollouts must be at least 2: the GRPO reference needs a group to form its baseline")
        for flag, value in (("--eval-start", r.eval_start), ("--train-start", r.train_start)):
            if value is not None and value < 0:
                problems.append(f"{flag} must be 0 or more (got {value})")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            problems.append("--seeds must list distinct seeds")
        return problems
