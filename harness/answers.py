"""Answer extraction shared by every task: the one place that turns a free-text response into an answer.

Each answer format gets one section with two functions:

* ``extract_<format>(text)`` - the answer the response commits to, or None. Graders call it once per response.
* ``<format>_answer_is_final(text)`` - True once the text already fixes the answer, so generation may stop.
  It is called on every generation step (on the tail of the text), so it must stay a single cheap regex scan.

The two must agree: whenever ``*_answer_is_final`` is True, extracting from that same text gives the answer that
made it final. Formats: yes/no (BoolQ). Multiple-choice letters (MMLU) and integers via math-verify (AIME) go
in their own sections below, following the same pattern.
"""
from __future__ import annotations

import re

__all__ = ["extract_yes_no", "yes_no_answer_is_final"]


# --------------------------------------------------------------------------------------------------------------
# yes / no
# --------------------------------------------------------------------------------------------------------------

# Models answer "true"/"false" as often as "yes"/"no" on BoolQ-style questions; both mean the same verdict.
_YES_NO_CANONICAL = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}

_YN_WORD = r"(?:yes|no|true|false)"
# Markdown emphasis, code ticks, quotes and brackets that models put between the cue and the word
# ("**Answer:** Yes", "Answer: `no`", "Answer: (yes)").
_YN_FILL = r"[\s*_`'\"(\[]*"
# A model that echoes the instruction ("Answer: yes or no", "Answer: yes/no") has not answered.
_YN_NOT_ECHO = r"(?!\s*(?:/|\bor\b)\s*" + _YN_WORD + r"\b)"

_YES_NO_EXPLICIT = re.compile(
    # "Answer: yes", "Final answer: no", "**Answer**: Yes", "answer = true". The colon makes it a strong cue,
    # so any yes/no word after it counts.
    r"\banswer\b[*_`\s]*[:=]" + _YN_FILL + r"(?P<colon>" + _YN_WORD + r")\b" + _YN_NOT_ECHO
    # "the answer is yes." is a weaker cue: "the answer is no different" or "the answer is no longer clear" are
    # prose, so here the word must end its clause (punctuation, line end, end of text, or "because"/"since").
    + r"|\banswer\s+(?:is|would\s+be|should\s+be)\b:?" + _YN_FILL + r"(?P<is>" + _YN_WORD + r")\b"
    + _YN_NOT_ECHO + r"(?=[^\w\s]|[ \t]*\n|\s*$|\s+(?:because|since)\b)"
    # LaTeX-style boxed answers, which math-tuned models produce out of habit.
    + r"|\\boxed\{\s*(?:\\text\{\s*)?(?P<boxed>" + _YN_WORD + r")\b",
    re.IGNORECASE,
)
# Fallbacks for responses without an explicit cue: the whole last line is a lone word ("**Yes.**"), or the
# response opens with one ("No, the passage says ..."). \b keeps "yesterday", "not", "nothing" from counting.
_YES_NO_LONE_LINE = re.compile(r"[\W_]*(" + _YN_WORD + r")[\W_]*", re.IGNORECASE)
_YES_NO_FIRST_WORD = re.compile(r"[\W_]*(" + _YN_WORD + r")\b", re.IGNORECASE)


def _explicit_word(match: re.Match[str]) -> str:
    return match.group("colon") or match.group("is") or match.group("boxed")


def extract_yes_no(text: str) -> str | None:
    """The yes/no answer in ``text`` ("yes" or "no"), or None where the response commits to neither.

    The last explicit answer wins ("Answer: yes", "**Answer:** No", "Final answer: no", "the answer is yes.",
    "\\boxed{yes}"; true/false read as yes/no), because models often revise themselves before the final line.
    Without one, a last line that is just the word, then a response that opens with it, are accepted.
    """
    if not text:
        return None
    last = None
    for last in _YES_NO_EXPLICIT.finditer(text):
        pass
    if last is not None:
        return _YES_NO_CANONICAL[_explicit_word(last).lower()]
    lines = [line for line in text.splitlines() if line.strip()]
    if lines:
        lone = _YES_NO_LONE_LINE.fullmatch(lines[-1])
        if lone:
            return _YES_NO_CANONICAL[lone.group(1).lower()]
    first = _YES_NO_FIRST_WORD.match(text)
    if first:
        return _YES_NO_CANONICAL[first.group(1).lower()]
    return None


def yes_no_answer_is_final(text: str) -> bool:
    """True once ``text`` holds a completed explicit yes/no answer followed by at least one non-letter character.

    "...Answer: no" at the very end is not final yet: the next token could turn "no" into "none". "Answer: no."
    or "Answer: no\\n" is. Only the explicit cues count (the fallbacks need the whole response), and for
    "the answer is yes" the following character must end the clause, not be a space.
    """
    # Cheap pre-filter: nearly every step of a generation has no cue at all.
    if "nswer" not in text and "NSWER" not in text and "boxed" not in text:
        return False
    for match in _YES_NO_EXPLICIT.finditer(text):
        end = match.end()
        if end >= len(text):
            continue  # the word may still grow ("no" -> "none")
        following = text[end]
        if match.group("is") and following in " \t":
            continue  # "the answer is no" + " different" is still possible
        if not following.isalpha():
            return True
    return False
