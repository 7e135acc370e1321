"""Leaderboard: per-node alignment records aggregated per (task, student, teacher, loss) (METHOD.md, Alignment and
Statistics).

One row per teacher and teacher loss (``rkl``, ``fkl``, ``jsd``, ``sampled``) plus one ``grpo`` reference row per
(task, student). GRPO's direction has no teacher in it, so every teacher carries the same ``align_grpo`` values; the
reference row is computed once, from the first teacher's rows, and labelled teacher ``"-"``.

Every estimate states the n it rests on, and its interval and test come from one procedure
(:mod:`harness.stats`: question-level sign-flip test and its inversion; no interval below 10 questions):

- ``align`` / ``walign`` (``||g*||``-weighted) over the row's informative nodes whose alignment is defined, with
  ``align_questions`` / ``align_nodes``; a zero direction (``self``; ``grpo`` where all G rollouts got one grade) has
  no alignment and is counted in ``zero_d`` instead;
- ``align_correct`` / ``align_incorrect``: the pooled means on correct / incorrect paths (the paper's quantities),
  each with its interval and its own ``*_questions`` / ``*_nodes``;
- ``ok_minus_bad``: the *within-question* contrast, mean over questions with informative nodes on both kinds of path
  of ``mean(align | correct) - mean(align | incorrect)``; interval, sign-flip test ``p_ok_minus_bad``, its
  Benjamini-Hochberg ``q_ok_minus_bad`` over the rows of one (task, student), ``ok_bad_questions`` and
  ``mde_ok_minus_bad`` (the minimum detectable effect at this n, METHOD Power); ``ok_bad_verdict`` reads them;
- ``reliability``: split-half (Spearman-Brown) reliability of the row's alignments (METHOD, Reliability);
- ``group``: rank groups from paired tests over **all** teacher pairs of a (task, student, loss), Holm-corrected over
  all of them (:func:`pairs`); teachers that no significant test separates share a letter, "a" holds the leader by
  ``walign``; ``behind`` names the teachers significantly ahead of the row (the direction is the sign of the tested
  difference, never the ranking);
- ``accuracy``: the teacher's in-context accuracy, from the run's ``accuracy.json`` when there is one.

The per-row columns are :class:`Column` specs evaluated on a :class:`Cell`, so a user can add one::

    leaderboard(nodes, columns=[*COLUMNS, Column("median_align", lambda c: float(np.median(c.align)))])

Rendering lives in :mod:`harness.tables`, reading a run directory back in :func:`harness.records.load_run`, and
the checks of the report commands' flags in :mod:`harness.options`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from harness import stats
from harness.accuracy_report import AccuracyReport, report_from_dict
from harness.records import LOSS_NAMES

REFERENCE_LOSS = "grpo"
TEACHER_LOSSES = tuple(name for name in LOSS_NAMES if name != REFERENCE_LOSS)  # rkl, fkl, jsd, sampled
REFERENCE_TEACHER = "-"  # the grpo row belongs to no teacher
KEY_COLUMNS = ("task", "student", "teacher", "loss")
NODE_KEY = ("question_id", "rollout_id", "position")  # one node of one rollout: the pairing key across teachers
ALPHA = stats.ALPHA
ZERO_GRAD_NOTE = ("zero distillation direction (teacher = student): no alignment is defined, so its nodes enter no "
                  "mean; the zero d column (--wide) counts them")
VERDICTS = ("ahead", "behind", "inconclusive", "too few questions")


@dataclass(frozen=True, eq=False)
class Cell:
    """The node rows behind one leaderboard row, and which of them enter its averages.

    ``rows`` holds every node of the selection (uninformative, zero-direction and no-context nodes included, because
    the counts must state them); ``mask`` picks the nodes whose alignment is defined.
    """

    task: str
    student: str
    teacher: str
    loss: str
    rows: pd.DataFrame
    mask: np.ndarray
    options: stats.Options = stats.Options()

    def column(self, name: str) -> np.ndarray:
        """A float column of the masked rows (NaN where missing; all NaN when the records lack it)."""
        if name not in self.rows:
            return np.full(int(self.mask.sum()), math.nan)
        return self.rows[name].to_numpy(dtype=float, na_value=np.nan)[self.mask]

    @cached_property
    def align(self) -> np.ndarray:
        return self.column(f"align_{self.loss}")

    @cached_property
    def weights(self) -> np.ndarray:
        return self.column("ideal_norm")

    @cached_property
    def correct(self) -> np.ndarray:
        """Per masked node: True on a correct path; a missing grade is neither correct nor incorrect."""
        return self.rows["rollout_correct"].eq(True).to_numpy(dtype=bool, na_value=False)[self.mask]

    @cached_property
    def incorrect(self) -> np.ndarray:
        return self.rows["rollout_correct"].eq(False).to_numpy(dtype=bool, na_value=False)[self.mask]

    @cached_property
    def question_ids(self) -> np.ndarray:
        """Question of each masked node: the cluster of every interval and test (METHOD.md, Statistics)."""
        return self.rows["question_id"].astype(str).to_numpy(dtype=object)[self.mask]

    @cached_property
    def align_estimate(self) -> stats.Estimate:
        return stats.cluster_mean(self.align, self.question_ids, **self.options.test)

    @cached_property
    def walign_estimate(self) -> stats.Estimate:
        return stats.cluster_mean(self.align, self.question_ids, self.weights, **self.options.test)

    @cached_property
    def correct_estimate(self) -> stats.Estimate:
        return stats.cluster_mean(self.align[self.correct], self.question_ids[self.correct], **self.options.test)

    @cached_property
    def incorrect_estimate(self) -> stats.Estimate:
        return stats.cluster_mean(self.align[self.incorrect], self.question_ids[self.incorrect], **self.options.test)

    @cached_property
    def ok_minus_bad_estimate(self) -> stats.Estimate:
        """METHOD's within-question contrast over the questions with informative nodes on both kinds of path."""
        frame = pd.DataFrame({"q": self.question_ids, "align": self.align, "correct": self.correct,
                              "graded": self.correct | self.incorrect})
        means = frame[frame.graded].groupby(["q", "correct"], sort=False)["align"].mean().unstack()
        if True not in means.columns or False not in means.columns:
            return stats.Estimate(math.nan, math.nan, math.nan, math.nan, 0, 0)
        contrast = (means[True] - means[False]).dropna()
        estimate = stats.mean_of_questions(contrast.to_numpy(), **self.options.test)
        nodes = int(frame.graded[frame.q.isin(contrast.index)].sum())
        return stats.Estimate(estimate.estimate, estimate.lo, estimate.hi, estimate.pvalue, estimate.questions,
                              nodes, estimate.se)

    @cached_property
    def keyed(self) -> pd.DataFrame:
        """Alignment and weight of the masked nodes, indexed by (question, rollout, position): the pairing key."""
        index = pd.MultiIndex.from_arrays([self.question_ids, *(self.rows[name].to_numpy()[self.mask]
                                                                 for name in NODE_KEY[1:])], names=list(NODE_KEY))
        frame = pd.DataFrame({"align": self.align, "weight": self.weights}, index=index)
        return frame[~frame.index.duplicated()]

    @cached_property
    def reliability(self) -> tuple[float, int]:
        return stats.split_half_reliability(self.column(f"align_{self.loss}_a"), self.column(f"align_{self.loss}_b"))


