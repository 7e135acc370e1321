"""Answer extraction shared by every task: the one place that turns a free-text response into an answer.

Each answer format gets one section with two functions:

* ``extract_<format>(text)`` - the answer the response commits to, or None. Graders call it once per response.
* ``<format>_answer_is_final(text)`` - True once the text already fixes the answer, so generation may stop.
  It is called on every generation step (on the tail of the text), so it must stay a single cheap regex scan.

The two must agree: whenever ``*_answer_is_final`` is True, extracting from that same text gives the answer that
made it final. Formats: yes/no (BoolQ), multiple-choice letters (MMLU), math answers compared with math-verify
(AIME; no cheap "final" test: the last answer wins and generation stops at EOS) and numbers (GSM8K: the last
``#### N``, ``\\boxed{N}`` or "the answer is N", else the last number; compared by value). The yes/no and letter
extractors take ``reasoning=True`` for chain-of-thought responses (the ``:cot`` task variants): the answer is then
read only from the response's end, never from an opening word or an option the reasoning walks through.

Gold answers get one normaliser per format (``yes_no_gold``, ``choice_gold``, ``integer_gold``, ``number_gold``), called
where a grader compares: they accept the gold as datasets spell it (BoolQ/SuperGLUE ``True``/``false``/``1``/``0``, an
MMLU letter or 0-based index, an AIME integer with leading zeros, a GSM8K number with ``$`` or thousands separators)
and raise :class:`GoldAnswerError`, naming the task, the value and the accepted spellings, for anything else: an
unreadable gold must never grade every response wrong.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Any

from harness.api.data import DataError

__all__ = [
    "GoldAnswerError",
    "choice_answer_is_final",
    "choice_gold",
    "extract_choice_letter",
    "extract_math_answer",
    "extract_number_answer",
    "extract_yes_no",
    "integer_gold",
    "math_answers_equal",
    "number_answer_is_final",
    "number_answers_equal",
    "number_gold",
    "yes_no_answer_is_final",
    "yes_no_gold",
]


class GoldAnswerError(DataError):
    """A gold answer that no spelling of its format matches; the message names the task, the value and the
    spellings accepted."""


def _unreadable_gold(task: str, gold: Any, accepted: str) -> GoldAnswerError:
    return GoldAnswerError(f"The {task} task cannot read the gold answer {gold!r}: accepted spellings are {accepted}. "
                           f"Fix the gold in the data (or the --gold flag); a gold it cannot read would grade every "
                           f"response wrong.")


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


def extract_yes_no(text: str, reasoning: bool = False) -> str | None:
    """The yes/no answer in ``text`` ("yes" or "no"), or None where the response commits to neither.

    The last explicit answer wins ("Answer: yes", "**Answer:** No", "Final answer: no", "the answer is yes.",
    "\\boxed{yes}"; true/false read as yes/no), because models often revise themselves before the final line.
    Without one, a last line that is just the word, then a response that opens with it, are accepted.
    ``reasoning=True`` (a chain-of-thought response, which reasons before it answers): the opening word is not an
    answer ("Yes, the passage mentions ... but ... Answer: no" is no; without a final answer it is None).
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
    first = None if reasoning else _YES_NO_FIRST_WORD.match(text)
    if first:
        return _YES_NO_CANONICAL[first.group(1).lower()]
    return None


# BoolQ stores a bool, SuperGLUE's BoolQ a 0/1 label; exports spell the bool True/TRUE/false.
_YES_NO_GOLD = {"yes": "yes", "true": "yes", "1": "yes", "no": "no", "false": "no", "0": "no"}


def yes_no_gold(gold: Any, task: str) -> str:
    """``gold`` as "yes" or "no": yes/no, true/false in any case, 1/0, or a bool; else :class:`GoldAnswerError`."""
    canonical = _YES_NO_GOLD.get(str(gold).strip().casefold()) if isinstance(gold, (str, bool, int)) else None
    if canonical is None:
        raise _unreadable_gold(task, gold, "yes/no or true/false in any case, 1/0, or a boolean")
    return canonical


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


