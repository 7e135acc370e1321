"""opd validate's settings (harness.workflows.validate_config): every problem of a configuration listed at once, in
the words the CLI prints; the defaults pass."""
from __future__ import annotations

import math

from harness.workflows.validate_config import Ranges, Training, ValidateConfig


def config(**changes) -> ValidateConfig:
    return ValidateConfig(**{"task": "boolq", "student": "s", "teachers": ("self:correct-demo",), **changes})


def test_the_defaults_have_no_problem():
    assert config().problems() == []


def test_every_problem_is_listed():
    bad = config(teachers=("a", "a", "grpo"), training=Training(steps=0, lr=math.nan, batch=5, rollouts=1),
                 ranges=Ranges(eval_limit=0, train_limit=4, eval_start=-1), seeds=(1, 1), samples=0)
    problems = bad.problems()
    assert problems[:2] == ["a teacher is listed twice",
                            "'grpo' is a reference condition every validation runs, not a teacher spec"]
    assert set(problems[2:]) == {
        "--steps must be at least 1 (got 0)", "--eval-limit must be at least 1 (got 0)", "--samples must be at least 1 (got 0)",
        "--lr must be a positive number (got nan)", "--batch 5 is more than the 4 training questions",
        "--rollouts must be at least 2: the GRPO reference needs a group to form its baseline",
        "--eval-start must be 0 or more (got -1)", "--seeds must list distinct seeds"}


def test_no_teacher_is_a_problem():
    assert config(teachers=()).problems() == [
        "no --teacher given: name the teachers whose ranking is to be validated"]
