"""Leaderboard: per-node alignment records aggregated per (task, student, teacher, loss) (METHOD.md, Alignment and
Statistics).

One row per teacher and teacher loss (``rkl``, ``fkl``, ``jsd``, ``sampled``) plus one ``grpo`` reference row per
(task, student). GRPO's direction has no teacher in it, so every teacher carries the same ``align_grpo`` values; the
reference row is computed once, from the first teacher's rows, and labelled teacher ``"-"``.

Every estimate states the n it rests on, and its interval and test come from one procedure
(:mod:`harness.reports.stats`: question-level sign-flip test and its inversion; no interval below 10 questions):

- ``align`` / ``walign`` (``||g*||``-weighted) over the row's informative nodes whose alignment is defined, with
  ``align_questions`` / ``align_nodes``; a zero direction (``self``; ``grpo`` where all G rollouts got one grade) has
  no alignment and is counted in ``zero_d`` instead;
- ``align_correct`` / ``align_incorrect`` / ``align_unparsed``: the pooled means on correct paths, on paths with a
  wrong answer, and on paths with no parseable answer (``rollout_unparsed``: a third outcome, never counted as a wrong
  answer), each with its interval and its own ``*_questions`` / ``*_nodes``;
- ``ok_minus_bad``: the *within-question* contrast, over the nodes past the divergence of the question's paths
  (``prefix_shared`` False: a node whose prefix a rollout of another outcome shares is the same state on both sides;
  unknown counts as shared) and over the questions with such nodes on a correct and on an incorrect path, the mean of
  ``mean(align | correct) - mean(align | incorrect)``; interval, sign-flip test ``p_ok_minus_bad``, its
  Benjamini-Hochberg ``q_ok_minus_bad`` over the rows of one (task, student) that rest on 10 questions or more,
  ``ok_bad_questions`` / ``ok_bad_nodes`` and ``mde_ok_minus_bad`` (the minimum detectable effect at this n, METHOD
  Power); ``ok_bad_verdict`` reads them, ``not testable`` where no question qualifies (no estimate, interval or MDE);
- ``reliability``: split-half (Spearman-Brown) reliability of the row's alignments (METHOD, Reliability);
- ``rank`` and ``group``: decided on paired evidence (METHOD, Which teacher leads; :func:`paired_order`): paired
  tests over **all** teacher pairs of a (task, student, loss) with 10 or more shared questions, Holm-corrected over
  them (:func:`pairs`; a pair with fewer is ``not tested``, out of the family, listed in ``untested``); the leader
  (rank 1, group "a") is the teacher no significant test puts behind another, ordered among such teachers by walign
  on the questions they share; teachers that no significant test separates share a letter; a teacher with no tested
  pair is unranked (group ``not tested``). ``walign_shared`` is each ranked teacher's walign on the nodes every ranked
  teacher of the family shares (``shared_questions``), beside ``walign`` over its own; ``behind`` names the teachers
  significantly ahead of the row (the direction is the sign of the tested difference, never the ranking);
- ``walign_by_gold``: where the gold answer is categorical (:func:`categorical`), walign per gold label (the full
  table with intervals: :func:`by_gold`, ``Leaderboard.gold``): alignment can follow the answer prior;
- ``accuracy``: the teacher's in-context accuracy, from the run's ``accuracy.json`` when there is one.

The per-row columns are :class:`Column` specs evaluated on a :class:`Cell`, so a user can add one::

    leaderboard(nodes, columns=[*COLUMNS, Column("median_align", lambda c: float(np.median(c.align)))])

Rendering lives in :mod:`harness.render.tables`, reading a run directory back in :func:`harness.storage.records.load_run`, and
the checks of the report commands' flags in :mod:`harness.cli.options`.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from harness.reports import stats
from harness.reports.accuracy_report import AccuracyReport, report_from_dict
from harness.storage.records import LOSS_NAMES, REFERENCE_LOSS

TEACHER_LOSSES = tuple(name for name in LOSS_NAMES if name != REFERENCE_LOSS)  # rkl, fkl, jsd, sampled
REFERENCE_TEACHER = "-"  # the grpo row belongs to no teacher
KEY_COLUMNS = ("task", "student", "teacher", "loss")
NODE_KEY = ("question_id", "rollout_id", "position")  # one node of one rollout: the pairing key across teachers
ALPHA = stats.ALPHA
ZERO_GRAD_NOTE = ("zero distillation direction (teacher = student): no alignment is defined, so its nodes enter no "
                  "mean; the zero d column (--wide) counts them")
VERDICTS = ("ahead", "behind", "inconclusive", "not tested")


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
    def unparsed(self) -> np.ndarray:
        """Per masked node: True on a path whose response has no parseable answer (a third outcome, counted apart
        from a wrong answer); where the records do not say (``rollout_unparsed`` null), not unparsed."""
        if "rollout_unparsed" not in self.rows:
            return np.zeros(int(self.mask.sum()), dtype=bool)
        return self.rows["rollout_unparsed"].eq(True).to_numpy(dtype=bool, na_value=False)[self.mask]

    @cached_property
    def incorrect(self) -> np.ndarray:
        """Per masked node: True on a path with a wrong (parsed) answer."""
        return self.rows["rollout_correct"].eq(False).to_numpy(dtype=bool, na_value=False)[self.mask] & ~self.unparsed

    @cached_property
    def past_divergence(self) -> np.ndarray:
        """Per masked node: its prefix is known not to be shared with a rollout of another outcome
        (``prefix_shared`` False), so the node can separate correct from incorrect paths. Unknown (null, or records
        without the column) counts as shared: such a node enters no contrast."""
        if "prefix_shared" not in self.rows:
            return np.zeros(int(self.mask.sum()), dtype=bool)
        return self.rows["prefix_shared"].eq(False).to_numpy(dtype=bool, na_value=False)[self.mask]

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
    def unparsed_estimate(self) -> stats.Estimate:
        return stats.cluster_mean(self.align[self.unparsed], self.question_ids[self.unparsed], **self.options.test)

    def ok_minus_bad_with(self, **test) -> stats.Estimate:
        """METHOD's within-question contrast over the questions with informative nodes past the divergence
        (:attr:`past_divergence`) on both a correct and an incorrect path (unparsed paths are neither); no
        question: no estimate (not testable). ``test``: keywords of the sign-flip test (default the cell's)."""
        used = self.past_divergence & (self.correct | self.incorrect)
        frame = pd.DataFrame({"q": self.question_ids[used], "align": self.align[used], "correct": self.correct[used]})
        means = frame.groupby(["q", "correct"], sort=False)["align"].mean().unstack()
        if True not in means.columns or False not in means.columns:
            return stats.Estimate(math.nan, math.nan, math.nan, math.nan, 0, 0)
        contrast = (means[True] - means[False]).dropna()
        estimate = stats.mean_of_questions(contrast.to_numpy(), **(test or self.options.test))
        nodes = int(frame.q.isin(contrast.index).sum())
        return dataclasses.replace(estimate, n=nodes)

    @cached_property
    def ok_minus_bad_estimate(self) -> stats.Estimate:
        return self.ok_minus_bad_with()

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
    *_estimate_columns("align_unparsed", "unparsed_estimate", "unparsed"),
    *_estimate_columns("ok_minus_bad", "ok_minus_bad_estimate", None),
    Column("p_ok_minus_bad", lambda c: c.ok_minus_bad_estimate.pvalue),
    Column("ok_bad_questions", lambda c: c.ok_minus_bad_estimate.questions),
    Column("ok_bad_nodes", lambda c: c.ok_minus_bad_estimate.n),
    # not testable (no question qualifies): no MDE either
    Column("mde_ok_minus_bad", lambda c: stats.minimum_detectable_effect(c.ok_minus_bad_estimate,
                                                                         alpha=c.options.alpha)
           if c.ok_minus_bad_estimate.questions else math.nan),
    Column("pos_frac", lambda c: _mean((c.align > 0).astype(float))),
    Column("reliability", lambda c: c.reliability[0]),
    Column("reliability_nodes", lambda c: c.reliability[1]),
]