# --------------------------------------------------------------------------------------------------------------
# multiple-choice letters
# --------------------------------------------------------------------------------------------------------------

# What introduces an answer: "Answer:", "Final answer:", "the answer is", "the correct choice is", "best option:",
# and "\boxed{C}" from math-tuned models. "choice"/"option" need "is" or a colon so "the choice A seems wrong" is
# prose, not an answer. Case-insensitive on its own; the letter after it is case-sensitive (see _choice_patterns).
_CHOICE_CUE = (
    r"(?i:\b(?:answer|choice|option)\b[*_`\s]*(?:[:=]|(?:is|would\s+be|should\s+be)\b:?)"
    r"|\\boxed\s*\{\s*(?:\\text(?:bf)?\s*\{)?)"
)
# Chain-of-thought responses walk through the options ("Let's look at each option: A. ..."): there only "answer"
# and \boxed introduce the answer.
_REASONING_CUE = _CHOICE_CUE.replace("(?:answer|choice|option)", "answer")
# Markdown, quotes and brackets between the cue and the letter ("**Answer:** (C)", "Answer: `B`").
_CHOICE_FILL = r"[\s*_`'\"(\[]*"
# A final answer that declines to pick ("Answer: I cannot determine this", "none of the options").
_CHOICE_REFUSAL = re.compile(
    r"\b(?:none\s+of|cannot|can't|can\s+not|unable|not\s+sure|(?:don't|do\s+not)\s+know|unknown|no\s+(?:correct|valid)"
    r"|insufficient)\b|\bn/a\b",
    re.IGNORECASE,
)
# Characters after the letter that close it: "Answer: C." / "C)" / "C\n" / "**C**". A space or comma does not,
# since "Answer: A lot" or "Answer: A, C" may follow.
_CHOICE_CLOSERS = ".)]}*_`'\"\n:;!"
_REFUSED = object()  # verdict: the final answer explicitly picks no single letter


@lru_cache(maxsize=8)
def _choice_patterns(letters: str, reasoning: bool = False
                     ) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """(cue, letter-at-start, second-letter, final) regexes for one letter set, compiled once per set."""
    cue_text = _REASONING_CUE if reasoning else _CHOICE_CUE
    upper, lower = re.escape(letters.upper()), re.escape(letters.lower())
    # An upper-case letter must stand alone ("C", "C.", "(C)", not "Cats" or "A's"); a lower-case one only counts
    # where it cannot be the article "a" ("answer: c." or at the end of the line).
    letter = (
        rf"(?:(?P<upper>[{upper}])(?!\w|'\w)"
        rf"|(?P<lower>[{lower}])(?=[.)\]}}*_`'\"]|[ \t]*(?:\n|$)))"
    )
    cue = re.compile(cue_text)
    at_start = re.compile(_CHOICE_FILL + letter)
    # "A or B", "A, C", "A/B", "(A) and (C)": the final answer names a second letter.
    second = re.compile(rf"[\s)\]*_`'\".]*(?:,|/|&|\bor\b|\band\b)[\s(\[*_`'\"]*([{upper}])(?!\w|'\w)", re.IGNORECASE)
    final = re.compile(cue_text + _CHOICE_FILL + rf"[{upper}](?=[{re.escape(_CHOICE_CLOSERS)}])")
    return cue, at_start, second, final


def _normalise_choice(text: str) -> str:
    """Choice text compared loosely: markup, quotes and a trailing full stop do not matter, nor does case."""
    return re.sub(r"[\s*_`\"']+", " ", text).strip(" .!").casefold()


def _letter_of_choice_text(text: str, choices: Sequence[str], letters: str) -> str | None:
    """The letter whose choice text ``text`` repeats exactly, if exactly one does."""
    wanted = _normalise_choice(text)
    hits = {letters[i] for i, choice in enumerate(choices[: len(letters)])
            if wanted and _normalise_choice(choice) == wanted}
    return hits.pop() if len(hits) == 1 else None


