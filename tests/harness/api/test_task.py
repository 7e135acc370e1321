"""The task contract (harness.api.task): a spec resolves to its factory's Task, a task without a training split
says so, and ``--include-path`` goes to the lm-eval family only, refused in one paragraph for any other task."""
from __future__ import annotations

import pytest

from harness.api.errors import ConfigError
from harness.api.task import LM_EVAL_FAMILY, TASKS, NoTrainSplit, Question, Task, resolve_task


def test_a_spec_resolves_to_the_registered_task_and_it_meets_the_contract():
    task = resolve_task("test-count-a")  # tests/fakes.py: one question, prompt "b"
    assert isinstance(task, Task) and task.name == "test-count-a"
    (question,) = task.load(None)
    assert question == Question(id="oracle-0", prompt="b", gold="", demonstration="a a", meta={})
    assert task.grade(question, "b a").correct and not task.grade(question, "b c").correct
    assert task.load(None, limit=0) == []


def test_a_task_without_a_training_split_returns_none():
    assert isinstance(resolve_task("test-count-a"), NoTrainSplit)
    assert resolve_task("test-count-a").load_train(None) is None
    assert NoTrainSplit().load_train(None, limit=5) is None


def test_questions_are_frozen_and_their_meta_defaults_to_empty():
    question = Question(id="1", prompt="p", gold="g", demonstration="d")
    assert question.meta == {}
    with pytest.raises(AttributeError):
        question.gold = "other"  # type: ignore[misc]


def test_include_paths_are_refused_for_a_task_outside_the_lm_eval_family(tmp_path):
    with pytest.raises(ConfigError) as error:
        resolve_task("test-count-a", include_paths=[str(tmp_path)])
    message = str(error.value)
    assert "--task lm_eval:<name> only (got --task test-count-a)" in message and "drop --include-path" in message
    # the family's name is the one registered (the bridge in tasks/lm_eval.py), so the check cannot drift from it
    assert LM_EVAL_FAMILY in TASKS
