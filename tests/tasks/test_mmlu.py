"""Tests for the MMLU task adapter: fake local data, a faked hub, and the real data when present (no network)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import tasks.mmlu as mmlu_module
from harness.api.data import DataError
from harness.api.registry import RegistryError
from harness.api.task import TASKS, Question, Task, resolve_task
from tasks.mmlu import MMLU, SUBJECT_GROUPS, SUBJECTS

CHOICES = ["London", "Paris", "Rome", "Oslo"]


def row(subject: str, question: str, answer: int = 1) -> dict:
    return {"question": question, "subject": subject, "choices": CHOICES, "answer": answer}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def fake_data_dir(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "mmlu" / "test.jsonl", [
        row("anatomy", "Q anatomy 0", 0), row("anatomy", "Q anatomy 1", 2), row("virology", "Q virology 0", 3),
    ])
    write_jsonl(tmp_path / "mmlu" / "dev.jsonl", [row("anatomy", f"Dev anatomy {i}", i % 4) for i in range(5)]
                + [row("virology", f"Dev virology {i}") for i in range(5)])
    return tmp_path


def test_registered_and_protocol():
    task = resolve_task("mmlu")
    assert isinstance(task, MMLU) and isinstance(task, Task) and "mmlu" in TASKS
    assert task.name == "mmlu" and task.max_new_tokens == 128 and task.subjects is None and task.shots == 0


def test_subject_mapping_is_the_standard_one():
    assert len(SUBJECTS) == 57
    counts = {group: sum(g == group for g in SUBJECT_GROUPS.values()) for group in set(SUBJECT_GROUPS.values())}
    assert counts == {"STEM": 19, "humanities": 13, "social sciences": 12, "other": 13}
    assert SUBJECT_GROUPS["professional_law"] == "humanities" and SUBJECT_GROUPS["econometrics"] == "social sciences"


def test_subject_filter_spec(fake_data_dir):
    task = resolve_task("mmlu:virology")
    assert task.name == "mmlu:virology" and task.shots == 0
    assert [q.id for q in task.load(fake_data_dir)] == ["mmlu-virology-0"]
    both = resolve_task("mmlu: virology , anatomy")
    assert both.subjects == ("virology", "anatomy")
    assert [q.id for q in both.load(fake_data_dir)] == ["mmlu-anatomy-0", "mmlu-anatomy-1", "mmlu-virology-0"]


def test_unknown_subject_lists_valid_ones():
    with pytest.raises(RegistryError, match="anatomyy") as error:
        resolve_task("mmlu:anatomy,anatomyy")
    assert "abstract_algebra" in str(error.value) and "world_religions" in str(error.value)


def test_load_local_fake(fake_data_dir):
    questions = MMLU().load(fake_data_dir)
    assert [q.id for q in questions] == ["mmlu-anatomy-0", "mmlu-anatomy-1", "mmlu-virology-0"]
    assert [q.gold for q in questions] == ["A", "C", "D"]
    first = questions[0]
    assert first.meta["subject"] == "anatomy" and first.meta["group"] == "STEM" and first.meta["choices"] == CHOICES
    assert "about anatomy" in first.prompt and "A. London\nB. Paris\nC. Rome\nD. Oslo" in first.prompt
    assert "Answer: <letter>" in first.prompt
    assert first.demonstration == "The correct choice is London.\nAnswer: A"
    assert [q.id for q in MMLU().load(fake_data_dir, limit=2)] == ["mmlu-anatomy-0", "mmlu-anatomy-1"]
    assert MMLU().load(fake_data_dir, limit=0) == []


def test_shots_from_dev(fake_data_dir):
    question = mmlu_module.mmlu("anatomy", shots=2).load(fake_data_dir, 1)[0]
    assert question.prompt.count("\nAnswer: ") == 2  # the two worked examples; the asked question has none
    assert question.prompt.index("Dev anatomy 1") < question.prompt.index("Q anatomy 0")
    assert "Dev virology" not in question.prompt
    with pytest.raises(ValueError, match="shots"):
        mmlu_module.mmlu(shots=6)


def test_malformed_rows(tmp_path):
    write_jsonl(tmp_path / "mmlu" / "test.jsonl", [row("anatomy", "Q", answer=4)])
    with pytest.raises(DataError, match="line 1|row 1"):
        MMLU().load(tmp_path)
    write_jsonl(tmp_path / "mmlu" / "test.jsonl", [{**row("anatomy", "Q"), "choices": ["a", "b"]}])
    with pytest.raises(DataError, match="4 strings"):
        MMLU().load(tmp_path)
    with pytest.raises(DataError, match="mmlu/test.jsonl"):
        MMLU().load(tmp_path / "missing")


def test_hub_path_is_lazy_and_uses_cais(monkeypatch):
    calls = []

    def fake_hub(path, name, split):
        calls.append((path, name, split))
        yield row("abstract_algebra", "Hub Q0", 2)
        yield row("anatomy", "Hub Q1", 0)
        raise AssertionError("read past the limit")

    monkeypatch.setattr(mmlu_module, "load_hub", fake_hub)
    questions = MMLU().load(None, limit=2)
    assert calls == [("cais/mmlu", "all", "test")]
    assert [q.id for q in questions] == ["mmlu-abstract_algebra-0", "mmlu-anatomy-0"]
    assert questions[0].gold == "C" and questions[0].meta["source"] == "cais/mmlu"


GRADE_CASES = [
    ("Paris is the capital.\nAnswer: B", "B", True),
    ("Answer: (B).", "B", True),
    ("Answer: Paris", "B", True),
    ("Answer: A", "A", False),
    ("Answer: A or B", None, False),
    ("no idea", None, False),
]


@pytest.mark.parametrize("response, extracted, correct", GRADE_CASES)
def test_grade(response, extracted, correct):
    question = Question(id="q", prompt="p", gold="B", demonstration="", meta={"choices": CHOICES})
    grade = MMLU().grade(question, response)
    assert (grade.extracted, grade.correct) == (extracted, correct)


def test_answer_is_final():
    task = MMLU()
    assert task.answer_is_final("Answer: B\n") and task.answer_is_final("Answer: B.")
    assert not task.answer_is_final("Answer: B") and not task.answer_is_final("Reasoning: B is")


def test_real_data(shared_data):
    questions = MMLU().load(shared_data)
    assert len(questions) == 14042 and len({q.id for q in questions}) == 14042
    by_subject = {}
    for question in questions:
        by_subject[question.meta["subject"]] = by_subject.get(question.meta["subject"], 0) + 1
    assert set(by_subject) == set(SUBJECTS)
    assert by_subject["abstract_algebra"] == 100 and by_subject["professional_law"] == 1534
    assert all(MMLU().grade(q, q.demonstration).correct for q in questions[::97])
    five_shot = mmlu_module.mmlu("anatomy", shots=5).load(shared_data, 1)[0]
    assert five_shot.prompt.count("\nAnswer: ") == 5


def test_cot_variant_specs(fake_data_dir):
    cot = resolve_task("mmlu:cot")
    assert (cot.name, cot.subjects, cot.reasoning) == ("mmlu:cot", None, True)
    assert cot.max_new_tokens > MMLU().max_new_tokens
    some = resolve_task("mmlu:cot:anatomy")
    assert (some.name, some.subjects, some.reasoning) == ("mmlu:cot:anatomy", ("anatomy",), True)
    assert not resolve_task("mmlu:anatomy").reasoning
    with pytest.raises(RegistryError, match="mmlu:cot"):
        resolve_task("mmlu:cot:anatomyy")
    plain_q, cot_q = MMLU().load(fake_data_dir, 1)[0], some.load(fake_data_dir, 1)[0]
    assert cot_q.id == plain_q.id and cot_q.gold == plain_q.gold and cot_q.meta == plain_q.meta
    assert "Think step by step" in cot_q.prompt and "Reason briefly" in plain_q.prompt
    assert cot_q.prompt.replace(mmlu_module.COT_FORMAT, mmlu_module.FORMAT) == plain_q.prompt
    assert some.grade(cot_q, cot_q.demonstration).correct


COT_GRADE_CASES = [
    # a chain of thought walks through the options: only "answer" / \boxed count, read from the end
    ("Let's look at each option:\nA. London is in England.\nB. Paris is the capital of France.\nAnswer: B", "B"),
    ("Let's look at each option:\nA. London is in England.", None),
    ("The best option seems to be A at first. But Paris is the capital.\nAnswer: B.", "B"),
    ("The answer cannot be A, since London is in England.\nAnswer: B", "B"),
    ("Answer: A\nWait: London is not the capital of France.\nAnswer: B", "B"),
    ("Step 1...\nStep 2...\n\\boxed{B}", "B"),
    ("Answer: A or B", None),
]


@pytest.mark.parametrize("response, extracted", COT_GRADE_CASES)
def test_cot_grade(response, extracted):
    question = Question(id="q", prompt="p", gold="B", demonstration="", meta={"choices": CHOICES})
    grade = resolve_task("mmlu:cot").grade(question, response)
    assert (grade.extracted, grade.correct) == (extracted, extracted == "B")


def test_cot_answer_is_final():
    task = resolve_task("mmlu:cot")
    assert task.answer_is_final("Answer: B\n") and task.answer_is_final("Reasoning...\nAnswer: B.")
    assert not task.answer_is_final("Let's look at each option:\nA. London")  # stops a plain mmlu run
    assert MMLU().answer_is_final("Let's look at each option:\nA. London")