def _choice_verdict(remainder: str, choices: Sequence[str], letters: str) -> object:
    """What the text after one answer cue commits to: a letter, _REFUSED, or None (no answer there: keep looking)."""
    _, at_start, second, _ = _choice_patterns(letters)
    line = remainder.split("\n", 1)[0]
    if not line.strip():  # "Answer:\nC": the answer sits on the next non-empty line
        line = next((part for part in remainder.splitlines() if part.strip()), "")
    found = at_start.match(line)
    if found:
        letter = (found.group("upper") or found.group("lower")).upper()
        other = second.match(line, found.end())
        if other and other.group(1).upper() != letter:
            return _REFUSED
        return letter
    by_text = _letter_of_choice_text(line, choices, letters)
    if by_text:
        return by_text
    return _REFUSED if _CHOICE_REFUSAL.search(line) else None


def extract_choice_letter(text: str, choices: Sequence[str] = (), letters: str = "ABCD", reasoning: bool = False
                          ) -> str | None:
    """The letter ("A".."D") the response commits to, or None.

    The last explicit answer wins: "Answer: C", "the answer is (C)", "**Answer:** c.", "\\boxed{C}", or the text of
    one choice after the cue ("Answer: Paris"). A final answer that refuses or names two different letters
    ("Answer: A or B") gives None rather than an earlier answer. Without any cue, a last line that is just the
    letter ("(C)", "C.", "**C**"), the letter with its choice text ("C. Paris") or one choice's text is accepted.
    ``reasoning=True`` (chain of thought): only "answer" and ``\\boxed`` are cues ("option: A" is the reasoning
    walking through the options), and only a final-answer line ("Answer: A or B", "Answer: I cannot tell") refuses;
    prose such as "the answer cannot be B" is reasoning, skipped for an earlier answer.
    """
    if not text:
        return None
    letters = letters.upper()[: len(choices)] if choices else letters.upper()
    cue, _, _, _ = _choice_patterns(letters, reasoning)
    for match in reversed(list(cue.finditer(text))):
        verdict = _choice_verdict(text[match.end():], choices, letters)
        if verdict is _REFUSED and reasoning and not re.search(r"[:=]|boxed", match.group(0)):
            continue  # "the answer cannot be B": the reasoning, not a final answer
        if verdict is _REFUSED:
            return None
        if verdict is not None:
            return verdict  # type: ignore[return-value]
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1]
    lone = re.fullmatch(rf"[\W_]*([{re.escape(letters)}])[\W_]*", last, re.IGNORECASE)
    if lone:
        return lone.group(1).upper()
    labelled = re.fullmatch(rf"[\W_]*([{re.escape(letters)}])[.):]\s+(.+)", last)
    if labelled and choices:
        index = letters.index(labelled.group(1))
        if _normalise_choice(labelled.group(2)) == _normalise_choice(choices[index]):
            return labelled.group(1)
    return _letter_of_choice_text(last, choices, letters)


def choice_gold(gold: Any, task: str, letters: str = "ABCD") -> str:
    """``gold`` as an upper-case letter: the letter in any case, optionally bracketed or followed by "." or ")"
    ("c", "(C)", "C."), or its 0-based index as MMLU stores it (2 or "2" -> "C"); else :class:`GoldAnswerError`."""
    letters = letters.upper()
    text = str(gold).strip() if isinstance(gold, (str, int)) and not isinstance(gold, bool) else ""
    letter = re.fullmatch(r"[(\[]?\s*([A-Za-z])\s*[)\].]?", text)
    if letter and letter.group(1).upper() in letters:
        return letter.group(1).upper()
    if re.fullmatch(r"\d+", text) and int(text) < len(letters):
        return letters[int(text)]
    last = len(letters) - 1
    raise _unreadable_gold(task, gold, f"a letter {letters[0]}-{letters[last]} in any case, or a 0-based index "
                                       f"0-{last}")


