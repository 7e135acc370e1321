"""Table-driven tests for the number section of harness.api.answers (GSM8K) and the chain-of-thought (``reasoning``)
modes of the yes/no and letter extractors, with hand-made responses and never-crash / agree-with-final properties.

The rule being tested (documented in :func:`harness.api.answers.extract_number_answer`): explicit answers (``#### N``,
``\\boxed{N}``, a number directly after "answer:" / "the answer is") beat bare numbers, the last explicit one wins,
and only a response without any explicit answer is read by its last number.
"""
from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.api.answers import (
    GoldAnswerError,
    choice_answer_is_final,
    extract_choice_letter,
    extract_number_answer,
    extract_yes_no,
    number_answer_is_final,
    number_answers_equal,
    number_gold,
    yes_no_answer_is_final,
)

EXTRACT_CASES = [
    # GSM8K's own final line
    ("16 - 3 - 4 = 9 eggs, 9 * 2 = 18\n#### 18", "18"),
    ("####18", "18"),
    ("#### 1,000", "1000"),
    ("#### $18.00", "18"),
    ("#### -5", "-5"),
    # \boxed{}
    ("So she makes \\boxed{18} dollars.", "18"),
    ("The final answer is $\\boxed{18}$.", "18"),
    ("\\boxed{\\$18}", "18"),
    ("\\boxed{18 \\text{ dollars}}", "18"),
    ("\\boxed{\\text{18 eggs}}", "18"),
    ("\\boxed{1{,}000}", "1000"),
    ("\\boxed{1,000}", "1000"),
    ("\\boxed{18.00}", "18"),
    ("\\boxed{-3}", "-3"),
    ("\\boxed{25\\%}", "25"),
    ("\\boxed{\\frac{36}{2}}", "\\frac{36}{2}"),  # not a plain number: left to math-verify
    ("\\fbox{7}", "7"),
    # a number directly after an answer cue
    ("Answer: 18", "18"),
    ("The answer is $18.", "18"),
    ("**Final answer:** 1,234.50", "1234.5"),
    ("The answer is: 18 eggs.", "18"),
    ("answer = -7", "-7"),
    ("The answer is \\(42\\).", "42"),
    # no explicit answer: the last number, with $, separators, units and a trailing period ignored
    ("Janet sells 16 - 3 - 4 = 9 eggs and makes 9 * 2 = $18 every day.", "18"),
    ("She earns $1,250 a week.", "1250"),
    ("It costs 18.00 dollars.", "18"),
    ("The temperature drops to -4 degrees.", "-4"),
    ("It is 3/4 full.", "0.75"),
    ("In total 16-3 = 13", "13"),  # "16-3" is a subtraction, "-3" is not a number here
    ("so 20 - 5 = 15 apples", "15"),
    # a later corrected answer counts: the last explicit one
    ("The answer is 20.\nWait, I forgot the 2 eaten. The answer is 18.", "18"),
    ("\\boxed{20}\nCorrection: the total is \\boxed{18}.", "18"),
    ("#### 20\nOops, recount.\n#### 18", "18"),
    ("The answer is 20, no: \\boxed{18}", "18"),
    # adversarial: numbers after the final answer never replace it
    ("#### 18\nCheck: 16 - 3 - 4 = 9 and 9 * 2 = 18; 3 eggs for breakfast.", "18"),
    ("The final answer is \\boxed{18}.\n\nNote: this took 3 steps and 2 multiplications.", "18"),
    ("Answer: 18\n(1 dozen = 12)", "18"),
    # adversarial: what is not an answer
    ("#### Step 1: compute 16 - 3 = 13\n#### Step 2: 13 * 2 = 26", "26"),  # markdown headings, not answers
    ("I'll put the final answer in \\boxed{}. 16 - 3 = 13", "13"),
    ("To answer 2 parts: first 16 - 3 = 13, then 13 * 2 = 26", "26"),  # "answer" without "is" or ":" is no cue  # an empty box is an echo of the instruction
    ("The answer is that she earns $18 per day, 2 more than yesterday.", "2"),  # prose after the cue: last number
    # the endings Qwen2.5-Coder-0.5B-Instruct wrote on GSM8K (generation stopped inside "\)" once the box closed)
    ("Therefore, the amount Janet makes every day at the farmers' market is \\(\\boxed{22}\\", "22"),
    ("```python\nprint(total_cost)\n```\n```output\n96.0\n```\nThe total cost for Kylar to buy 16 glasses is "
     "\\(\\boxed{96}\\", "96"),
    ("\\[ 130,000 - 80,000 = 50,000 \\]\n\nThus, the profit Josh made is \\(\\boxed{50000}\\", "50000"),
    # nothing numeric
    ("", None),
    ("I cannot solve this.", None),
    ("\\boxed{}", None),
]


