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

Rendering: :func:`format_table` (md / csv / json / latex strings) and :func:`print_rich` (terminal tables).
:func:`load_run` reads a run directory back (and its ``accuracy.json``, into ``nodes.attrs["accuracy"]``).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import stats
from harness.records import LOSS_NAMES, read_nodes, read_questions

REFERENCE_LOSS = "grpo"
TEACHER_LOSSES = tuple(name for name in LOSS_NAMES if name != REFERENCE_LOSS)  # rkl, fkl, jsd, sampled
REFERENCE_TEACHER = "-"  # the grpo row belongs to no teacher
KEY_COLUMNS = ("task", "student", "teacher", "loss")
FORMATS = ("md", "csv", "json", "latex")
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
    Column("informative", lambda c: int(c.mask.sum())),
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


def check_options(*, seed: int = 0, resamples: int | None = None, permutations: int | None = None) -> dict[str, int]:
    """``--seed``/``--resamples``/``--permutations`` of the report commands checked, as :func:`leaderboard` keywords.

    ``None`` means the default (:data:`harness.stats.RESAMPLES`, :data:`harness.stats.PERMUTATIONS`). A bad value
    raises :class:`harness.runner.ConfigError` naming every bad flag, before any record is read.
    """
    settings = {"seed": seed, "resamples": stats.RESAMPLES if resamples is None else resamples,
                "permutations": stats.PERMUTATIONS if permutations is None else permutations}
    problems = [f"--{name} must be a positive integer (got {settings[name]})"
                for name in ("resamples", "permutations") if settings[name] < 1]
    if seed < 0:  # numpy seeds are non-negative
        problems.append(f"--seed must be 0 or more (got {seed})")
    if problems:
        from harness.runner import ConfigError

        raise ConfigError("Invalid statistics options: " + "; ".join(problems) + ".")
    return settings


def check_losses(names: Sequence[str], allowed: Sequence[str] = LOSS_NAMES,
                 reason: str = "run records hold alignments only for the built-in losses") -> tuple[str, ...]:
    """``--loss`` names checked against the loss registry (:data:`harness.losses.LOSSES`), duplicates dropped.

    An unknown name raises the registry's :class:`~harness.registry.RegistryError`, with its "did you mean"; so does
    a registered loss outside ``allowed`` (e.g. a plugin loss, which no run record carries), with ``reason``.
    """
    from harness.losses import resolve_loss
    from harness.registry import RegistryError

    checked: list[str] = []
    for name in names:
        resolve_loss(name)
        if name not in allowed:
            raise RegistryError(f"Loss {name!r} cannot be used here: {reason}. Choose --loss among "
                                f"{', '.join(allowed)}.")
        if name not in checked:
            checked.append(name)
    return tuple(checked)


def select_losses(table: pd.DataFrame, losses: Sequence[str]) -> pd.DataFrame:
    """The rows of ``losses`` only (every row when ``losses`` is empty), in the table's order.

    Select after :func:`leaderboard`, not before: ``q_corr_incorr`` is corrected over every row of a (task, student),
    so the shown rows keep the values of the full table.
    """
    if not losses:
        return table
    return table[table["loss"].isin(list(losses))].reset_index(drop=True)


# ---------------------------------------------------------------- rendering

# interval columns shown next to their estimate in the terminal: estimate -> (lo, hi); align's own interval is left
# to the file formats, so that the table fits a 160-column terminal
INTERVALS = {"walign": ("walign_lo", "walign_hi"), "corr_minus_incorr": ("diff_lo", "diff_hi")}
RICH_HIDDEN = ("task", "student", "p_corr_incorr", "align_lo", "align_hi")
# counts stated once in the caption, shown as columns only where they differ between rows
CAPTION_COUNTS = ("questions", "rollouts", "nodes", "no_context")


def _float_columns(df: pd.DataFrame) -> list[str]:
    return [name for name in df.columns if pd.api.types.is_float_dtype(df[name])]


def _is_pvalue(name: str) -> bool:
    # p-values keep 3 significant digits: 3 decimals would print a strong result (p = 1e-4) as 0.000
    return name.startswith(("p_", "q_"))