@dataclass(frozen=True)
class Column:
    """One aggregate column: ``compute(cell)`` returns its value; it must return NaN (not raise) on empty input."""

    name: str
    compute: Callable[[Cell], Any]


def _true(rows: pd.DataFrame, column: str) -> np.ndarray:
    """``rows[column] is True`` as a writable numpy mask; a null counts as False."""
    # copy=True: under pandas copy-on-write the array may be a read-only view, and callers combine masks in place
    return rows[column].eq(True).to_numpy(dtype=bool, na_value=False, copy=True)


def scorable_mask(rows: pd.DataFrame, loss: str) -> np.ndarray:
    """Informative nodes where the row's direction could be computed (teacher context built, finite logits),
    whether or not that direction is zero. For ``grpo`` the teacher gates are skipped (no teacher in it)."""
    base = _true(rows, "informative")
    if loss != REFERENCE_LOSS:
        base &= _true(rows, "context_ok")
        if "logits_finite" in rows:  # hand-made tables may leave it out: absent means finite
            base &= ~rows["logits_finite"].eq(False).to_numpy(dtype=bool, na_value=False)
    return base


def informative_mask(rows: pd.DataFrame, loss: str) -> np.ndarray:
    """Nodes whose ``align_<loss>`` enters the averages: scorable (:func:`scorable_mask`) with a defined alignment
    (a zero direction has none)."""
    return scorable_mask(rows, loss) & np.isfinite(rows[f"align_{loss}"].to_numpy(dtype=float, na_value=np.nan))


