"""Table-driven tests for the shared answer extraction (harness.api.answers)."""
from __future__ import annotations

import pytest

from harness.api.answers import extract_yes_no, yes_no_answer_is_final

EXTRACT_CASES = [
    # explicit cues
    ("The passage says so.\nAnswer: yes", "yes"),
    ("The passage says otherwise.\nAnswer: no", "no"),
    ("Reasoning.\nAnswer: No.", "no"),
    ("answer: yes", "yes"),
    ("ANSWER: NO", "no"),
    ("**Answer:** Yes", "yes"),
    ("**Answer**: no", "no"),
    ("**Answer: Yes**", "yes"),
    ("Answer: `no`", "no"),
    ("Answer:\nyes", "yes"),
    ("Final answer: no", "no"),
    ("Final Answer: True", "yes"),
    ("Answer: false", "no"),
    ("So the answer is yes.", "yes"),
    ("Therefore, the answer is true.", "yes"),
    ("The answer is: no", "no"),
    ("The answer is **no**.", "no"),
    ("$\\boxed{yes}$", "yes"),
    ("\\boxed{\\text{No}}", "no"),
    # the last explicit answer wins
    ("Answer: yes\nWait, re-reading the passage.\nAnswer: no", "no"),
    ("Answer: no. Hmm, actually the answer is yes.", "yes"),
    ("No, wait. Answer: yes", "yes"),
    # words that merely start with yes/no/true/false do not count
    ("Answer: yesterday's news", None),
    ("Answer: not stated", None),
    ("Answer: none of these", None),
    ("Answer: nothing", None),
    ("Yesterday it rained.", None),
    ("Nothing in the passage decides it.", None),
    ("Not necessarily.", None),
    ("Truely unclear.", None),
    # prose after "the answer is" is not an answer
    ("the answer is no different from before", None),
    ("The answer is no longer clear", None),
    ("The answer is yes because the passage says so", "yes"),  # a stated reason ends the clause
    # echoing the instruction is not an answer
    ("Answer: yes or no", None),
    ("Answer: yes/no", None),
    ("Reply with `Answer: yes` or `Answer: no`.\nAnswer: yes", "yes"),
    # fallbacks: a lone word on the last line, or as the first word
    ("The passage says it is.\nYes", "yes"),
    ("The passage says it is not.\n**No.**\n", "no"),
    ("Yes, the passage says the museum is in Paris.", "yes"),
    ("No. The treaty was never ratified.", "no"),
    ("true", "yes"),
    ("False.", "no"),
    ("  \n  yes  ", "yes"),
    # no answer at all
    ("", None),
    ("   ", None),
    ("The passage does not say.", None),
    ("I think it is likely, but I'm not sure.", None),
]


@pytest.mark.parametrize(("text", "expected"), EXTRACT_CASES)
def test_extract_yes_no(text: str, expected: str | None) -> None:
    assert extract_yes_no(text) == expected


FINAL_CASES = [
    ("Answer: no", False),  # could still become "none"
    ("Answer: yes", False),
    ("Answer: no.", True),
    ("Answer: no\n", True),
    ("Answer: Yes ", True),
    ("**Answer:** Yes*", True),
    ("Answer: true.", True),
    ("Answer: non", False),
    ("Answer: n", False),
    ("Answer:", False),
    ("", False),
    ("The passage supports this.", False),
    ("Yes.", False),  # fallbacks need the whole response; only explicit answers stop early
    ("The answer is yes.", True),
    ("The answer is no ", False),  # "no different" may follow
    ("The answer is no\n", True),
    ("Answer: yes or no\n", False),
    ("Some reasoning.\nAnswer: no\n<|im_end|>", True),
]


@pytest.mark.parametrize(("text", "expected"), FINAL_CASES)
def test_yes_no_answer_is_final(text: str, expected: bool) -> None:
    assert yes_no_answer_is_final(text) is expected


@pytest.mark.parametrize(("text", "_"), [case for case in FINAL_CASES if case[1]])
def test_final_text_extracts_the_answer(text: str, _: bool) -> None:
    # Stopping generation must never leave a response the grader cannot read.
    assert extract_yes_no(text) in {"yes", "no"}