# columns that compare rows with each other (added after the per-cell columns, see leaderboard(paired=True))
COMPARISON_COLUMNS = ("q_ok_minus_bad", "ok_bad_verdict", "walign_shared", "shared_questions", "rank", "group",
                      "behind", "untested", "walign_by_gold", "accuracy")


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

PAIR_COLUMNS = ("task", "student", "loss", "teacher", "other", "diff", "diff_lo", "diff_hi", "p", "p_at_floor",
                "draws", "p_holm", "questions", "nodes", "mde", "verdict")
NOT_TESTED = "not tested"  # a pair with fewer than MIN_QUESTIONS shared questions: no test, not "not separated"
NOT_TESTABLE = "not testable"  # ok_minus_bad where no question has nodes past the divergence of its paths


def pair_estimate(a: Cell, b: Cell, permutations: int | None = None) -> stats.Estimate:
    """``walign(a) - walign(b)`` over the nodes both have an alignment at (matched by question, rollout,
    position; weights ``||g*||``, which do not depend on the teacher), with its paired question-level test."""
    both = a.keyed.join(b.keyed[["align"]].rename(columns={"align": "align_other"}), how="inner")
    test = a.options.test if permutations is None else {**a.options.test, "permutations": permutations}
    return stats.paired_difference(both["align"], both["align_other"], both.index.get_level_values(0),
                                   both["weight"], **test)