def _zero_d(cell: Cell) -> float:
    """Share of the scorable nodes whose direction is exactly zero (no alignment defined there)."""
    base = scorable_mask(cell.rows, cell.loss)
    if not base.any():
        return math.nan
    dnorm = cell.rows[f"dnorm_{cell.loss}"].to_numpy(dtype=float, na_value=np.nan)
    return float(np.mean(dnorm[base] == 0.0))


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else math.nan


def _estimate_columns(name: str, attribute: str, counts: str | None) -> list[Column]:
    """``name``, ``name_lo``, ``name_hi`` (and ``<counts>_questions`` / ``<counts>_nodes``) of one estimate."""
    def part(field_name: str):
        return lambda cell: getattr(getattr(cell, attribute), field_name)

    columns = [Column(name, part("estimate")), Column(f"{name}_lo", part("lo")), Column(f"{name}_hi", part("hi"))]
    if counts:
        columns += [Column(f"{counts}_questions", part("questions")), Column(f"{counts}_nodes", part("n"))]
    return columns


COLUMNS: list[Column] = [
    Column("questions", lambda c: int(c.rows["question_id"].nunique())),
    Column("rollouts", lambda c: int(len(c.rows[["question_id", "rollout_id"]].drop_duplicates()))),
    Column("nodes", lambda c: int(len(c.rows))),
    Column("informative", lambda c: int(scorable_mask(c.rows, c.loss).sum())),
    Column("no_context", lambda c: int(c.rows["context_ok"].eq(False).sum())),
    Column("zero_d", _zero_d),
    *_estimate_columns("align", "align_estimate", "align"),
    *_estimate_columns("walign", "walign_estimate", None),
    *_estimate_columns("align_correct", "correct_estimate", "correct"),
    *_estimate_columns("align_incorrect", "incorrect_estimate", "incorrect"),
    *_estimate_columns("ok_minus_bad", "ok_minus_bad_estimate", None),
    Column("p_ok_minus_bad", lambda c: c.ok_minus_bad_estimate.pvalue),
    Column("ok_bad_questions", lambda c: c.ok_minus_bad_estimate.questions),
    Column("mde_ok_minus_bad", lambda c: stats.minimum_detectable_effect(c.ok_minus_bad_estimate,
                                                                         alpha=c.options.alpha)),
    Column("pos_frac", lambda c: _mean((c.align > 0).astype(float))),
    Column("reliability", lambda c: c.reliability[0]),
    Column("reliability_nodes", lambda c: c.reliability[1]),
]

# columns that compare rows with each other (added after the per-cell columns, see leaderboard(paired=True))
COMPARISON_COLUMNS = ("q_ok_minus_bad", "ok_bad_verdict", "group", "behind", "accuracy")


def iter_cells(nodes: pd.DataFrame, options: stats.Options | None = None) -> Iterator[Cell]:
    """Yield the :class:`Cell` of every leaderboard row, in table order before ranking."""
    options = options or stats.Options()
    for (task, student), group in nodes.groupby(["task", "student"], sort=False, dropna=False):
        teachers = list(pd.unique(group["teacher"]))
        for teacher in teachers:
            rows = group[group["teacher"] == teacher]
            for loss in TEACHER_LOSSES:
                yield Cell(task, student, teacher, loss, rows, informative_mask(rows, loss), options)
        if teachers:
            # teacher-independent: the first teacher's rows stand for all of them
            rows = group[group["teacher"] == teachers[0]]
            yield Cell(task, student, REFERENCE_TEACHER, REFERENCE_LOSS, rows, informative_mask(rows, REFERENCE_LOSS),
                       options)


# ---------------------------------------------------------------- teacher pairs

PAIR_COLUMNS = ("task", "student", "loss", "teacher", "other", "diff", "diff_lo", "diff_hi", "p", "p_holm",
                "questions", "nodes", "mde", "verdict")


def pair_estimate(a: Cell, b: Cell) -> stats.Estimate:
    """``walign(a) - walign(b)`` over the nodes both have an alignment at (matched by question, rollout,
    position; weights ``||g*||``, which do not depend on the teacher), with its paired question-level test."""
    both = a.keyed.join(b.keyed[["align"]].rename(columns={"align": "align_other"}), how="inner")
    return stats.paired_difference(both["align"], both["align_other"], both.index.get_level_values(0),
                                   both["weight"], **a.options.test)


