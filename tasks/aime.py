"""AIME 1983-2023: integer-answer competition problems (919 of the 975 problems; see shared/data/README.md).

This module also holds what the other AIME tasks (``aime24``, ``aime25``) share: the :class:`AIME` dataclass, row
normalisation for local and hub data, the prompt and the math-verify grader.

Local data: ``<data_dir>/aime/aime_1983_2023.jsonl`` with ``{"id", "year": int, "problem", "answer": str}``
(``solution`` optional). Without a data directory the public hub dataset ``gneubig/aime-1983-2024`` (columns
``ID, Year, Problem Number, Question, Answer, Part``) is used, keeping years up to 2023.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from harness.api.answers import extract_math_answer, integer_gold, math_answers_equal
from harness.api.data import DataError, load_hub, local_file, read_jsonl
from harness.api.errors import SpecError
from harness.api.task import Grade, NoTrainSplit, Question, register_task

PROMPT = (
    "Solve the following AIME problem. Reason step by step, then give the final answer (an integer from 0 to 999) "
    "in \\boxed{{}}.\n\nProblem: {problem}"
)
# Hub datasets spell the same fields differently; the first key present wins.
_FIELD_KEYS = {
    "problem": ("problem", "Problem", "question", "Question"),
    "answer": ("answer", "Answer"),
    "year": ("year", "Year"),
    "id": ("id", "ID"),
    "solution": ("solution", "Solution"),
}
# AoPS wiki urls name the exam ("2024_AIME_I_Problems/Problem_1"): ids from them match the local "2024-I-1".
_AOPS_URL = re.compile(r"(\d{4})_AIME_(I{1,2})_Problems/Problem_(\d+)")


@dataclass(frozen=True)
class HubSource:
    """A public hub dataset holding the problems: ``load_dataset(path, config, split=split)``."""

    path: str
    config: str | None
    split: str


def _field(row: Mapping[str, Any], name: str) -> Any:
    return next((row[key] for key in _FIELD_KEYS[name] if key in row and row[key] is not None), None)


def normalise_answer(answer: Any, where: str) -> str:
    """The answer as an integer string without leading zeros ("070" -> "70"; "080 or 081 ..." -> "80")."""
    found = re.match(r"\s*\$?\s*(\d+)", str(answer)) if not isinstance(answer, bool) and answer is not None else None
    if not found:
        raise DataError(f"Malformed AIME data: {where} has answer={answer!r}; expected an integer 0-999.")
    return str(int(found.group(1)))


def normalise_row(row: Mapping[str, Any], index: int, default_year: int | None, where: str) -> dict[str, Any]:
    """One local or hub row -> ``{"id", "year", "problem", "answer", "solution"}`` with checked types."""
    problem, year = _field(row, "problem"), _field(row, "year")
    if not isinstance(problem, str) or not problem.strip():
        raise DataError(f"Malformed AIME data: {where} has no problem text (fields: {', '.join(row)}).")
    url_id = _AOPS_URL.search(str(row.get("url", "")))
    try:
        year = int(url_id.group(1) if url_id and year is None else year if year is not None else default_year)
    except (TypeError, ValueError):
        raise DataError(f"Malformed AIME data: {where} has year={year!r}; expected an integer.") from None
    raw_id = _field(row, "id")
    if url_id:
        row_id = "-".join(url_id.groups())
    elif isinstance(raw_id, str) and raw_id.strip():
        row_id = raw_id.strip()
    else:
        row_id = f"{year}-{raw_id if raw_id is not None else index + 1}"
    solution = _field(row, "solution")
    return {
        "id": row_id,
        "year": year,
        "problem": problem.strip(),
        "answer": normalise_answer(_field(row, "answer"), where),
        "answer_raw": _field(row, "answer"),
        "solution": solution.strip() if isinstance(solution, str) else "",
    }


def demonstration(answer: str, solution: str = "") -> str:
    return f"{solution}\n\nFinal answer: \\boxed{{{answer}}}" if solution else f"\\boxed{{{answer}}}"


def no_argument(name: str, argument: str | None) -> None:
    if argument:
        raise SpecError(f"The {name} task takes no argument (got '{name}:{argument}'); use plain '{name}'.")


@dataclass(frozen=True)
class AIME(NoTrainSplit):
    """AIME problems from ``years`` (inclusive), graded by math-verify equality with the integer answer."""

    name: str
    description: str
    local_path: str  # relative to the data directory
    hub: HubSource
    years: tuple[int, int]
    local_optional: bool = False  # True: a data directory without the file falls back to the hub
    max_new_tokens: int = 1024

    def load(self, data_dir: Path | None, limit: int | None = None) -> Sequence[Question]:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be None or >= 0, got {limit}")
        absent = data_dir is not None and not (Path(data_dir) / self.local_path).is_file()
        use_local = data_dir is not None and not (self.local_optional and absent)
        if use_local:
            path = local_file(data_dir, self.local_path, self.name)
            rows: Iterable[Mapping[str, Any]] = read_jsonl(path, ("id", "year", "problem", "answer"),
                                                           types={"year": int, "problem": str})
            source = str(path)
        else:
            rows = load_hub(self.hub.path, self.hub.config, self.hub.split)
            source = self.hub.path
        selected = self._in_years(rows, source)
        return [self._question(row, source) for row in islice(selected, limit)]

    def _in_years(self, rows: Iterable[Mapping[str, Any]], source: str) -> Iterable[dict[str, Any]]:
        first, last = self.years
        for index, row in enumerate(rows):
            normal = normalise_row(row, index, first if first == last else None, f"{source} row {index + 1}")
            if first <= normal["year"] <= last:
                yield normal

    @staticmethod
    def _question(row: Mapping[str, Any], source: str) -> Question:
        meta = {"year": row["year"], "aime_id": row["id"], "problem": row["problem"], "source": source}
        if str(row["answer_raw"]).strip() != row["answer"]:
            meta["answer_as_published"] = row["answer_raw"]  # e.g. "080", or "080 or 081 (both were accepted)"
        return Question(
            id=f"aime-{row['id']}",
            prompt=PROMPT.format(problem=row["problem"]),
            gold=row["answer"],
            demonstration=demonstration(row["answer"], row["solution"]),
            meta=meta,
        )

    def grade(self, question: Question, response: str) -> Grade:
        extracted = extract_math_answer(response)
        gold = integer_gold(question.gold, self.name)  # "070" or "70"; a non-integer gold is an error, not "wrong"
        return Grade(extracted=extracted, correct=math_answers_equal(extracted, gold))

    def answer_is_final(self, response: str) -> bool:
        # A boxed answer can still be revised later in the response (the last one wins), so never stop early;
        # generation ends at EOS or max_new_tokens.
        return False


AIME_1983_2023 = AIME(
    name="aime",
    description="AIME 1983-2023 (919 problems): integer answers 0-999, graded with math-verify",
    local_path="aime/aime_1983_2023.jsonl",
    hub=HubSource("gneubig/aime-1983-2024", None, "train"),
    years=(1983, 2023),
)


@register_task("aime")
def aime(argument: str | None = None) -> AIME:
    """AIME 1983-2023: integer-answer competition math, graded with math-verify."""
    no_argument("aime", argument)
    return AIME_1983_2023