def choice_answer_is_final(text: str, letters: str = "ABCD", reasoning: bool = False) -> bool:
    """True once ``text`` holds an explicit upper-case answer letter closed by punctuation or a newline.

    "Answer: C" at the very end is not final (the next token may be "ats" or ", D"), nor is "Answer: C " (space);
    "Answer: C." / "Answer: C\\n" / "**Answer: C**" are. Agrees with :func:`extract_choice_letter` on that text
    (with the same ``reasoning``, which limits the cues to "answer" and ``\\boxed``).
    """
    if not any(cue in text for cue in ("nswer", "NSWER", "hoice", "HOICE", "ption", "PTION", "boxed")):
        return False
    return _choice_patterns(letters.upper(), reasoning)[3].search(text) is not None


# --------------------------------------------------------------------------------------------------------------
# math answers (math-verify)
# --------------------------------------------------------------------------------------------------------------

_BOXED_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
# "Answer: 204", "Final answer: $\frac{1}{2}$", "the final answer is 33." - the fallback when nothing is boxed.
# The value must look like math (a number or a $...$ / \( \) span), so "the answer is not obvious" is ignored.
_MATH_ANSWER_LINE = re.compile(
    r"(?i:\banswer\b)[*_`\s]*(?:is\b)?[*_`\s]*[:=]?[ \t*_`]*"
    r"(?:\$+(?P<dollar>[^$\n]+)\$|\\\((?P<paren>.+?)\\\)|(?P<number>[+-]?\d+(?:[.,/]\d+)*))"
)
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+")


def _last_boxed(text: str) -> str | None:
    """Content of the last closed, non-empty ``\\boxed{...}`` (nested braces balanced), or None."""
    contents = [content for _, content in _boxed_contents(text)]
    return contents[-1] if contents else None


def extract_math_answer(text: str) -> str | None:
    """The final math answer in ``text`` as written ("070", "\\frac{1}{2}"), or None.

    The last ``\\boxed{...}`` wins; without one, the last "Answer: N" / "final answer is $x$" is used.
    """
    if not text:
        return None
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed
    last = None
    for last in _MATH_ANSWER_LINE.finditer(text):
        pass
    if last is None:
        return None
    return (last.group("dollar") or last.group("paren") or last.group("number")).strip()


def _as_integer(text: str) -> int | None:
    """``text`` as an integer when it plainly is one ("070", "$204$", "1,000"); None otherwise."""
    cleaned = re.sub(r"\s|\$|\\[,!;: ]", "", text).replace("{,}", ",")
    if _THOUSANDS.fullmatch(cleaned):
        cleaned = cleaned.replace(",", "")
    return int(cleaned) if re.fullmatch(r"[+-]?\d{1,50}", cleaned) else None


def integer_gold(gold: Any, task: str) -> str:
    """``gold`` as an integer string without leading zeros ("070", " 70 ", "$70$", 70 -> "70"); anything else
    (an empty or non-integer value) is a :class:`GoldAnswerError`."""
    value = None if isinstance(gold, bool) else gold if isinstance(gold, int) else \
        _as_integer(gold) if isinstance(gold, str) and gold.strip() else None
    if value is None:
        raise _unreadable_gold(task, gold, "an integer, with or without leading zeros (70, 070, $70$)")
    return str(value)


def math_answers_equal(pred: str | None, gold: str) -> bool:
    """Whether ``pred`` and ``gold`` are the same answer: integers by value ("070" == "70"), anything else by
    math-verify (symbolic equivalence). Never raises; an unparsable prediction is simply wrong.
    """
    if pred is None or not pred.strip():
        return False
    as_ints = _as_integer(pred), _as_integer(gold)
    if None not in as_ints:  # AIME answers: exact and fast, no sympy involved
        return as_ints[0] == as_ints[1]
    try:
        from math_verify import parse, verify

        # math-verify times out with SIGALRM, which only the main thread may install.
        timeout = 5 if threading.current_thread() is threading.main_thread() else None
        gold_parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=timeout)
        pred_parsed = parse(f"\\boxed{{{pred}}}", parsing_timeout=timeout)
        if gold_parsed and pred_parsed:
            return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # noqa: BLE001 - sympy/latex2sympy raise many types on odd input; odd input is not a match
        pass
    return pred.strip() == gold.strip()