def _round(name: str, value: float) -> float:
    return float(f"{value:.3g}") if _is_pvalue(name) else round(float(value), 3)


def _with_missing(df: pd.DataFrame) -> pd.DataFrame:
    """Float columns as objects with NaN -> None, so tabulate prints its ``missingval`` instead of "nan"."""
    out = df.copy()
    for name in _float_columns(out):
        # dtype=object: a plain list would be re-inferred as float64, turning None back into NaN ("nan" in the table)
        out[name] = pd.Series([None if pd.isna(v) else float(v) for v in out[name]], index=out.index, dtype=object)
    return out


def format_table(df: pd.DataFrame, fmt: str) -> str:
    """Render a leaderboard as ``md`` (GitHub), ``csv``, ``json`` (records, NaN -> null) or ``latex`` (booktabs).

    Floats are rounded to 3 decimals in every format, p-values (``p_*``, ``q_*``) to 3 significant digits.
    """
    from tabulate import tabulate

    floatfmt = [".3g" if _is_pvalue(name) else ".3f" for name in df.columns]
    if fmt == "md":
        return tabulate(_with_missing(df), headers="keys", tablefmt="github", floatfmt=floatfmt, showindex=False,
                        missingval="—")
    if fmt == "latex":
        # "--" rather than an em dash: pdflatex without unicode input chokes on U+2014
        return tabulate(_with_missing(df), headers="keys", tablefmt="latex_booktabs", floatfmt=floatfmt,
                        showindex=False, missingval="--")
    if fmt == "csv":
        out = df.copy()
        for name in _float_columns(out):
            out[name] = [math.nan if pd.isna(v) else _round(name, v) for v in out[name]]
        return out.to_csv(index=False)
    if fmt == "json":
        floats = set(_float_columns(df))
        records = [
            {
                name: (None if pd.isna(value) else _round(name, value)) if name in floats
                else (value.item() if isinstance(value, np.generic) else value)
                for name, value in row.items()
            }
            for row in df.to_dict(orient="records")
        ]
        return json.dumps(records, indent=2, allow_nan=False)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _cell_text(value: Any, name: str = "") -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "—"
        return f"{value:.3g}" if _is_pvalue(name) else f"{value:.3f}"
    return str(value)


def _interval_text(row: pd.Series, name: str) -> str:
    lo, hi = (row[bound] for bound in INTERVALS[name])
    text = _cell_text(row[name])
    if pd.isna(lo) or pd.isna(hi):
        return text
    return f"{row[name]:.2f} [{lo:.2f},{hi:.2f}]"


def _count_text(values: pd.Series) -> str:
    lo, hi = int(values.min()), int(values.max())
    return str(lo) if lo == hi else f"{lo}–{hi}"


# terminal headers: short enough that the table fits a wide terminal
RICH_HEADERS = {"questions": "q", "rollouts": "roll", "nodes": "nodes", "informative": "inform", "no_context": "no ctx",
                "walign": "walign [95% CI]", "align_correct": "align ok",
                "align_incorrect": "align bad", "corr_minus_incorr": "ok − bad [95% CI]", "p_corr_incorr": "p ok/bad",
                "q_corr_incorr": "q ok/bad (BH)", "p_vs_leader": "p vs lead (Holm)", "pos_frac": "pos",
                "zero_grad": "zero d", "accuracy": "acc"}