def pair_verdict(estimate: stats.Estimate, p_holm: float, alpha: float) -> str:
    """``ahead`` / ``behind`` (the sign of the tested difference, significant after Holm), ``inconclusive``
    (not significant: the difference may be anything below the MDE, never read as "no difference"), or
    ``not tested`` (fewer than :data:`harness.reports.stats.MIN_QUESTIONS` shared questions: left out of the Holm family,
    which says nothing about whether the two differ)."""
    if estimate.too_few or not math.isfinite(estimate.estimate):
        return NOT_TESTED
    if math.isfinite(p_holm) and p_holm < alpha:
        return "ahead" if estimate.estimate > 0 else "behind"
    return "inconclusive"


def pairs(cells: Sequence[Cell], walign: Sequence[float]) -> pd.DataFrame:
    """Every teacher pair of each (task, student, loss), Holm-corrected over all pairs of that family that rest on
    :data:`harness.reports.stats.MIN_QUESTIONS` shared questions or more (the others are ``not tested`` and stay out of the
    family); Monte Carlo p-values near the decision are drawn again with more permutations until it is stable
    (:func:`harness.reports.stats.settle`).

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
        couples = [(ranked[i], ranked[j]) for i in range(len(ranked)) for j in range(i + 1, len(ranked))]
        estimates = [pair_estimate(cells[first], cells[second]) for first, second in couples]
        alpha = cells[members[0]].options.alpha
        estimates, adjusted = stats.settle(
            estimates, lambda k, permutations: pair_estimate(cells[couples[k][0]], cells[couples[k][1]], permutations),
            stats.holm, testable=[not e.too_few for e in estimates], alpha=alpha)
        for (first, second), estimate, p_holm in zip(couples, estimates, adjusted):
            records.append({"task": task, "student": student, "loss": loss, "teacher": cells[first].teacher,
                            "other": cells[second].teacher, "diff": estimate.estimate, "diff_lo": estimate.lo,
                            "diff_hi": estimate.hi, "p": estimate.pvalue, "p_at_floor": estimate.at_floor,
                            "draws": estimate.draws,  # Monte Carlo sign flips behind p (0: exact)
                            "p_holm": float(p_holm), "questions": estimate.questions, "nodes": estimate.n,
                            "mde": stats.minimum_detectable_effect(estimate, alpha=alpha),
                            "verdict": pair_verdict(estimate, float(p_holm), alpha)})
    return pd.DataFrame.from_records(records, columns=list(PAIR_COLUMNS))


def _walign_on(cell: Cell, index: pd.Index) -> float:
    """The cell's walign over the nodes of ``index`` (a subset of its keyed nodes)."""
    frame = cell.keyed.loc[index]
    total = float(frame["weight"].sum())
    return float((frame["align"] * frame["weight"]).sum() / total) if total > 0 else math.nan


def _shared_index(cells: Sequence[Cell]) -> pd.Index:
    index = cells[0].keyed.index
    for cell in cells[1:]:
        index = index.intersection(cell.keyed.index)
    return index


