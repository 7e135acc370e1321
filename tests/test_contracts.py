"""Contract tests parametrised over every registered task and teacher (built-ins and test fakes alike)."""
from __future__ import annotations

import pytest

from harness.api.task import TASKS, Task, resolve_task
from harness.sampling.teacher import TEACHERS, ContextInputs, RolloutView, Teacher, resolve_teacher

# families need an argument to be instantiated; self:larger-demo takes an optional one (its default model is real)
FAMILY_ARGUMENTS = {"model": "tiny-random:1", "idp": "default", "self:larger-demo": "tiny-random:2"}
REAL_DATA_TASKS = {"boolq", "mmlu", "aime", "aime24", "aime25", "gsm8k"}


# families need an argument (their own tests cover them); tasks whose local file is optional need it present,
# since tests never reach the hub
FAMILY_TASKS = {"lm_eval"}
OPTIONAL_LOCAL_FILES = {"aime25": "aime/aime_2025.jsonl"}


@pytest.mark.parametrize("name", TASKS.names())
def test_task_contract(name, shared_data):
    if name in FAMILY_TASKS:
        pytest.skip(f"{name} is a task family; tested with a local task in its own test file")
    if name in OPTIONAL_LOCAL_FILES and not (shared_data / OPTIONAL_LOCAL_FILES[name]).exists():
        pytest.skip(f"{name} has no local data here ({OPTIONAL_LOCAL_FILES[name]}) and tests never use the hub")
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
