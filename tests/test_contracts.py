"""Contract tests parametrised over every registered task and teacher (built-ins and test fakes alike)."""
from __future__ import annotations

import pytest

from harness.task import TASKS, Task, resolve_task
from harness.teacher import TEACHERS, ContextInputs, RolloutView, Teacher, resolve_teacher

FAMILY_ARGUMENTS = {"model": "tiny-random:1"}  # families need an argument to be instantiated
REAL_DATA_TASKS = {"boolq"}


@pytest.mark.parametrize("name", TASKS.names())
def test_task_contract(name, shared_data):
    task = resolve_task(name)
    assert isinstance(task, Task) and task.name == name and task.description and task.max_new_tokens > 0
    questions = task.load(shared_data if name in REAL_DATA_TASKS else None, 3)
    assert 1 <= len(questions) <= 3
    for question in questions:
        assert question.id and question.prompt
        if question.demonstration:
            assert task.grade(question, question.demonstration).correct, "the gold demonstration must grade correct"
    assert len({q.id for q in questions}) == len(questions)


@pytest.mark.parametrize("name", TEACHERS.names())
def test_teacher_contract(name):
    spec = f"{name}:{FAMILY_ARGUMENTS[name]}" if name in FAMILY_ARGUMENTS else name
    teacher = resolve_teacher(spec)
    assert isinstance(teacher, Teacher) and teacher.name == spec and teacher.description
    task = resolve_task("test-parity")
    question = task.load(None, 1)[0]
    rollouts = [RolloutView(0, "scored response", False), RolloutView(1, "other response", True)]
    if teacher.context is not None:
        text = teacher.context(ContextInputs(task, question, 0, rollouts))
        assert text is None or (question.prompt in text and "scored response" not in text)
    with pytest.raises(AttributeError):  # teachers are frozen dataclasses
        teacher.name = "changed"  # type: ignore[misc]