# --------------------------------------------------------------------------------------------------------------
# numbers (GSM8K)
# --------------------------------------------------------------------------------------------------------------

# One number as responses write it: an optional sign glued to it ("-5", "-$5", but not the "- 3" of "16 - 3" or
# the "-3" of "16-3"), an optional dollar sign, then digits with thousands separators ("1,000", LaTeX "1{,}000" /
# "1\,000"), a decimal part or a fraction ("2.50", "3/4"). A trailing full stop is punctuation ("18." is 18).
_NUMBER = (
    r"(?:(?<![\w)\]}.,])(?P<neg>[-\u2212]))?(?:\\?\$[ \t]?)?(?<![\w.,])"
    r"(?P<num>\d{1,3}(?:(?:,|\{,\}|\\,)\d{3})+(?:\.\d+)?(?!\d)|\d+(?:\.\d+|/0*[1-9]\d*)?(?!\d))"
)
_NUMBER_RE = re.compile(_NUMBER)
# What may stand between an answer cue and its number: markup and the opening of math ("**", "$", "\(").
_NUMBER_FILL = r"[ \t*_`:]*(?:\\\(|\$)?[ \t]*"
# GSM8K's own final line, "#### 72": the number must follow directly ("#### Step 1" is a markdown heading).
_HASH_ANSWER = re.compile(r"####[ \t]*" + _NUMBER)
# "Answer: 18", "The final answer is $18.", "**Answer:** 18": the number directly after the cue. A cue followed by
# prose ("the answer is that she earns $18") is left to the last-number rule.
_CUE_ANSWER = re.compile(r"(?i:\banswer\b)[*_`\s]*(?:(?i:is|would\s+be|should\s+be)\b[ \t]*:?|[:=])" + _NUMBER_FILL
                         + _NUMBER)
# LaTeX that wraps a boxed number without changing it: units in \text{}, \$, \%, degree signs, spacing commands.
_BOXED_NOISE = re.compile(r"\\(?:text|mathrm|textbf|mbox)\s*\{([^{}]*)\}|\\[$%!;: ]|\^\s*\{?\\circ\}?|\\,(?!\d)")
# A closed \boxed{...} without nested braces, or '#### N' followed by a character that cannot extend N: the answer
# is fixed. Nested braces ("\boxed{\frac{1}{2}}") never stop generation early, which is always safe.
_NUMBER_FINAL = re.compile(r"\\(?:boxed|fbox)\s*\{[^{}]*[^{}\s][^{}]*\}|" + _HASH_ANSWER.pattern
                           + r"(?=[^\d.,/]|[.,/][^\d])")


def _number_value(match: re.Match[str]) -> Fraction:
    digits = re.sub(r",|\{,\}|\\,", "", match.group("num"))
    value = Fraction(digits)
    return -value if match.group("neg") else value


def _canonical_number(value: Fraction) -> str:
    """18 for 18.00, 2.5 for 5/2, 1/3 where no finite decimal exists."""
    if value.denominator == 1:
        return str(value.numerator)
    denominator = value.denominator
    for factor in (2, 5):
        while denominator % factor == 0:
            denominator //= factor
    if denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    places = 0
    while (value * 10 ** places).denominator != 1:
        places += 1
    return f"{float(value):.{places}f}" if places <= 15 else f"{value.numerator}/{value.denominator}"


def _boxed_contents(text: str) -> Iterator[tuple[int, str]]:
    """(start, content) of every closed, non-empty ``\\boxed{...}``/``\\fbox{...}`` (nested braces balanced)."""
    for match in _BOXED_OPEN.finditer(text):
        depth, end = 1, match.end()
        while end < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        content = text[match.end(): end - 1].strip()
        if depth == 0 and content:
            yield match.end(), content