def print_rich(df: pd.DataFrame, console=None) -> None:
    """Print one rich Table per (task, student), with n stated in the caption and the zero-gradient footnote.

    Interval bounds are shown next to their estimate (``INTERVALS``) rather than as columns of their own.
    """
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if df.empty:
        console.print("(empty leaderboard: no nodes)")
        return
    bounds = {bound for name, pair in INTERVALS.items() if name in df.columns and set(pair) <= set(df.columns)
              for bound in pair}
    # the terminal shows only the BH-corrected ok/bad p-value (the raw one is in every file format)
    columns = [name for name in df.columns if name not in RICH_HIDDEN and name not in bounds]
    if "accuracy" in columns and df["accuracy"].isna().all():
        columns.remove("accuracy")  # no accuracy.json: an all-dash column says nothing
    for (task, student), group in df.groupby(["task", "student"], sort=False, dropna=False):
        shown = [name for name in columns if name not in CAPTION_COUNTS or group[name].nunique(dropna=False) > 1]
        has_zero = "zero_grad" in group.columns and bool((group["zero_grad"] == 1.0).any())
        caption = None
        if {"questions", "rollouts", "informative"} <= set(group.columns):
            caption = (f"n = {_count_text(group['questions'])} questions · {_count_text(group['rollouts'])} rollouts"
                       f" · {_count_text(group['informative'])} informative nodes")
            if "nodes" in group.columns:
                caption += f" (of {_count_text(group['nodes'])})"
            if "no_context" in group.columns and group["no_context"].max() > 0:
                caption += f" · {_count_text(group['no_context'])} without teacher context"
        table = Table(title=f"{task} · student {student}", caption=caption)
        for name in shown:
            # interval cells stay on one line; a wrapped "[lo,\n hi]" is hard to read
            numeric = pd.api.types.is_numeric_dtype(group[name]) and not pd.api.types.is_bool_dtype(group[name])
            table.add_column(RICH_HEADERS.get(name, name), justify="right" if numeric else "left",
                             no_wrap=not numeric or name in INTERVALS)
        for _, row in group.iterrows():
            cells = [_interval_text(row, name) if INTERVALS.get(name, ("",))[0] in bounds else _cell_text(row[name], name)
                     for name in shown]
            if has_zero and row.get("zero_grad") == 1.0 and "teacher" in shown:
                # mark the row, keep the number itself plain: 1.000 is a true value, not an error
                cells[shown.index("teacher")] += " †"
            table.add_row(*cells)
        console.print(table)
        if has_zero:
            console.print(f"† {ZERO_GRAD_NOTE}")
        if "behind" in shown and bool(group["behind"].any()):
            console.print("behind: significantly below the loss's leader by walign (paired sign-flip test over "
                          f"questions, Holm-corrected, alpha {ALPHA})")


def format_sections(sections: Mapping[str, pd.DataFrame], fmt: str, console=None) -> str | None:
    """Several named tables (``opd analyze``, ``opd compare``) in one output: ``rich`` prints (returns None), ``json``
    is one object keyed by section, the other formats put a heading line before each table."""
    if fmt == "rich":
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        for name, df in sections.items():
            table = Table(title=name)
            for column in df.columns:
                table.add_column(str(column), justify="right" if pd.api.types.is_numeric_dtype(df[column]) else "left")
            for _, row in df.iterrows():
                table.add_row(*(_cell_text(row[column], str(column)) for column in df.columns))
            console.print(table)
        return None
    if fmt == "json":
        return json.dumps({name: json.loads(format_table(df, "json")) for name, df in sections.items()}, indent=2)
    heading = {"md": "## {}", "latex": "% {}", "csv": "# {}"}[fmt] if fmt in FORMATS else None
    if heading is None:
        raise ValueError(f"unknown format {fmt!r}; expected rich or one of {', '.join(FORMATS)}")
    return "\n\n".join(f"{heading.format(name)}\n\n{format_table(df, fmt)}" for name, df in sections.items())


# ---------------------------------------------------------------- run directories


def load_run(run_dir) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """``(nodes, questions, run_json)`` of a run directory; a missing ``run.json`` reads as ``{}``.

    An ``accuracy.json`` next to the records is read into ``nodes.attrs["accuracy"]``.
    """
    run_dir = Path(run_dir)
    for name in ("nodes.parquet", "questions.parquet"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(
                f"{run_dir / name} not found: {run_dir} is not a finished run directory "
                f"(create one with `opd run --out RUN_DIR`)"
            )
    run_json_path = run_dir / "run.json"
    run_json = json.loads(run_json_path.read_text()) if run_json_path.is_file() else {}
    nodes = read_nodes(run_dir)
    accuracy_path = run_dir / "accuracy.json"
    if accuracy_path.is_file():
        # carried on the frame so that `leaderboard(nodes)` (as the CLI calls it) shows the accuracy column
        nodes.attrs["accuracy"] = json.loads(accuracy_path.read_text())
    return nodes, read_questions(run_dir), run_json