def paired_order(family: Mapping[str, Cell], verdicts: pd.DataFrame) -> tuple[list[str], list[str]]:
    """``(ranked, unranked)`` teachers of one (task, student, loss) family, decided on paired evidence (METHOD,
    Which teacher leads).

    Teachers with no tested pair (every pair ``not tested``) are unranked. The ranked ones go in tiers: the first
    tier holds the teachers that no significant paired test puts behind another remaining teacher (the leader
    candidates), the next tier the same among the rest, and so on (a cycle of significant verdicts, possible on
    different node sets, becomes one tier). Inside a tier teachers go by walign on the nodes every member of the
    tier shares (ties and an empty intersection: by walign over each teacher's own nodes). The leader is the first.
    """
    ahead_of: dict[str, set[str]] = {name: set() for name in family}  # teacher -> the teachers ahead of it
    tested: set[str] = set()
    for row in verdicts.itertuples():
        if row.verdict != NOT_TESTED:
            tested |= {row.teacher, row.other}
        if row.verdict == "ahead":
            ahead_of[row.other].add(row.teacher)
        elif row.verdict == "behind":
            ahead_of[row.teacher].add(row.other)
    remaining = [name for name in family if name in tested]
    unranked = [name for name in family if name not in tested]
    order: list[str] = []
    while remaining:
        tier = [name for name in remaining if not ahead_of[name] & set(remaining)] or list(remaining)
        shared = _shared_index([family[name] for name in tier])
        own = {name: family[name].walign_estimate.estimate for name in tier}
        on_shared = {name: _walign_on(family[name], shared) if len(shared) else math.nan for name in tier}
        tier.sort(key=lambda name: (-np.nan_to_num(on_shared[name], nan=-np.inf), -own[name]))
        order += tier
        remaining = [name for name in remaining if name not in tier]
    return order, unranked


def _groups_and_behind(table: pd.DataFrame, pair_table: pd.DataFrame, cells: Sequence[Cell]) -> None:
    """Fill ``walign_shared``, ``shared_questions``, ``rank``, ``group``, ``behind`` and ``untested`` in place."""
    for name, default in (("walign_shared", math.nan), ("shared_questions", 0), ("rank", math.nan), ("group", ""),
                          ("behind", ""), ("untested", "")):
        table[name] = default
    by_key = {(c.task, c.student, c.teacher, c.loss): c for c in cells}
    teacher_rows = table[(table["loss"] != REFERENCE_LOSS) & table["walign"].notna()]
    for (task, student, loss), family_rows in teacher_rows.groupby(["task", "student", "loss"], sort=False):
        family = {row.teacher: by_key[(task, student, row.teacher, loss)] for row in family_rows.itertuples()}
        verdicts = pair_table[(pair_table.task == task) & (pair_table.student == student) & (pair_table.loss == loss)]
        ranked, unranked = paired_order(family, verdicts)
        # the population beside each teacher's own: the nodes every ranked teacher has (an unranked one, with no
        # tested pair, is on too few questions to narrow it)
        shared = _shared_index([family[name] for name in ranked]) if ranked else pd.Index([])
        separated = {frozenset((row.teacher, row.other)) for row in verdicts.itertuples()
                     if row.verdict in ("ahead", "behind")}
        groups = stats.rank_groups(ranked, lambda a, b: frozenset((a, b)) in separated) if ranked else {}
        ahead_of: dict[str, list[str]] = {name: [] for name in family}
        untested: dict[str, list[str]] = {name: [] for name in family}
        for row in verdicts.itertuples():
            if row.verdict == "ahead":
                ahead_of[row.other].append(row.teacher)
            elif row.verdict == "behind":
                ahead_of[row.teacher].append(row.other)
            elif row.verdict == NOT_TESTED:
                untested[row.teacher].append(row.other)
                untested[row.other].append(row.teacher)
        questions = len(set(shared.get_level_values(0))) if len(shared) else 0
        for index, row in family_rows.iterrows():
            name = row.teacher
            table.at[index, "walign_shared"] = _walign_on(family[name], shared) if len(shared) and name in ranked \
                else math.nan
            table.at[index, "shared_questions"] = questions
            table.at[index, "rank"] = ranked.index(name) + 1 if name in ranked else math.nan
            table.at[index, "group"] = groups.get(name, NOT_TESTED)
            table.at[index, "behind"] = ", ".join(ahead_of[name])
            table.at[index, "untested"] = ", ".join(untested[name])


