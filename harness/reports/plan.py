"""``opd plan``: from a pilot run, how many questions each headline comparison needs, and what that costs.

For every headline comparison of the pilot (METHOD, Power):

- the within-question contrast ``ok_minus_bad`` of each (teacher, loss) row, and
- every teacher pair of each loss (the tests behind the leaderboard's rank groups),

it states the n the pilot's test rests on, the observed between-question spread, the minimum detectable effect
(80% power, alpha 0.05) at that n, and how many questions the test would need to detect ``effect``. Not every
question a run diagnoses counts for every comparison (``ok_minus_bad`` needs informative nodes on both a correct and
an incorrect rollout of the question), so the questions *to run* divide the needed count by the share of the
pilot's questions that counted. The pilot's questions are those it diagnosed (``run.json`` counts them for its
task and student), not only those with a node: a question where screening kept no node cost as much to run.
Cost follows from the pilot's measured rate (generated tokens and wall seconds per question sampled in its last
session, from ``run.json``; device and threads as recorded there).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.reports import stats
from harness.reports.leaderboard import REFERENCE_LOSS, TEACHER_LOSSES, Cell, iter_cells, pair_estimate
from harness.storage.run_meta import RunMeta

DEFAULT_EFFECT = 0.1
COLUMNS = ["comparison", "task", "student", "loss", "teacher", "other", "estimate", "questions", "spread", "mde",
           "questions_needed", "counted_share", "questions_to_run", "tokens", "hours"]


@dataclass(frozen=True)
class Rate:
    """What one question cost in the pilot: generated tokens and wall seconds (NaN when the pilot sampled nothing
    new, e.g. a resumed or fully cached run), and where it was measured."""

    tokens_per_question: float
    seconds_per_question: float
    where: str

    @classmethod
    def of(cls, run: RunMeta) -> "Rate":
        counts, timings = run.counts, run.timings
        sampled = int(counts.get("questions", 0)) - sum(run.reused_questions)
        tokens = counts.get("generated_tokens_this_session")
        seconds = (timings.get("total_s") or 0) - (timings.get("setup_s") or 0)
        where = run.where
        if sampled <= 0 or tokens is None or seconds <= 0:
            return cls(math.nan, math.nan, where)
        return cls(tokens / sampled, seconds / sampled, where)


def _row(comparison: str, cell: Cell, other: str, estimate: stats.Estimate, total_questions: int, effect: float,
         rate: Rate, alpha: float) -> dict[str, Any]:
    # no conclusion is drawn below MIN_QUESTIONS, whatever the power calculation says
    needed = max(stats.questions_needed(estimate, effect, alpha=alpha), float(stats.MIN_QUESTIONS))
    share = estimate.questions / total_questions if total_questions else math.nan
    to_run = math.ceil(needed / share) if share and math.isfinite(needed) else math.nan
    spread = estimate.se * math.sqrt(estimate.questions) if estimate.questions >= 2 else math.nan
    return {"comparison": comparison, "task": cell.task, "student": cell.student, "loss": cell.loss,
            "teacher": cell.teacher, "other": other, "estimate": estimate.estimate, "questions": estimate.questions,
            "spread": spread, "mde": stats.minimum_detectable_effect(estimate, alpha=alpha),
            "questions_needed": needed, "counted_share": share, "questions_to_run": float(to_run),
            "tokens": to_run * rate.tokens_per_question, "hours": to_run * rate.seconds_per_question / 3600}


def questions_diagnosed(nodes: pd.DataFrame, run: RunMeta) -> dict[tuple[str, str], int]:
    """Per (task, student): the questions the pilot diagnosed. Those with a node are in ``nodes``; the run's own
    cell (``run.json``'s task and student) also counts the questions that kept none (``counts.questions``)."""
    totals = nodes.groupby(["task", "student"], sort=False)["question_id"].nunique().to_dict()
    key = (run.task, run.student)
    diagnosed = run.counts.get("questions")
    if key in totals and diagnosed:
        totals[key] = max(totals[key], int(diagnosed))
    return totals


def plan(nodes: pd.DataFrame, run: RunMeta, *, effect: float = DEFAULT_EFFECT,
         options: stats.Options | None = None) -> dict[str, pd.DataFrame]:
    """Tables ``comparisons`` (one row per headline comparison) and ``summary`` (per (task, student): the questions
    to run so that every comparison detects ``effect``, and its cost)."""
    options = options or stats.Options()
    rate = Rate.of(run)
    records = []
    cells = [cell for cell in iter_cells(nodes, options) if cell.loss != REFERENCE_LOSS and cell.mask.any()]
    totals = questions_diagnosed(nodes, run)
    for cell in cells:
        records.append(_row("ok_minus_bad", cell, "", cell.ok_minus_bad_estimate, totals[(cell.task, cell.student)],
                            effect, rate, options.alpha))
    for loss in TEACHER_LOSSES:
        family = [cell for cell in cells if cell.loss == loss]
        for i, first in enumerate(family):
            for second in family[i + 1:]:
                if (first.task, first.student) != (second.task, second.student):
                    continue
                records.append(_row("pair", first, second.teacher, pair_estimate(first, second),
                                    totals[(first.task, first.student)], effect, rate, options.alpha))
    comparisons = pd.DataFrame.from_records(records, columns=COLUMNS)
    summary = []
    for (task, student), group in comparisons.groupby(["task", "student"], sort=False):
        worst = group["questions_to_run"].max()
        summary.append({"task": task, "student": student, "effect": effect, "pilot_questions": totals[(task, student)],
                        "comparisons": len(group), "undetermined": int(group["questions_to_run"].isna().sum()),
                        "questions_for_all": worst, "tokens": worst * rate.tokens_per_question,
                        "hours": worst * rate.seconds_per_question / 3600,
                        "tokens_per_question": rate.tokens_per_question,
                        "seconds_per_question": rate.seconds_per_question, "measured_on": rate.where})
    return {"comparisons": comparisons, "summary": pd.DataFrame.from_records(summary)}
