"""Tests for the BoolQ task adapter; real data is used when present, and nothing touches the network."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import tasks.boolq as boolq_module
from harness.api.data import DataError
from harness.api.task import TASKS, Question, Task, resolve_task
from tasks.boolq import BoolQ


def real_data_dir() -> Path | None:
    for candidate in (os.environ.get("OPD_DATA_DIR"), Path(__file__).parents[3] / "shared" / "data"):
        if candidate and (Path(candidate) / "boolq" / "validation.jsonl").is_file():
            return Path(candidate)
    return None


@pytest.fixture
def fake_data_dir(tmp_path: Path) -> Path:
    rows = [
        {"idx": 7, "question": "is the sky blue", "passage": "Sky -- The sky is blue.", "answer": True},
        {"idx": 8, "question": "is grass red?", "passage": "Grass -- Grass is green.", "answer": False},
        {"idx": 9, "question": "can fish fly", "passage": "Fish -- Some fish glide.", "answer": False},
    ]
    (tmp_path / "boolq").mkdir()
    (tmp_path / "boolq" / "validation.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8"
    )
    return tmp_path


def test_registered_and_protocol() -> None:
    assert "boolq" in TASKS
    task = resolve_task("boolq")
    assert isinstance(task, BoolQ) and isinstance(task, Task)
    assert task.name == "boolq" and task.max_new_tokens == 64 and task.description
    with pytest.raises(ValueError, match="one optional argument, .cot."):
        resolve_task("boolq:extra")


def test_load_local_fake(fake_data_dir: Path) -> None:
    questions = BoolQ().load(fake_data_dir)
    assert [q.id for q in questions] == ["boolq-7", "boolq-8", "boolq-9"]
    assert [q.gold for q in questions] == ["yes", "no", "no"]
    assert "Question: Is the sky blue?" in questions[0].prompt
    assert "Question: Is grass red?" in questions[1].prompt  # no doubled '?'
    assert "Sky -- The sky is blue." in questions[0].prompt
    assert [q.id for q in BoolQ().load(fake_data_dir, limit=2)] == ["boolq-7", "boolq-8"]
    assert BoolQ().load(fake_data_dir, limit=0) == []


def test_load_missing_file_explains(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="boolq/validation.jsonl"):
        BoolQ().load(tmp_path)


def test_load_rejects_string_answer(tmp_path: Path) -> None:
    (tmp_path / "boolq").mkdir()
    (tmp_path / "boolq" / "validation.jsonl").write_text(
        '{"idx": 0, "question": "q", "passage": "p", "answer": "false"}\n', encoding="utf-8"
    )
    with pytest.raises(DataError, match="line 1"):
        BoolQ().load(tmp_path)


def test_load_hub_path_is_used_without_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_hub(path, name, split):
        calls.append((path, name, split))
        return [{"question": "is it", "passage": "It is.", "answer": True}] * 3

    monkeypatch.setattr(boolq_module, "load_hub", fake_hub)
    questions = BoolQ().load(None, limit=2)
    assert calls == [("google/boolq", None, "validation")]
    assert [q.id for q in questions] == ["boolq-0", "boolq-1"] and questions[0].gold == "yes"


@pytest.mark.skipif(real_data_dir() is None, reason="shared/data (or OPD_DATA_DIR) with boolq/ not available")
def test_load_real_data() -> None:
    questions = BoolQ().load(real_data_dir(), limit=3)
    assert len(questions) == 3
    first = questions[0]
    assert first.id == "boolq-0"
    assert first.gold in {"yes", "no"}
    assert "Does ethanol take more energy make that produces?" in first.prompt
    assert "Answer: <yes or no>" in first.prompt and "Reasoning:" in first.prompt
    assert len({q.id for q in questions}) == 3


def _question(gold: str) -> Question:
    return BoolQ()._question(0, "is it", "It is.", gold == "yes", source="test")


@pytest.mark.parametrize("gold", ["yes", "no"])
def test_grade_demonstration_correct_and_flip_wrong(gold: str) -> None:
    task = BoolQ()
    question = _question(gold)
    grade = task.grade(question, question.demonstration)
    assert grade.correct and grade.extracted == gold
    flipped = "no" if gold == "yes" else "yes"
    grade = task.grade(question, question.demonstration.replace(f"Answer: {gold}", f"Answer: {flipped}"))
    assert not grade.correct and grade.extracted == flipped
    grade = task.grade(question, "I cannot tell from the passage.")
    assert not grade.correct and grade.extracted is None


def test_demonstration_is_final_only_after_a_boundary() -> None:
    task = BoolQ()
    demo = _question("no").demonstration
    assert not task.answer_is_final(demo)  # ends right after "no": could still become "none"
    assert task.answer_is_final(demo + "\n")
    assert task.answer_is_final(demo + ".")
    assert not task.answer_is_final("The passage supports this.")


def test_cot_variant_spec_prompt_and_budget(fake_data_dir: Path) -> None:
    plain, cot = resolve_task("boolq"), resolve_task("boolq:cot")
    assert cot.name == "boolq:cot" and cot.reasoning and not plain.reasoning
    assert cot.max_new_tokens > plain.max_new_tokens and cot.description != plain.description
    plain_q, cot_q = plain.load(fake_data_dir, 1)[0], cot.load(fake_data_dir, 1)[0]
    assert cot_q.id == plain_q.id and cot_q.gold == plain_q.gold  # the same question, paired across variants
    assert "Think step by step" in cot_q.prompt and 'end with a final line of the form "Answer: yes"' in cot_q.prompt
    assert "Reasoning: <one sentence>" not in cot_q.prompt and "Reasoning: <one sentence>" in plain_q.prompt
    assert cot_q.prompt.split("Question:")[0] == plain_q.prompt.split("Question:")[0]
    with pytest.raises(ValueError, match="'cot'"):
        resolve_task("boolq:nope")


@pytest.mark.parametrize("response, plain, cot", [
    ("Yes, the passage mentions the sky. But it is grey there.\nAnswer: no", "no", "no"),
    ("Yes, the passage mentions the sky, but not its colour.", "yes", None),  # an opening word is no answer in CoT
    ("Step 1: the passage says the sky is blue.\nStep 2: so yes.\nAnswer: yes", "yes", "yes"),
    ("Answer: no\nWait, the passage says it is blue.\nAnswer: yes", "yes", "yes"),
])
def test_cot_grader_reads_the_end(response: str, plain: str, cot: str | None) -> None:
    question = _question("yes")
    for spec, expected in (("boolq", plain), ("boolq:cot", cot)):
        grade = resolve_task(spec).grade(question, response)
        assert (grade.extracted, grade.correct) == (expected, expected == "yes")
    assert resolve_task("boolq:cot").grade(question, question.demonstration).correct
