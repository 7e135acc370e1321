"""Gold answers as datasets spell them (issue 11, "Also"): one normaliser per answer format in harness.api.answers,
used by each task's grader; an unreadable gold is an error naming the task, the value and the accepted spellings."""
from __future__ import annotations

import pytest

from harness.api.answers import GoldAnswerError, choice_gold, integer_gold, yes_no_gold
from harness.api.data import DataError
from harness.api.task import Question, resolve_task

YES_NO = [
    ("yes", "yes"), ("no", "no"), ("Yes", "yes"), ("NO", "no"),
    ("true", "yes"), ("True", "yes"), ("TRUE", "yes"), ("false", "no"), ("False", "no"), ("FALSE", "no"),
    ("1", "yes"), ("0", "no"), (" true \n", "yes"),
    (True, "yes"), (False, "no"), (1, "yes"), (0, "no"),  # BoolQ's bool, SuperGLUE's 0/1 label
]
CHOICE = [
    ("C", "C"), ("c", "C"), (" B ", "B"), ("(D)", "D"), ("A.", "A"), ("b)", "B"), ("[C]", "C"),
    ("0", "A"), ("3", "D"), (2, "C"), (0, "A"),  # MMLU stores the 0-based index
]
INTEGER = [
    ("70", "70"), ("070", "70"), ("0", "0"), ("000", "0"), ("204", "204"), (" 33 ", "33"), ("$70$", "70"),
    (70, "70"), (5, "5"),
]
UNREADABLE = [
    (yes_no_gold, "maybe"), (yes_no_gold, "2"), (yes_no_gold, ""), (yes_no_gold, None), (yes_no_gold, 2),
    (yes_no_gold, "y e s"), (yes_no_gold, 1.0),
    (choice_gold, "E"), (choice_gold, "4"), (choice_gold, 4), (choice_gold, -1), (choice_gold, "AB"),
    (choice_gold, "Paris"), (choice_gold, ""), (choice_gold, None), (choice_gold, True),
    (integer_gold, "1/2"), (integer_gold, "seventy"), (integer_gold, ""), (integer_gold, None), (integer_gold, True),
    (integer_gold, "7.5"),
]


@pytest.mark.parametrize("gold, canonical", YES_NO)
def test_yes_no_gold(gold, canonical):
    assert yes_no_gold(gold, "boolq") == canonical


@pytest.mark.parametrize("gold, canonical", CHOICE)
def test_choice_gold(gold, canonical):
    assert choice_gold(gold, "mmlu") == canonical


def test_choice_gold_follows_the_letter_set():
    assert choice_gold("e", "t", letters="ABCDE") == "E" and choice_gold(4, "t", letters="ABCDE") == "E"
    with pytest.raises(GoldAnswerError, match="a letter A-B in any case, or a 0-based index 0-1"):
        choice_gold("C", "t", letters="AB")


@pytest.mark.parametrize("gold, canonical", INTEGER)
def test_integer_gold(gold, canonical):
    assert integer_gold(gold, "aime") == canonical


@pytest.mark.parametrize("normalise, gold", UNREADABLE)
def test_an_unreadable_gold_names_task_value_and_spellings(normalise, gold):
    with pytest.raises(GoldAnswerError) as info:
        normalise(gold, "the-task")
    message = str(info.value)
    assert f"The the-task task cannot read the gold answer {gold!r}: accepted spellings are " in message
    assert isinstance(info.value, DataError)  # the CLI's known-error path: one paragraph, exit status 2


# (task, response, gold spellings that all mean the same answer, a gold spelling of another answer)
GRADED = [
    ("boolq", "Reasoning: stated.\nAnswer: yes", ["yes", "true", "TRUE", "True", "1"], ["no", "false", "0"]),
    ("boolq", "Answer: no", ["no", "false", "False", "0"], ["yes", "true", "1"]),
    ("mmlu", "Answer: C", ["C", "c", "2", "(C)"], ["B", "b", "1", "3"]),
    ("aime", "so \\boxed{70}", ["70", "070", "0070"], ["7", "700"]),
    ("aime24", "Answer: 033", ["33", "033"], ["330"]),
]


@pytest.mark.parametrize("task_spec, response, same, other", GRADED)
def test_graders_accept_the_gold_as_datasets_spell_it(task_spec, response, same, other):
    task = resolve_task(task_spec)

    def correct(gold):
        return task.grade(Question(id="q", prompt="", gold=gold, demonstration="",
                                   meta={"choices": ["w", "x", "y", "z"]}), response).correct

    assert [correct(gold) for gold in same] == [True] * len(same)
    assert [correct(gold) for gold in other] == [False] * len(other)


@pytest.mark.parametrize("task_spec, gold", [("boolq", "maybe"), ("mmlu", "E"), ("aime", "x"), ("aime25", "1/2")])
def test_a_grader_refuses_an_unreadable_gold_instead_of_grading_wrong(task_spec, gold):
    task = resolve_task(task_spec)
    question = Question(id="q", prompt="", gold=gold, demonstration="", meta={})
    with pytest.raises(GoldAnswerError, match=f"The {task.name} task cannot read the gold answer {gold!r}"):
        task.grade(question, "Answer: yes")