@pytest.mark.parametrize("text, expected", EXTRACT_CASES)
def test_extract_number_answer(text, expected):
    assert extract_number_answer(text) == expected


GOLD_CASES = [("18", "18"), ("18.00", "18"), ("1,000", "1000"), ("$5", "5"), ("-3", "-3"), (" 72 ", "72"),
              ("72.", "72"), (18, "18"), (-3, "-3"), (2.5, "2.5"), ("0.50", "0.5"), ("1,234,567", "1234567")]


@pytest.mark.parametrize("gold, canonical", GOLD_CASES)
def test_number_gold_spellings(gold, canonical):
    assert number_gold(gold, "gsm8k") == canonical


@pytest.mark.parametrize("gold", ["", "  ", "eighteen", "18 or 19", "1,2", "#### 18", None, True, [18]])
def test_number_gold_unreadable_is_one_clear_error(gold):
    with pytest.raises(GoldAnswerError) as error:
        number_gold(gold, "gsm8k")
    message = str(error.value)
    assert message.startswith(f"The gsm8k task cannot read the gold answer {gold!r}")
    assert "a number" in message and "1,000" in message and "\n" not in message


EQUAL_CASES = [
    ("18", "18", True), ("18", "18.00", True), ("18.0", "18", True), ("-3", "-3", True), ("3", "-3", False),
    ("0.5", "1/2", True), ("2.5", "2.50", True), ("17", "18", False), (None, "18", False), ("", "18", False),
    ("\\frac{36}{2}", "18", True), ("2 \\times 9", "18", True), ("\\frac{35}{2}", "18", False), ("x", "18", False),
]


@pytest.mark.parametrize("pred, gold, expected", EQUAL_CASES)
def test_number_answers_equal(pred, gold, expected):
    assert number_answers_equal(pred, gold) is expected


FINAL_CASES = [
    ("\\boxed{18}", True),
    ("the profit Josh made is \\(\\boxed{50000}\\", True),
    ("The final answer is $\\boxed{18", False),  # not closed yet: 18 may become 180
    ("#### 18\n", True),
    ("#### 18 dollars", True),
    ("#### 18. ", True),
    ("#### 18", False),  # may still grow
    ("#### 18.", False),  # may become 18.5
    ("#### 1,", False),  # may become 1,000
    ("\\boxed{}", False),  # the instruction echoed
    ("#### Step 1", False),
    ("Answer: 18\n", False),  # only the box and #### stop generation; a cue answer waits for EOS
    ("\\boxed{\\frac{1}{2}}", False),  # nested braces never stop early (safe)
    ("", False),
]


@pytest.mark.parametrize("text, expected", FINAL_CASES)
def test_number_answer_is_final(text, expected):
    assert number_answer_is_final(text) is expected


NUMBERISH = st.sampled_from(["#### ", "####", "\\boxed{", "}", "{", "Answer: ", "answer is ", "$", "\\$", "-", "18",
                             "1,000", "2.5", ".", ",", "/", "3", "\n", " ", "eggs", "\\text{", "{,}", "%", "0"])
TEXTS = st.one_of(st.text(max_size=120), st.lists(NUMBERISH, max_size=20).map("".join))


def _value(answer: str) -> Fraction | None:
    try:
        return Fraction(answer)
    except (ValueError, ZeroDivisionError):
        return None


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_number_grader_never_crashes_and_stops_only_where_it_has_the_answer(text):
    answer = extract_number_answer(text)
    assert answer is None or isinstance(answer, str)
    assert isinstance(number_answers_equal(answer, "18"), bool)
    if number_answer_is_final(text) and not number_answer_is_final(text[:-1]):
        # generation stops at the first final prefix; the answer read there must not change when more is appended
        # that holds no further answer (the tail is checked against the same prefix plus a neutral sentence)
        assert answer is not None
        assert extract_number_answer(text + " Done.") == answer