def pair_verdict(estimate: stats.Estimate, p_holm: float, alpha: float) -> str:
    """``ahead`` / ``behind`` (the sign of the tested difference, significant after Holm), ``inconclusive``
    (not significant: the difference may be anything below the MDE, never read as "no difference"), or
    ``too few questions`` (below :data:`harness.stats.MIN_QUESTIONS`)."""
    if estimate.too_few or not math.isfinite(estimate.estimate):
        return "too few questions"
    if math.isfinite(p_holm) and p_holm < alpha:
        return "ahead" if estimate.estimate > 0 else "behind"
    return "inconclusive"


def pairs(cells: Sequence[Cell], walign: Sequence[float]) -> pd.DataFrame:
    """Every teacher pair of each (task, student, loss), Holm-corrected over all pairs of that family.

    ``walign`` (one per cell) orders each pair: ``teacher`` is the one with the higher ``walign``, so ``diff`` is
    usually positive; its sign, not that order, is what a verdict states. Teachers without any defined alignment
    (the ``self`` control) are left out.
    """
    records = []
    families: dict[tuple[str, str, str], list[int]] = {}
    for index, cell in enumerate(cells):
        if cell.loss != REFERENCE_LOSS and math.isfinite(walign[index]):
            families.setdefault((cell.task, cell.student, cell.loss), []).append(index)
    for (task, student, loss), members in families.items():
        ranked = sorted(members, key=lambda i: -walign[i])
        family = []
        for first, second in ((ranked[i], ranked[j]) for i in range(len(ranked)) for j in range(i + 1, len(ranked))):
            estimate = pair_estimate(cells[first], cells[second])
            family.append((cells[first].teacher, cells[second].teacher, estimate))
        adjusted = stats.holm([estimate.pvalue for *_, estimate in family])
        alpha = cells[members[0]].options.alpha
        for (teacher, other, estimate), p_holm in zip(family, adjusted):
            records.append({"task": task, "student": student, "loss": loss, "teacher": teacher, "other": other,
                            "diff": estimate.estimate, "diff_lo": estimate.lo, "diff_hi": estimate.hi,
                            "p": estimate.pvalue, "p_holm": float(p_holm), "questions": estimate.questions,
                            "nodes": estimate.n, "mde": stats.minimum_detectable_effect(estimate, alpha=alpha),
                            "verdict": pair_verdict(estimate, float(p_holm), alpha)})
    return pd.DataFrame.from_records(records, columns=list(PAIR_COLUMNS))


def _groups_and_behind(table: pd.DataFrame, pair_table: pd.DataFrame) -> None:
    """Fill ``group`` (compact letters from the pairs' verdicts) and ``behind`` in place."""
    table["group"] = ""
    table["behind"] = ""
    teacher_rows = table[(table["loss"] != REFERENCE_LOSS) & table["walign"].notna()]
    for (task, student, loss), family in teacher_rows.groupby(["task", "student", "loss"], sort=False):
        order = list(family.sort_values("walign", ascending=False, kind="stable")["teacher"])
        verdicts = pair_table[(pair_table.task == task) & (pair_table.student == student) & (pair_table.loss == loss)]
        separated = {frozenset((row.teacher, row.other)) for row in verdicts.itertuples()
                     if row.verdict in ("ahead", "behind")}
        groups = stats.rank_groups(order, lambda a, b: frozenset((a, b)) in separated)
        ahead_of: dict[str, list[str]] = {name: [] for name in order}
        for row in verdicts.itertuples():
            if row.verdict == "ahead":
                ahead_of[row.other].append(row.teacher)
            elif row.verdict == "behind":
                ahead_of[row.teacher].append(row.other)
        for index, row in family.iterrows():
            table.at[index, "group"] = groups[row.teacher]
            table.at[index, "behind"] = ", ".join(ahead_of[row.teacher])


def ok_bad_verdict(row: Mapping[str, Any], alpha: float) -> str:
    """``ok > bad`` / ``ok < bad`` (BH-significant within-question contrast), ``inconclusive``, or
    ``too few questions`` (fewer than :data:`harness.stats.MIN_QUESTIONS` questions with both kinds of path)."""
    if not row["ok_bad_questions"] >= stats.MIN_QUESTIONS or not math.isfinite(row["ok_minus_bad"]):
        return "too few questions"
    if math.isfinite(row["q_ok_minus_bad"]) and row["q_ok_minus_bad"] < alpha:
        return "ok > bad" if row["ok_minus_bad"] > 0 else "ok < bad"
    return "inconclusive"


# ---------------------------------------------------------------- the table


