"""Tests for the AIME tasks (aime, aime24, aime25): fake local data, faked hubs, real data when present."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import tasks.aime as aime_module
from harness.api.data import DataError
from harness.api.task import Question, Task, resolve_task
from tasks.aime import AIME, normalise_answer


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def fake_hub(rows, calls):
    def load(path, name, split):
        calls.append((path, name, split))
        return iter(rows)
    return load


@pytest.mark.parametrize("name", ["aime", "aime24", "aime25"])
def test_registered_and_protocol(name):
    task = resolve_task(name)
    assert isinstance(task, AIME) and isinstance(task, Task)
    assert task.name == name and task.max_new_tokens == 1024 and task.description
    assert not task.answer_is_final("\\boxed{204}\n")
    with pytest.raises(ValueError, match="no argument"):
        resolve_task(f"{name}:extra")


@pytest.mark.parametrize("raw, expected", [("070", "70"), (204, "204"), ("0", "0"), ("080 or 081 (both)", "80")])
def test_normalise_answer(raw, expected):
    assert normalise_answer(raw, "here") == expected


@pytest.mark.parametrize("raw", [None, "", "seven", True])
def test_normalise_answer_rejects(raw):
    with pytest.raises(DataError, match="here"):
        normalise_answer(raw, "here")


def test_load_local_fake(tmp_path):
    write_jsonl(tmp_path / "aime" / "aime_2024.jsonl", [
        {"id": "2024-I-1", "year": 2024, "problem": " Find x. ", "answer": "033", "solution": "Since x=33."},
        {"id": "2024-I-2", "year": 2024, "problem": "Find y.", "answer": "7"},
    ])
    questions = resolve_task("aime24").load(tmp_path)
    assert [q.id for q in questions] == ["aime-2024-I-1", "aime-2024-I-2"]
    first, second = questions
    assert first.gold == "33" and first.meta["year"] == 2024 and first.meta["answer_as_published"] == "033"
    assert first.prompt.endswith("Problem: Find x.") and "\\boxed{}" in first.prompt
    assert first.demonstration == "Since x=33.\n\nFinal answer: \\boxed{33}"
    assert second.demonstration == "\\boxed{7}" and "answer_as_published" not in second.meta
    assert resolve_task("aime24").load(tmp_path, limit=1) == [first]


def test_missing_and_malformed_local(tmp_path):
    with pytest.raises(DataError, match="aime_1983_2023.jsonl"):
        resolve_task("aime").load(tmp_path)
    bad = {"id": "1990-1", "year": 1990, "problem": "P", "answer": "x"}
    write_jsonl(tmp_path / "aime" / "aime_1983_2023.jsonl", [bad])
    with pytest.raises(DataError, match="line 1|row 1"):
        resolve_task("aime").load(tmp_path)


def test_aime_hub_filters_years_and_normalises(monkeypatch):
    calls = []
    rows = [
        {"ID": "1983-1", "Year": 1983, "Problem Number": 1, "Question": "P1", "Answer": "60", "Part": None},
        {"ID": "2024-I-1", "Year": 2024, "Problem Number": 1, "Question": "P2", "Answer": "204", "Part": "I"},
        {"ID": "2022-II-8", "Year": 2022, "Problem Number": 8, "Question": "P3", "Answer": "080 or 081", "Part": "II"},
    ]
    monkeypatch.setattr(aime_module, "load_hub", fake_hub(rows, calls))
    questions = resolve_task("aime").load(None)
    assert calls == [("gneubig/aime-1983-2024", None, "train")]
    assert [(q.id, q.gold, q.meta["year"]) for q in questions] == [
        ("aime-1983-1", "60", 1983), ("aime-2022-II-8", "80", 2022)]


def test_aime24_hub_ids_from_url(monkeypatch):
    rows = [{"id": 60, "problem": "P", "solution": "S", "answer": "204", "year": "2024",
             "url": "https://artofproblemsolving.com/wiki/index.php/2024_AIME_I_Problems/Problem_1"}]
    monkeypatch.setattr(aime_module, "load_hub", fake_hub(rows, calls := []))
    (question,) = resolve_task("aime24").load(None)
    assert calls == [("HuggingFaceH4/aime_2024", None, "train")]
    assert question.id == "aime-2024-I-1" and question.meta["year"] == 2024 and question.gold == "204"


def test_aime25_local_if_present_else_hub(monkeypatch, tmp_path):
    rows = [{"id": 0, "problem": "P0", "answer": "70"}, {"id": 1, "problem": "P1", "answer": "588"}]
    monkeypatch.setattr(aime_module, "load_hub", fake_hub(rows, calls := []))
    questions = resolve_task("aime25").load(tmp_path)  # no aime_2025.jsonl here: the hub
    assert calls == [("math-ai/aime25", None, "test")]
    assert [(q.id, q.gold, q.meta["year"]) for q in questions] == [
        ("aime-2025-0", "70", 2025), ("aime-2025-1", "588", 2025)]
    local = {"id": "2025-I-1", "year": 2025, "problem": "P", "answer": "70"}
    write_jsonl(tmp_path / "aime" / "aime_2025.jsonl", [local])
    assert [q.id for q in resolve_task("aime25").load(tmp_path)] == ["aime-2025-I-1"]
    assert len(calls) == 1


GRADE_CASES = [
    ("... so the answer is \\boxed{070}.", "070", True),
    ("\\boxed{69} no wait \\boxed{70}", "70", True),
    ("\\boxed{70} no wait \\boxed{69}", "69", False),
    ("Answer: 70", "70", True),
    ("I think 70", None, False),
]


@pytest.mark.parametrize("response, extracted, correct", GRADE_CASES)
def test_grade(response, extracted, correct):
    question = Question(id="q", prompt="p", gold="70", demonstration="", meta={"year": 2000})
    grade = resolve_task("aime").grade(question, response)
    assert (grade.extracted, grade.correct) == (extracted, correct)


def test_real_data(shared_data):
    old = resolve_task("aime").load(shared_data)
    assert len(old) == 919 and old[0].id == "aime-1983-1" and old[0].gold == "60"
    assert all(1983 <= q.meta["year"] <= 2023 and isinstance(q.meta["year"], int) for q in old)
    assert {q.id: q.gold for q in old}["aime-2022-II-8"] == "80"
    new = resolve_task("aime24").load(shared_data)
    assert len(new) == 30 and new[0].gold == "204" and {q.id: q.gold for q in new}["aime-2024-II-1"] == "73"
    for task_name, questions in (("aime", old), ("aime24", new)):
        task = resolve_task(task_name)
        assert all(task.grade(q, q.demonstration).correct for q in questions)
    assert new[0].demonstration.endswith("\n\nFinal answer: \\boxed{204}")