def _boxed_answer(content: str) -> str:
    """A boxed number as its canonical value ("\\$1{,}000.00" -> "1000", "18 \\text{ eggs}" -> "18"); anything
    else ("\\frac{36}{2}", "2 \\times 9") verbatim, for math-verify."""
    plain = _BOXED_NOISE.sub(lambda m: f" {m.group(1)} " if m.group(1) is not None else " ", content)
    plain = plain.replace("{,}", ",").replace("%", " ")
    numbers = list(_NUMBER_RE.finditer(plain))
    # one number, and around it only words (units), spaces, "$" or a full stop: "18 eggs", "$18.", "18 \%"
    if len(numbers) == 1 and not re.search(r"[^A-Za-z\s$.]", plain[: numbers[0].start()] + plain[numbers[0].end():]):
        return _canonical_number(_number_value(numbers[0]))
    return content


def extract_number_answer(text: str) -> str | None:
    """The number a GSM8K-style response commits to, canonical ("1,000.00" -> "1000", "-3", "2.5"), or None.

    Explicit answers come first, and of those the one written last wins (a corrected answer later in the text
    replaces an earlier one): ``#### N``, ``\\boxed{N}`` (units, ``\\$`` and ``\\text{}`` inside are ignored; other
    boxed math such as ``\\frac{36}{2}`` is returned verbatim for math-verify), and a number directly after "answer:"
    / "the answer is". Numbers after the last explicit answer (a check, a restated step) never replace it. Only a
    response with no explicit answer at all is read by its last number. ``$``, thousands separators, units and a
    trailing full stop are ignored; "18.00" is 18; a minus sign counts when glued to the number ("-5", "-$5"),
    not in "16 - 3" or "16-3". A response cut off before any explicit answer is thus read by its last number, often
    an intermediate result: the grader sees text only (``finish_reason`` in the records says where it stopped).
    """
    if not text:
        return None
    found: list[tuple[int, str]] = [(m.start("num"), _canonical_number(_number_value(m)))
                                    for pattern in (_HASH_ANSWER, _CUE_ANSWER) for m in pattern.finditer(text)]
    found += [(start, _boxed_answer(content)) for start, content in _boxed_contents(text)]
    if found:
        return max(found)[1]
    last = None
    for last in _NUMBER_RE.finditer(text):
        pass
    return None if last is None else _canonical_number(_number_value(last))


def _plain_number(text: str) -> Fraction | None:
    match = _NUMBER_RE.fullmatch(text.strip())
    return _number_value(match) if match else None


def number_gold(gold: Any, task: str) -> str:
    """``gold`` as a canonical number ("1,000" -> "1000", "18.00" -> "18", "$5" -> "5", -3 -> "-3", 2.5 -> "2.5");
    anything else (empty, words, several numbers) is a :class:`GoldAnswerError`."""
    text = "" if isinstance(gold, bool) or not isinstance(gold, (str, int, float)) else str(gold).strip()
    value = _plain_number(text[:-1] if text.endswith(".") else text) if text else None
    if value is None:
        raise _unreadable_gold(task, gold, "a number, optionally signed, with a decimal part or thousands separators "
                                           "and a leading $ (72, -3, 0.5, 1,000, $18.00)")
    return _canonical_number(value)


def number_answers_equal(pred: str | None, gold: str) -> bool:
    """Whether ``pred`` (from :func:`extract_number_answer`) is the number ``gold`` (from :func:`number_gold`):
    by value for plain numbers, by math-verify for anything else (boxed ``\\frac{36}{2}`` equals 18)."""
    if pred is None or not pred.strip():
        return False
    pred_value, gold_value = _plain_number(pred), _plain_number(gold)
    if pred_value is not None and gold_value is not None:
        return pred_value == gold_value
    return math_answers_equal(pred, gold)


def number_answer_is_final(text: str) -> bool:
    """True once ``text`` holds a closed ``\\boxed{...}`` (without nested braces) or a ``#### N`` that nothing can
    extend ("#### 18\\n", "#### 18." + a space; not "#### 18" or "#### 18." at the end). Generation stops there,
    so within the pipeline the first such answer is the response's last; :func:`extract_number_answer` on that
    text returns it."""
    if "boxed" not in text and "fbox" not in text and "####" not in text:
        return False
    return _NUMBER_FINAL.search(text) is not None