def _accuracy_report(accuracy: Any) -> AccuracyReport | None:
    """The run's accuracy report: given, or parsed from ``accuracy.json``'s contents (one schema, checked:
    :mod:`harness.accuracy_report`)."""
    if accuracy is None or isinstance(accuracy, AccuracyReport):
        return accuracy
    return report_from_dict(accuracy, "accuracy.json")


@dataclass(frozen=True)
class Leaderboard:
    """The leaderboard (one row per (task, student, teacher, loss)) and every teacher pair behind its groups."""

    table: pd.DataFrame
    pairs: pd.DataFrame


def build(nodes: pd.DataFrame, columns: Sequence[Column] | None = None, *, options: stats.Options | None = None,
          paired: bool = True, accuracy: Any = None) -> Leaderboard:
    """Aggregate a nodes table (``nodes.parquet`` as pandas) into the leaderboard and its pair table.

    Within each (task, student) rows go by loss (``rkl``, ``fkl``, ``jsd``, ``sampled``, ``grpo``), then by
    ``walign`` (descending, NaN last); (task, student) groups keep their order of first appearance. ``paired`` appends the :data:`COMPARISON_COLUMNS` (they need the default
    columns). ``accuracy`` (an :class:`~harness.accuracy_report.AccuracyReport`, or the contents of
    ``accuracy.json``) defaults to ``nodes.attrs["accuracy"]``, which :func:`harness.records.load_run` sets.
    """
    options = options or stats.Options()
    columns = list(COLUMNS if columns is None else columns)
    names = [*KEY_COLUMNS, *(column.name for column in columns)]
    records, cells = [], []
    for cell in iter_cells(nodes, options):
        record: dict[str, Any] = {"task": cell.task, "student": cell.student, "teacher": cell.teacher, "loss": cell.loss}
        for column in columns:
            record[column.name] = column.compute(cell)
        records.append(record)
        cells.append(cell)
    table = pd.DataFrame.from_records(records, columns=names)
    pair_table = pd.DataFrame(columns=list(PAIR_COLUMNS))
    if paired and not table.empty and {"walign", "ok_minus_bad", "p_ok_minus_bad"} <= set(table.columns):
        table["q_ok_minus_bad"] = math.nan
        for _, group in table.groupby(["task", "student"], sort=False, dropna=False):
            table.loc[group.index, "q_ok_minus_bad"] = stats.benjamini_hochberg(group["p_ok_minus_bad"])
        table["ok_bad_verdict"] = [ok_bad_verdict(row, options.alpha) for row in table.to_dict("records")]
        pair_table = pairs(cells, table["walign"].to_numpy(dtype=float))
        _groups_and_behind(table, pair_table)
        report = _accuracy_report(nodes.attrs.get("accuracy") if accuracy is None else accuracy)
        table["accuracy"] = [math.nan if row.teacher == REFERENCE_TEACHER or report is None
                             else report.accuracy_of(row.task, row.student, row.teacher)
                             for row in table.itertuples()]
        table["accuracy"] = table["accuracy"].astype(float)
    if table.empty or "walign" not in table.columns:
        return Leaderboard(table.reset_index(drop=True), pair_table)
    # within a (task, student): losses in LOSS_NAMES order (rank groups are per loss), then walign, best first
    table["_loss_order"] = table["loss"].map({name: i for i, name in enumerate(LOSS_NAMES)}).fillna(len(LOSS_NAMES))
    ranked = [group.sort_values(["_loss_order", "walign"], ascending=[True, False], na_position="last", kind="stable")
              .drop(columns="_loss_order")
              for _, group in table.groupby(["task", "student"], sort=False, dropna=False)]
    return Leaderboard(pd.concat(ranked).reset_index(drop=True), pair_table)


def leaderboard(nodes: pd.DataFrame, columns: Sequence[Column] | None = None, *, options: stats.Options | None = None,
                paired: bool = True, accuracy: Any = None) -> pd.DataFrame:
    """The leaderboard table alone (see :func:`build`)."""
    return build(nodes, columns, options=options, paired=paired, accuracy=accuracy).table


def select_losses(table: pd.DataFrame, losses: Sequence[str]) -> pd.DataFrame:
    """The rows of ``losses`` only (every row when ``losses`` is empty), in the table's order.

    Select after :func:`build`, not before: ``q_ok_minus_bad`` is corrected over every row of a (task, student),
    so the shown rows keep the values of the full table. Works on the leaderboard and on the pair table.
    """
    if not losses:
        return table
    return table[table["loss"].isin(list(losses))].reset_index(drop=True)
