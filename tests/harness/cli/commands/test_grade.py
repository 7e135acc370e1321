"""Tests for ``opd grade``: JSON on stdout from the task's own grader."""
from __future__ import annotations

import json

import pytest

from harness.cli.main import main


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
    # gold as datasets spell it (issue 11): SuperGLUE true/false in any case and 1/0, MMLU index, AIME leading zeros
    (["boolq", "--gold", "true", "--response", "Answer: yes"], {"extracted": "yes", "correct": True}),
    (["boolq", "--gold", "False", "--response", "Answer: yes"], {"extracted": "yes", "correct": False}),
    (["boolq", "--gold", "0", "--response", "Answer: no"], {"extracted": "no", "correct": True}),
    (["mmlu", "--gold", "2", "--response", "Answer: C"], {"extracted": "C", "correct": True}),
    (["mmlu", "--gold", "c", "--response", "Answer: B"], {"extracted": "B", "correct": False}),
    (["aime", "--gold", "070", "--response", "\\boxed{70}"], {"extracted": "70", "correct": True}),
])
def test_grade_prints_json(capsys, argv, expected):
    result = grade(capsys, *argv)
    assert result == {"task": argv[0], "gold": argv[2], **expected}


def test_unknown_task_and_subject(capsys):
    assert main(["grade", "nope", "--gold", "A", "--response", "x"]) == 2
    assert main(["grade", "mmlu:nope", "--gold", "A", "--response", "x"]) == 2
    assert "abstract_algebra" in capsys.readouterr().out


@pytest.mark.parametrize("argv, spellings", [
    (["boolq", "--gold", "maybe", "--response", "Answer: yes"], "yes/no or true/false in any case, 1/0"),
    (["mmlu", "--gold", "E", "--response", "Answer: C"], "a letter A-D in any case, or a 0-based index 0-3"),
    (["aime24", "--gold", "seventy", "--response", "70"], "an integer, with or without leading zeros"),
])
def test_an_unreadable_gold_is_one_clear_error(capsys, argv, spellings):
    assert main(["grade", *argv]) == 2
    printed = " ".join(capsys.readouterr().out.split())
    assert printed.startswith(f"error: The {argv[0]} task cannot read the gold answer {argv[2]!r}")
    assert spellings in printed and "Traceback" not in printed