def ok_bad_verdict(row: Mapping[str, Any], alpha: float) -> str:
    """``ok > bad`` / ``ok < bad`` (BH-significant within-question contrast), ``inconclusive``, ``too few
    questions`` (1 to 9 questions with nodes past the divergence on both kinds of path), or ``not testable`` (no
    such question: the nodes all sit where correct and incorrect paths share the state)."""
    if not row["ok_bad_questions"] > 0:
        return NOT_TESTABLE
    if not row["ok_bad_questions"] >= stats.MIN_QUESTIONS or not math.isfinite(row["ok_minus_bad"]):
        return "too few questions"
    if math.isfinite(row["q_ok_minus_bad"]) and row["q_ok_minus_bad"] < alpha:
        return "ok > bad" if row["ok_minus_bad"] > 0 else "ok < bad"
    return "inconclusive"


# ---------------------------------------------------------------- categorical answers

CATEGORICAL_MAX_LABELS = 10  # a gold that takes at most this many values, each on 2+ questions on average


def categorical(golds: Sequence[Any]) -> bool:
    """Whether a cell's gold answers (one per question) take few values (BoolQ yes/no, MMLU letters): at most
    :data:`CATEGORICAL_MAX_LABELS` distinct values and at least two questions per value on average."""
    values = [g for g in golds if g is not None and not (isinstance(g, float) and math.isnan(g))]
    labels = len(set(values))
    return 1 <= labels <= CATEGORICAL_MAX_LABELS and 2 * labels <= len(values)


GOLD_COLUMNS = ("task", "student", "teacher", "loss", "gold", "walign", "walign_lo", "walign_hi", "questions",
                "nodes")


def by_gold(cells: Sequence[Cell]) -> pd.DataFrame:
    """walign per gold label of every teacher row of a cell whose gold is categorical (:func:`categorical`), with
    its interval and n: where the answer takes few values, alignment can follow the answer prior rather than the
    question (METHOD, Categorical answers). Cells without a ``gold`` column or a categorical gold give no rows."""
    records = []
    for cell in cells:
        if cell.loss == REFERENCE_LOSS or "gold" not in cell.rows or not cell.mask.any():
            continue
        golds = cell.rows.drop_duplicates("question_id")["gold"].tolist()
        if not categorical(golds):
            continue
        gold = cell.rows["gold"].to_numpy(dtype=object)[cell.mask]
        for label in sorted({g for g in gold if isinstance(g, str)}):
            chosen = gold == label
            estimate = stats.cluster_mean(cell.align[chosen], cell.question_ids[chosen], cell.weights[chosen],
                                          **cell.options.test)
            records.append({"task": cell.task, "student": cell.student, "teacher": cell.teacher, "loss": cell.loss,
                            "gold": label, "walign": estimate.estimate, "walign_lo": estimate.lo,
                            "walign_hi": estimate.hi, "questions": estimate.questions, "nodes": estimate.n})
    return pd.DataFrame.from_records(records, columns=list(GOLD_COLUMNS))


def _gold_text(rows: pd.DataFrame) -> str:
    """``no 0.80 (20 q) · yes -0.70 (30 q)``: a leaderboard row's walign per gold label."""
    return " · ".join(f"{r.gold} {r.walign:.2f} ({int(r.questions)} q)" for r in rows.itertuples())


# ---------------------------------------------------------------- the table


def _accuracy_report(accuracy: Any) -> AccuracyReport | None:
    """The run's accuracy report: given, or parsed from ``accuracy.json``'s contents (one schema, checked:
    :mod:`harness.reports.accuracy_report`)."""
    if accuracy is None or isinstance(accuracy, AccuracyReport):
        return accuracy
    return report_from_dict(accuracy, "accuracy.json")


