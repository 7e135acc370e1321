"""Tests for ``opd grade``: JSON on stdout from the task's own grader."""
from __future__ import annotations

import json

import pytest

from harness.cli import main


def grade(capsys, *argv: str) -> dict:
    assert main(["grade", *argv]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("argv, expected", [
    (["mmlu", "--gold", "C", "--response", "Reasoning.\nAnswer: C"], {"extracted": "C", "correct": True}),
    (["mmlu", "--gold", "C", "--response", "Answer: A or C"], {"extracted": None, "correct": False}),
    (["mmlu:anatomy", "--gold", "B", "--response", "Answer: Paris", "--choices", "London|Paris|Rome|Oslo"],
     {"extracted": "B", "correct": True}),
    (["aime24", "--gold", "70", "--response", "so \\boxed{070}"], {"extracted": "070", "correct": True}),
    (["aime", "--gold", "70", "--response", "Answer: 71"], {"extracted": "71", "correct": False}),
    (["boolq", "--gold", "yes", "--response", "Answer: yes"], {"extracted": "yes", "correct": True}),
])
def test_grade_prints_json(capsys, argv, expected):
    result = grade(capsys, *argv)
    assert result == {"task": argv[0], "gold": argv[2], **expected}


def test_unknown_task_and_subject(capsys):
    assert main(["grade", "nope", "--gold", "A", "--response", "x"]) == 2
    assert main(["grade", "mmlu:nope", "--gold", "A", "--response", "x"]) == 2
    assert "abstract_algebra" in capsys.readouterr().out
