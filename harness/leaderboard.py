"""Leaderboard: per-node alignment records aggregated per (task, student, teacher, loss) (METHOD.md, Alignment).

One row per teacher and teacher loss (``rkl``, ``fkl``, ``jsd``, ``sampled``) plus one ``grpo`` reference row per
(task, student). GRPO's direction has no teacher in it, so every teacher carries the same ``align_grpo`` values; the
reference row is computed once, from the first teacher's rows, and labelled teacher ``"-"``.

The aggregate columns are a list of :class:`Column` specs evaluated on a :class:`Cell` (the node rows of one
leaderboard row plus its informative mask), so significance columns (cluster-bootstrap CIs, paired p-values; METHOD.md,
Statistics) can be added later by appending specs instead of rewriting :func:`leaderboard`::

    leaderboard(nodes, columns=[*COLUMNS, Column("align_ci_lo", my_bootstrap_lo)])

Significance (METHOD.md, Statistics; computed by :mod:`harness.stats`, all at the question level):

- ``align_lo``/``align_hi`` and ``walign_lo``/``walign_hi``: cluster-bootstrap percentile intervals (``resamples``);
- ``corr_minus_incorr`` = ``align_correct - align_incorrect`` with its bootstrap interval ``diff_lo``/``diff_hi`` and
  ``p_corr_incorr``: permutation test, path labels permuted among the rollouts of each question; ``q_corr_incorr`` is
  that p-value Benjamini-Hochberg-corrected over the rows of one (task, student);
- ``p_vs_leader``: paired sign-flip test (same nodes, same questions) of each teacher against the loss's leader by
  ``walign``, on per-question ``||g*||``-weighted mean differences, Holm-corrected over the teachers of that
  (task, student, loss); ``behind`` marks rows significantly (``alpha``) behind the leader;
- ``accuracy``: the teacher's in-context accuracy, from the run's ``accuracy.json`` when there is one.

Rendering lives in :mod:`harness.tables`, reading a run directory back in :func:`harness.records.load_run`, and
the checks of the report commands' flags in :mod:`harness.options`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from harness import stats
from harness.records import LOSS_NAMES

REFERENCE_LOSS = "grpo"
TEACHER_LOSSES = tuple(name for name in LOSS_NAMES if name != REFERENCE_LOSS)  # rkl, fkl, jsd, sampled
REFERENCE_TEACHER = "-"  # the grpo row belongs to no teacher
KEY_COLUMNS = ("task", "student", "teacher", "loss")
NODE_KEY = ("question_id", "rollout_id", "position")  # one node of one rollout: the pairing key across teachers
ALPHA = 0.05
ZERO_GRAD_NOTE = "zero distillation gradient (teacher = student): alignment 0 by definition"


@dataclass(frozen=True, eq=False)
class Cell:
    """The node rows behind one leaderboard row, and which of them count as informative for its loss.

    ``rows`` holds every node of the selection (uninformative and no-context nodes included, because the counts
    must state them); ``mask`` picks the nodes whose alignment enters the averages.
    """

    task: str
    student: str
    teacher: str
    loss: str
    rows: pd.DataFrame
    mask: np.ndarray
    resamples: int = stats.RESAMPLES  # cluster-bootstrap resamples of the interval columns
    permutations: int = stats.PERMUTATIONS
    seed: int = 0  # every interval and test of the cell draws from its own Generator(seed): order-independent

    @cached_property
    def align(self) -> np.ndarray:
        return self.rows[f"align_{self.loss}"].to_numpy(dtype=float, na_value=np.nan)[self.mask]

    @cached_property
    def weights(self) -> np.ndarray:
        return self.rows["ideal_norm"].to_numpy(dtype=float, na_value=np.nan)[self.mask]

    @cached_property
    def correct(self) -> np.ndarray:
        """Per informative node: True / False path grade; a missing grade is neither (see ``incorrect``)."""
        return self.rows["rollout_correct"].eq(True).to_numpy(dtype=bool, na_value=False)[self.mask]

    @cached_property
    def incorrect(self) -> np.ndarray:
        # not simply ~correct: a node with a null grade must not be counted as an incorrect path
        return self.rows["rollout_correct"].eq(False).to_numpy(dtype=bool, na_value=False)[self.mask]

    @cached_property
    def question_ids(self) -> np.ndarray:
        """Question of each informative node: the resampling cluster for CIs and tests (METHOD.md, Statistics)."""
        return self.rows["question_id"].to_numpy(dtype=object)[self.mask]

    @cached_property
    def dnorm(self) -> np.ndarray:
        return self.rows[f"dnorm_{self.loss}"].to_numpy(dtype=float, na_value=np.nan)

    @cached_property
    def rollout_ids(self) -> np.ndarray:
        return self.rows["rollout_id"].to_numpy(dtype=object)[self.mask]

    @cached_property
    def align_ci(self) -> stats.Interval:
        return stats.cluster_bootstrap(self.align, self.question_ids, resamples=self.resamples, seed=self.seed)

    @cached_property
    def walign_ci(self) -> stats.Interval:
        return stats.cluster_bootstrap(self.align, self.question_ids, self.weights, resamples=self.resamples,
                                       seed=self.seed)

    @cached_property
    def diff_ci(self) -> stats.Interval:
        """align_correct - align_incorrect, bootstrapping questions (a resample without one of the groups is dropped)."""
        statistic = stats.mean_difference(self.align, self.correct, self.incorrect)
        return stats.cluster_bootstrap_stat(statistic, self.question_ids, resamples=self.resamples, seed=self.seed)

    @cached_property
    def diff_test(self) -> stats.TestResult:
        graded = self.correct | self.incorrect  # a node with no grade belongs to neither group
        if not (self.correct.any() and self.incorrect.any()):
            return stats.TestResult(math.nan, math.nan, 0, int(graded.sum()))
        return stats.group_permutation_test(self.align[graded], self.correct[graded], self.question_ids[graded],
                                            units=self.rollout_ids[graded], permutations=self.permutations,
                                            seed=self.seed)


@dataclass(frozen=True)
class Column:
    """One aggregate column: ``compute(cell)`` returns its value; it must return NaN (not raise) on empty input."""

    name: str
    compute: Callable[[Cell], Any]


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else math.nan


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    ok = np.isfinite(weights)  # a node without a usable weight cannot enter a weighted mean
    total = float(weights[ok].sum())
    if not ok.any() or total <= 0.0:
        return math.nan
    return float(np.dot(values[ok], weights[ok]) / total)


def _true(rows: pd.DataFrame, column: str) -> np.ndarray:
    """``rows[column] is True`` as a writable numpy mask; a null counts as False."""
    # copy=True: under pandas copy-on-write the array may be a read-only view, and callers combine masks in place
    return rows[column].eq(True).to_numpy(dtype=bool, na_value=False, copy=True)


def _scorable(cell: Cell) -> np.ndarray:
    """Informative nodes where the row's direction could be computed (teacher context built, finite logits),
    whether or not that direction is zero."""
    base = _true(cell.rows, "informative")
    if cell.loss != REFERENCE_LOSS:
        base &= _true(cell.rows, "context_ok")
        if "logits_finite" in cell.rows:  # hand-made tables may leave it out: absent means finite
            base &= ~cell.rows["logits_finite"].eq(False).to_numpy(dtype=bool)
    return base


def _zero_grad(cell: Cell) -> float:
    # Denominator: nodes with an ideal signal and a teacher context, whether or not the writer stored the undefined
    # cosine of a zero vector as 0.0 or as NaN, so a zero-gradient teacher shows up as 1.0 either way.
    base = _true(cell.rows, "informative")
    if cell.loss != REFERENCE_LOSS:
        base &= _true(cell.rows, "context_ok")
    if not base.any():
        return math.nan
    return float(np.mean(cell.dnorm[base] == 0.0))


COLUMNS: list[Column] = [
    Column("questions", lambda c: int(c.rows["question_id"].nunique())),
    Column("rollouts", lambda c: int(len(c.rows[["question_id", "rollout_id"]].drop_duplicates()))),
    Column("nodes", lambda c: int(len(c.rows))),
    Column("informative", lambda c: int(_scorable(c).sum())),
    Column("no_context", lambda c: int(c.rows["context_ok"].eq(False).sum())),
    Column("align", lambda c: _mean(c.align)),
    Column("align_lo", lambda c: c.align_ci.lo),
    Column("align_hi", lambda c: c.align_ci.hi),
    Column("align_correct", lambda c: _mean(c.align[c.correct])),
    Column("align_incorrect", lambda c: _mean(c.align[c.incorrect])),
    Column("corr_minus_incorr", lambda c: _mean(c.align[c.correct]) - _mean(c.align[c.incorrect])),
    Column("diff_lo", lambda c: c.diff_ci.lo),
    Column("diff_hi", lambda c: c.diff_ci.hi),
    Column("p_corr_incorr", lambda c: c.diff_test.pvalue),
    Column("walign", lambda c: _weighted_mean(c.align, c.weights)),
    Column("walign_lo", lambda c: c.walign_ci.lo),
    Column("walign_hi", lambda c: c.walign_ci.hi),
    Column("pos_frac", lambda c: _mean((c.align > 0).astype(float))),
    Column("zero_grad", _zero_grad),
]


def informative_mask(rows: pd.DataFrame, loss: str) -> np.ndarray:
    """Nodes whose ``align_<loss>`` enters the averages: informative, teacher context built, finite alignment.

    For ``grpo`` the context gate is skipped: its direction uses no teacher, so a teacher whose context failed at
    a node must not remove that node from the teacher-independent reference row.
    """
    mask = _true(rows, "informative")
    if loss != REFERENCE_LOSS:
        mask &= _true(rows, "context_ok")
    mask &= np.isfinite(rows[f"align_{loss}"].to_numpy(dtype=float, na_value=np.nan))
    return mask


def iter_cells(nodes: pd.DataFrame, **settings):
    """Yield the :class:`Cell` of every leaderboard row, in table order before ranking.

    ``settings`` (``resamples``, ``permutations``, ``seed``) are passed to every cell.
    """
    for (task, student), group in nodes.groupby(["task", "student"], sort=False, dropna=False):
        teachers = list(pd.unique(group["teacher"]))
        for teacher in teachers:
            rows = group[group["teacher"] == teacher]
            for loss in TEACHER_LOSSES:
                yield Cell(task, student, teacher, loss, rows, informative_mask(rows, loss), **settings)
        if teachers:
            # teacher-independent: the first teacher's rows stand for all of them
            rows = group[group["teacher"] == teachers[0]]
            yield Cell(task, student, REFERENCE_TEACHER, REFERENCE_LOSS, rows, informative_mask(rows, REFERENCE_LOSS),
                       **settings)


# columns that compare rows with each other (added after the per-cell columns, see leaderboard(paired=True))
COMPARISON_COLUMNS = ("q_corr_incorr", "p_vs_leader", "behind", "accuracy")


def paired_differences(a: Cell, b: Cell) -> tuple[np.ndarray, np.ndarray]:
    """Per-question ``||g*||``-weighted mean of ``align(a) - align(b)`` over the nodes informative for both.

    Nodes are matched by (question, rollout, position), so the comparison is paired: same nodes, same questions.
    """
    def frame(cell: Cell) -> pd.DataFrame:
        rows = cell.rows.loc[cell.mask, list(NODE_KEY)].astype({"question_id": str}).copy()
        rows["align"], rows["weight"] = cell.align, cell.weights
        return rows.drop_duplicates(list(NODE_KEY))

    both = frame(a).merge(frame(b), on=list(NODE_KEY), suffixes=("_a", "_b"))
    return stats.paired_question_differences(both["align_a"], both["align_b"], both["question_id"],
                                             both["weight_a"])


def _compare_to_leader(table: pd.DataFrame, cells: list[Cell], alpha: float) -> None:
    """Fill ``p_vs_leader`` (Holm within each (task, student, loss)) and ``behind`` in place."""
    table["p_vs_leader"] = math.nan
    table["behind"] = False
    teacher_rows = table[table["loss"] != REFERENCE_LOSS]
    for _, family in teacher_rows.groupby(["task", "student", "loss"], sort=False, dropna=False):
        ranked = family["walign"].dropna()
        if len(ranked) < 2:
            continue
        leader = ranked.idxmax()
        others = [i for i in ranked.index if i != leader]
        raw = []
        for i in others:
            d, _ = paired_differences(cells[i], cells[leader])
            raw.append(stats.sign_flip_test(d, permutations=cells[i].permutations, seed=cells[i].seed).pvalue)
        adjusted = stats.holm(raw)
        table.loc[others, "p_vs_leader"] = adjusted
        behind = (adjusted < alpha) & (table.loc[others, "walign"].to_numpy() < table.at[leader, "walign"])
        table.loc[others, "behind"] = behind


def _accuracy_of(accuracy: Any, task: str, student: str, teacher: str) -> float:
    """A teacher's accuracy from the contents of ``accuracy.json``; NaN when it is not there.

    Accepted shapes: ``{teacher: acc}``, ``{teacher: {"accuracy": acc, ...}}``, either wrapped as
    ``{"teachers": ...}`` / ``{"accuracy": ...}``, or records ``[{"teacher", "accuracy", "task"?, "student"?}]``.
    """
    if isinstance(accuracy, Mapping):
        for wrapper in ("teachers", "accuracy"):
            if isinstance(accuracy.get(wrapper), (Mapping, list)):
                accuracy = accuracy[wrapper]
                break
    value = None
    if isinstance(accuracy, list):
        for record in accuracy:
            if (isinstance(record, Mapping) and record.get("teacher") == teacher
                    and record.get("task", task) == task and record.get("student", student) == student):
                value = record.get("accuracy")
    elif isinstance(accuracy, Mapping):
        value = accuracy.get(teacher)
        if isinstance(value, Mapping):
            value = value.get("accuracy")
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def leaderboard(nodes: pd.DataFrame, columns: Sequence[Column] | None = None, *, seed: int = 0,
                resamples: int = stats.RESAMPLES, permutations: int = stats.PERMUTATIONS, paired: bool = True,
                accuracy: Any = None, alpha: float = ALPHA) -> pd.DataFrame:
    """Aggregate a nodes table (``nodes.parquet`` as pandas) into the leaderboard.

    Rows are ranked by ``walign`` (descending, NaN last) within each (task, student); (task, student) groups keep
    their order of first appearance. ``paired`` appends the :data:`COMPARISON_COLUMNS` (they need ``walign`` and
    ``p_corr_incorr`` among ``columns``). ``accuracy`` (the contents of ``accuracy.json``) defaults to
    ``nodes.attrs["accuracy"]``, which :func:`load_run` sets.
    """
    columns = list(COLUMNS if columns is None else columns)
    names = [*KEY_COLUMNS, *(column.name for column in columns)]
    records, cells = [], []
    for cell in iter_cells(nodes, resamples=resamples, permutations=permutations, seed=seed):
        record: dict[str, Any] = {"task": cell.task, "student": cell.student, "teacher": cell.teacher, "loss": cell.loss}
        for column in columns:
            record[column.name] = column.compute(cell)
        records.append(record)
        cells.append(cell)
    table = pd.DataFrame.from_records(records, columns=names)
    if paired and {"walign", "p_corr_incorr"} <= set(table.columns):
        table["q_corr_incorr"] = math.nan
        for _, group in table.groupby(["task", "student"], sort=False, dropna=False):
            table.loc[group.index, "q_corr_incorr"] = stats.benjamini_hochberg(group["p_corr_incorr"])
        _compare_to_leader(table, cells, alpha)
        accuracy = nodes.attrs.get("accuracy") if accuracy is None else accuracy
        table["accuracy"] = [math.nan if row.teacher == REFERENCE_TEACHER or accuracy is None
                             else _accuracy_of(accuracy, row.task, row.student, row.teacher)
                             for row in table.itertuples()]
        table["accuracy"] = table["accuracy"].astype(float)
    if table.empty or "walign" not in table.columns:
        return table.reset_index(drop=True)
    ranked = []
    for _, group in table.groupby(["task", "student"], sort=False, dropna=False):
        ranked.append(group.sort_values("walign", ascending=False, na_position="last", kind="stable"))
    return pd.concat(ranked).reset_index(drop=True)


def select_losses(table: pd.DataFrame, losses: Sequence[str]) -> pd.DataFrame:
    """The rows of ``losses`` only (every row when ``losses`` is empty), in the table's order.

    Select after :func:`leaderboard`, not before: ``q_corr_incorr`` is corrected over every row of a (task, student),
    so the shown rows keep the values of the full table.
    """
    if not losses:
        return table
    return table[table["loss"].isin(list(losses))].reset_index(drop=True)