@dataclass(frozen=True)
class Leaderboard:
    """The leaderboard (one row per (task, student, teacher, loss)) and every teacher pair behind its groups."""

    table: pd.DataFrame
    pairs: pd.DataFrame
    gold: pd.DataFrame = dataclasses.field(default_factory=lambda: pd.DataFrame(columns=list(GOLD_COLUMNS)))


def build(nodes: pd.DataFrame, columns: Sequence[Column] | None = None, *, options: stats.Options | None = None,
          paired: bool = True, accuracy: Any = None) -> Leaderboard:
    """Aggregate a nodes table (``nodes.parquet`` as pandas) into the leaderboard and its pair table.

    Within each (task, student) rows go by loss (``rkl``, ``fkl``, ``jsd``, ``sampled``, ``grpo``), then by the
    paired ``rank`` (:func:`paired_order`; unranked teachers after), then by ``walign`` (descending, NaN last);
    (task, student) groups keep their order of first appearance. ``paired`` appends the
    :data:`COMPARISON_COLUMNS` (they need the default columns). ``accuracy`` (an
    :class:`~harness.reports.accuracy_report.AccuracyReport`, or the contents of ``accuracy.json``) defaults to
    ``nodes.attrs["accuracy"]``, which :func:`harness.storage.records.load_run` sets.
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
    gold_table = pd.DataFrame(columns=list(GOLD_COLUMNS))
    if paired and not table.empty and {"walign", "ok_minus_bad", "p_ok_minus_bad"} <= set(table.columns):
        table["q_ok_minus_bad"] = math.nan
        for _, group in table.groupby(["task", "student"], sort=False, dropna=False):
            # BH over the rows of the (task, student) whose contrast can reach a verdict; Monte Carlo p-values near
            # the decision drawn again with more permutations
            members = list(group.index)
            estimates, adjusted = stats.settle(
                [cells[i].ok_minus_bad_estimate for i in members],
                lambda k, permutations: cells[members[k]].ok_minus_bad_with(
                    **{**options.test, "permutations": permutations}),
                stats.benjamini_hochberg, testable=[cells[i].ok_minus_bad_estimate.questions >= stats.MIN_QUESTIONS
                                                    for i in members], alpha=options.alpha)
            table.loc[members, "p_ok_minus_bad"] = [e.pvalue for e in estimates]
            table.loc[members, "q_ok_minus_bad"] = adjusted
        table["ok_bad_verdict"] = [ok_bad_verdict(row, options.alpha) for row in table.to_dict("records")]
        pair_table = pairs(cells, table["walign"].to_numpy(dtype=float))
        _groups_and_behind(table, pair_table, cells)
        gold_table = by_gold(cells)
        texts = {key: _gold_text(rows) for key, rows in gold_table.groupby(["task", "student", "teacher", "loss"],
                                                                             sort=False)}
        table["walign_by_gold"] = [texts.get((r.task, r.student, r.teacher, r.loss), "") for r in table.itertuples()]
        report = _accuracy_report(nodes.attrs.get("accuracy") if accuracy is None else accuracy)
        table["accuracy"] = [math.nan if row.teacher == REFERENCE_TEACHER or report is None
                             else report.accuracy_of(row.task, row.student, row.teacher)
                             for row in table.itertuples()]
        table["accuracy"] = table["accuracy"].astype(float)
    if table.empty or "walign" not in table.columns:
        return Leaderboard(table.reset_index(drop=True), pair_table, gold_table)
    # within a (task, student): losses in LOSS_NAMES order (rank groups are per loss), then the paired rank, then
    # walign, best first
    table["_loss_order"] = table["loss"].map({name: i for i, name in enumerate(LOSS_NAMES)}).fillna(len(LOSS_NAMES))
    keys, ascending = (["_loss_order", "rank", "walign"], [True, True, False]) if "rank" in table else (
        ["_loss_order", "walign"], [True, False])
    ranked = [group.sort_values(keys, ascending=ascending, na_position="last", kind="stable")
              .drop(columns="_loss_order")
              for _, group in table.groupby(["task", "student"], sort=False, dropna=False)]
    return Leaderboard(pd.concat(ranked).reset_index(drop=True), pair_table, gold_table)


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