# ---------------------------------------------------------------------------------------------- chain of thought

YES_NO_COT_CASES = [
    # an opening word is not the answer of a chain of thought
    ("Yes, the passage mentions ethanol, but it says it needs more energy.\nAnswer: no", "no", "no"),
    ("No doubt the passage is about fuel. It says ethanol takes less energy.", "no", None),
    ("Yes, well, let me think. The passage does not say so.", "yes", None),
    # the end decides in both modes
    ("The passage says so.\nAnswer: yes", "yes", "yes"),
    ("Step 1: the passage says X.\nStep 2: so the answer is no.", "no", "no"),
    ("Answer: yes\nOn second thought, the passage contradicts it.\nAnswer: no", "no", "no"),
    ("It says so.\n**Yes.**", "yes", "yes"),
]


@pytest.mark.parametrize("text, plain, cot", YES_NO_COT_CASES)
def test_extract_yes_no_reasoning(text, plain, cot):
    assert extract_yes_no(text) == plain
    assert extract_yes_no(text, reasoning=True) == cot


CHOICES = ["Paris", "London", "Rome", "Berlin"]
LETTER_COT_CASES = [
    # walking through the options is reasoning, not an answer, in a chain of thought
    ("Let's look at each option:\nA. Paris is in France.", "A", None),
    ("Consider the choice: B. It is wrong.\nAnswer: C", "C", "C"),
    ("The best option is B, but check.\nAnswer: D", "D", "D"),
    ("The best option is B.", "B", None),
    # prose that rejects an option is reasoning; a final answer line that refuses is a refusal
    ("The answer cannot be B since London is in England.\nAnswer: A", "A", "A"),
    ("Answer: A.\nThe answer is not B or C.", "A", "A"),
    ("First I thought the answer is A or B.\nAnswer: D", "D", "D"),
    ("Answer: A or B", None, None),
    ("Answer: I cannot tell.", None, None),
    # the end decides; a corrected answer counts
    ("Reasoning step by step...\nAnswer: B\nWait, Rome is the capital of Italy.\nAnswer: C.", "C", "C"),
    ("Step 1: ...\nStep 2: ...\n\\boxed{D}", "D", "D"),
    ("Thinking it over.\n(C)", "C", "C"),
]


@pytest.mark.parametrize("text, plain, cot", LETTER_COT_CASES)
def test_extract_choice_letter_reasoning(text, plain, cot):
    assert extract_choice_letter(text, CHOICES) == plain
    assert extract_choice_letter(text, CHOICES, reasoning=True) == cot


@pytest.mark.parametrize("text, plain, cot", [
    ("Let's look at each option:\nA. Paris", True, False),  # "option:" + "A." stops a plain run, not a CoT one
    ("Answer: C.", True, True),
    ("The best option is B.", True, False),
    ("Answer: C", False, False),
])
def test_choice_answer_is_final_reasoning(text, plain, cot):
    assert choice_answer_is_final(text) is plain
    assert choice_answer_is_final(text, reasoning=True) is cot


LETTERISH = st.sampled_from(["Answer: ", "answer is ", "option: ", "choice ", "\\boxed{", "}", "A", "B", "c", "D",
                             ".", "\n", " or ", "cannot", "not ", "Paris", "Yes", "no", "**", " ", "(", ")"])
COT_TEXTS = st.one_of(st.text(max_size=150), st.lists(LETTERISH, max_size=25).map("".join))


@settings(max_examples=300, deadline=None)
@given(COT_TEXTS)
def test_reasoning_graders_agree_with_final(text):
    letter = extract_choice_letter(text, CHOICES, reasoning=True)
    assert letter is None or letter in "ABCD"
    if choice_answer_is_final(text, reasoning=True) and not choice_answer_is_final(text[:-1], reasoning=True):
        assert letter is not None
    verdict = extract_yes_no(text, reasoning=True)
    assert verdict in (None, "yes", "no")
    if yes_no_answer_is_final(text) and not yes_no_answer_is_final(text[:-1]):
        assert verdict is not None
