"""The ``accuracy.json`` format: the one typed, versioned schema that ``opd accuracy --out`` writes and every reader
(``opd leaderboard``'s accuracy column, a study's tables) reads back through :func:`report_from_dict`.

A report is ``{"schema": SCHEMA, "version": VERSION, "config": {...}, "rows": [...], "breakdown": [...], "notes":
[...], "questions": [...]}``. ``config`` names the ``task`` spec (``task_name``: the task's own name, as run records
spell it) and the ``student``; each row is one condition (``"student"`` or a teacher spec) with its ``accuracy``
(None where no answer exists), its ``unparsed`` share and paired statistics (:mod:`harness.workflows.accuracy` says what each
means). Reports written before the schema carried its name and version have exactly version 1's fields and are read
as version 1.

Versions: 2 adds ``unparsed`` to each row, the mean over the same questions as ``accuracy`` of the share of answers
with no parseable answer (METHOD, Categorical answers: a third outcome, apart from a wrong answer; the wrong share is
``1 - accuracy - unparsed``). A version-1 report is read with ``unparsed`` recomputed from its per-question answers
where it carries them (``--out`` files do), and None (not recorded) where it does not.

Kept free of heavy imports (no torch), so that reading a report never loads a model library.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.api.errors import OpdError

SCHEMA = "opd-accuracy-report"
VERSION = 2
READABLE_VERSIONS = (1, 2)  # a version-1 report lacks the rows' ``unparsed`` (filled on reading: module docstring)
STUDENT_CONDITION = "student"


class AccuracyReportError(OpdError):
    """A file that is not an ``opd accuracy`` report of a version this code reads; the message says how to write
    one."""


@dataclass
class AccuracyReport:
    """What ``opd accuracy`` measured: its configuration, one row per condition, the difficulty breakdown, the notes
    and (in ``--out`` files) every answer per question."""

    config: dict[str, Any]
    rows: list[dict[str, Any]]
    breakdown: list[dict[str, Any]]
    notes: list[str]
    questions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, include_questions: bool = True) -> dict[str, Any]:
        data = {"schema": SCHEMA, "version": VERSION, "config": self.config, "rows": self.rows,
                "breakdown": self.breakdown, "notes": self.notes}
        if include_questions:
            data["questions"] = self.questions
        return data

    @property
    def task_name(self) -> str:
        """The task as run records name it (``task_name``; the spec for reports that lack it)."""
        return str(self.config.get("task_name") or self.config["task"])

    def accuracy_of(self, task: str, student: str, condition: str) -> float:
        """``condition``'s accuracy (a teacher spec, or ``"student"``) when this report is of ``task`` and
        ``student``; NaN otherwise, or where the condition has no answer."""
        if task != self.task_name or student != self.config["student"]:
            return math.nan
        for row in self.rows:
            if row["condition"] == condition:
                return math.nan if row["accuracy"] is None else float(row["accuracy"])
        return math.nan


def _problem(data: Any) -> str | None:
    """What keeps ``data`` from being a report of a :data:`READABLE_VERSIONS` version (None: nothing)."""
    if not isinstance(data, Mapping):
        return f"it holds a JSON {type(data).__name__}, not an object"
    if "schema" in data and data["schema"] != SCHEMA:
        return f"its schema is {data['schema']!r}, not {SCHEMA!r}"
    if "version" in data and data["version"] not in READABLE_VERSIONS:
        return (f"it is version {data['version']!r} of the format; this opd-harness reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}")
    config = data.get("config")
    if not isinstance(config, Mapping) or not all(isinstance(config.get(key), str) for key in ("task", "student")):
        return "it has no config naming its task and student"
    rows = data.get("rows")
    if not isinstance(rows, list) or not rows:
        return "it has no rows of conditions"
    for row in rows:
        if not isinstance(row, Mapping) or not isinstance(row.get("condition"), str) or "accuracy" not in row:
            return f"a row lacks its condition or accuracy ({row!r:.80})"
        value = row["accuracy"]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"condition {row['condition']!r} has accuracy {value!r}, not a number"
        value = row.get("unparsed")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"condition {row['condition']!r} has unparsed share {value!r}, not a number"
    for key in ("breakdown", "notes", "questions"):
        if not isinstance(data.get(key, []), list):
            return f"its {key} is not a list"
    return None


def report_from_dict(data: Any, source: str | Path = "accuracy.json") -> AccuracyReport:
    """The report in ``data`` (parsed JSON), checked against the schema; anything else raises
    :class:`AccuracyReportError` naming ``source``, the problem and the command that writes a report."""
    problem = _problem(data)
    if problem is not None:
        raise AccuracyReportError(
            f"{source} is not an `opd accuracy` report: {problem}. Write it with `opd accuracy --task TASK "
            f"--student STUDENT --teacher SPEC ... --out {source}` (the leaderboard's accuracy column reads it "
            f"from RUN/accuracy.json), or remove the file.")
    questions = list(data.get("questions", []))
    rows = [dict(row) for row in data["rows"]]
    if data.get("version", 1) == 1:
        shares = _unparsed_shares(questions)
        for row in rows:
            row.setdefault("unparsed", shares.get(row["condition"]))
    return AccuracyReport(config=dict(data["config"]), rows=rows, breakdown=list(data.get("breakdown", [])),
                          notes=list(data.get("notes", [])), questions=questions)


def unparsed_share(answers: list[Mapping[str, Any] | None]) -> float | None:
    """Share of the answers that exist (``Answer`` fields, as a report stores them) with no parseable answer (the
    ``unparsed`` outcome of :func:`harness.storage.records.outcome`); None when none exists."""
    from harness.storage.records import outcome

    present = [a for a in answers if a is not None]
    if not present:
        return None
    return sum(outcome(bool(a["correct"]), a.get("extracted")) == "unparsed" for a in present) / len(present)


def _unparsed_shares(questions: list[Any]) -> dict[str, float | None]:
    """Per condition, the mean over questions of :func:`unparsed_share` from a report's per-question answers (the
    rows' ``unparsed`` of version 2, recomputed for a version-1 report); a condition without them is absent."""
    by_condition: dict[str, list[float]] = {}
    for entry in questions:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("answers"), list):
            continue
        answers = [a if isinstance(a, Mapping) and "correct" in a else None for a in entry["answers"]]
        share = unparsed_share(answers)
        if share is not None:
            by_condition.setdefault(str(entry.get("condition")), []).append(share)
    return {condition: sum(shares) / len(shares) for condition, shares in by_condition.items()}


def read_report(path: str | Path) -> AccuracyReport:
    """An ``accuracy.json`` file, checked (:func:`report_from_dict`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise AccuracyReportError(f"{path} cannot be read as JSON ({error}); write it again with `opd accuracy "
                                  f"... --out {path}`.") from None
    return report_from_dict(data, path)
