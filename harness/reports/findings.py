"""``opd findings``: the paper's five findings (METHOD.md, "Findings the paper reports") tested on runs.

Each finding becomes one or more tests with a stated direction, computed at the question level with
:mod:`harness.reports.stats` on one headline loss (``rkl`` by default, the paper's GKD gradient), teachers whose direction is
zero (the ``self`` control) left out:

1. ``incorrect > correct``: per (task, student), the within-question contrast ``ok_minus_bad`` of every teacher,
   averaged over the teachers of each question, then over questions; the paper's direction is negative. Like the
   leaderboard's, it uses only nodes past the divergence of the question's paths (``prefix_shared`` False) and
   counts unparsed paths on neither side; with no such question it is ``not testable``.
2. ``self contexts for the smallest student``: per task, for two students that both have the external teacher (the
   ``model:`` teacher), the per-question advantage of the self-distillation contexts (their mean alignment at a
   node) over the external teacher, smaller student minus larger; the paper's direction is positive (self contexts
   gain on the external teacher as the student shrinks). ``smaller`` follows ``sizes`` (e.g. @int4 < @int8).
3. ``wrong demonstrations hurt``: per (task, student), ``walign(self:correct-wrong) - walign(<correct-only>)`` on
   the nodes both share (the leaderboard's pair test), for each correct-only context present (``self:self-demo``,
   ``self:correct-demo``); negative.
4. ``divergence goes with alignment``: per (task, student), Spearman correlation of alignment with ``KL(p||q)``
   (positive), ``L2`` (positive) and ``cos(p, q)`` (negative) over every teacher's nodes.
5. ``alignment rises with depth``: per (task, student), Spearman correlation of alignment with normalised depth,
   controlling for the entropy nodes are selected by; positive. And "more clearly for smaller students": per task,
   for each pair of students adjacent in ``sizes``, that correlation of the smaller minus the larger's, with one
   question bootstrap over both (a question drawn brings its nodes of both students: paired where they share
   questions); positive.

Every row has the paper's direction, the estimate, its interval, p (``p_at_floor``: a Monte Carlo p at its floor
``1/(permutations+1)``, so at most that), ``p_holm`` (Holm over every claim that rests on 10 questions or more: the
others can reach no verdict and stay out of the family; Monte Carlo p-values near the decision are drawn again with
more permutations, :func:`harness.reports.stats.settle`), the n in questions, the minimum detectable effect where the test is
a mean (findings 1-3), and a verdict: ``reproduced`` / ``opposite`` (significant after Holm, by the sign of the
estimate), ``inconclusive``, ``too few questions`` (below 10) or ``not testable`` (finding 1 without a question
that has nodes past the divergence).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from harness.api.model_specs import bits_per_weight
from harness.reports import stats
from harness.reports.leaderboard import NOT_TESTABLE, REFERENCE_LOSS, informative_mask, iter_cells, pair_estimate
from harness.storage.records import COS_PQ, KL_STUDENT_TEACHER, L2

SELF_CONTEXTS = ("self:correct-demo", "self:self-demo", "self:correct-wrong", "self:summary")
WRONG, CORRECT_ONLY = "self:correct-wrong", ("self:self-demo", "self:correct-demo")
COLUMNS = ["finding", "test", "task", "student", "direction", "estimate", "lo", "hi", "p", "p_at_floor", "p_holm",
           "questions", "mde", "verdict"]


def _row(finding: str, test: str, task: str, student: str, direction: str, estimate: stats.Estimate,
         mde: float = math.nan, redo: Callable[[int], stats.Estimate] | None = None) -> dict[str, Any]:
    """One claim; ``redo(permutations)`` recomputes a sign-flip estimate with more draws (:func:`stats.settle`)."""
    return {"finding": finding, "test": test, "task": task, "student": student, "direction": direction,
            "estimate": estimate.estimate, "lo": estimate.lo, "hi": estimate.hi, "p": estimate.pvalue,
            "questions": estimate.questions, "mde": mde, "_estimate": estimate, "_redo": redo}


def _update(row: dict[str, Any], estimate: stats.Estimate) -> None:
    row.update(estimate=estimate.estimate, lo=estimate.lo, hi=estimate.hi, p=estimate.pvalue, _estimate=estimate)


def _scored(group: pd.DataFrame, loss: str) -> pd.DataFrame:
    """The rows of teachers with a defined alignment for ``loss``, masked to those nodes."""
    return group[informative_mask(group, loss)]


def _contrast_nodes(used: pd.DataFrame) -> pd.DataFrame:
    """The nodes a correct-vs-incorrect contrast can use (METHOD, Alignment): past the divergence of the question's
    paths (``prefix_shared`` False; unknown counts as shared) and on a correct or a wrong (parsed) path, with the
    path's side as ``side`` (True: correct)."""
    def flag(name: str, value: bool) -> pd.Series:  # a nullable column equal to value, null as False
        if name not in used:
            return pd.Series(False, index=used.index)
        return pd.Series(used[name].eq(value).to_numpy(dtype=bool, na_value=False), index=used.index)

    side = used["rollout_correct"]
    keep = (flag("prefix_shared", False) & side.notna()
            & ~(flag("rollout_correct", False) & flag("rollout_unparsed", True)))
    return used[keep].assign(side=side[keep].astype(bool))


def incorrect_over_correct(nodes: pd.DataFrame, loss: str, options: stats.Options) -> list[dict]:
    """Finding 1 per (task, student); with no question that has nodes past the divergence on both kinds of path
    the row has no estimate (not testable)."""
    rows = []
    for (task, student), group in nodes.groupby(["task", "student"], sort=False):
        graded = _contrast_nodes(_scored(group, loss))
        means = graded.groupby(["question_id", "teacher", "side"])[f"align_{loss}"].mean().unstack()
        if True in means and False in means:
            per_teacher = (means[True] - means[False]).dropna()
            per_question = per_teacher.groupby(level="question_id").mean().to_numpy()
        else:
            per_question = np.zeros(0)

        def redo(permutations: int, values=per_question) -> stats.Estimate:
            return stats.mean_of_questions(values, **{**options.test, "permutations": permutations})

        estimate = stats.mean_of_questions(per_question, **options.test)
        rows.append(_row("1 alignment higher on incorrect rollouts", "ok_minus_bad, mean over teachers", task,
                         student, "< 0", estimate, stats.minimum_detectable_effect(estimate, alpha=options.alpha)
                         if estimate.questions else math.nan, redo))
    return rows


def _self_minus_external(group: pd.DataFrame, external: str, loss: str) -> pd.Series:
    """Per question: ||g*||-weighted mean over nodes of (mean alignment of the self contexts) - (external's)."""
    used = _scored(group, loss)
    key = ["question_id", "rollout_id", "position"]
    contexts = used[used.teacher.isin(SELF_CONTEXTS)].groupby(key)[f"align_{loss}"].mean()
    outside = used[used.teacher == external].set_index(key)
    both = outside[[f"align_{loss}", "ideal_norm"]].join(contexts.rename("self"), how="inner")
    both["w_diff"] = (both["self"] - both[f"align_{loss}"]) * both["ideal_norm"]
    sums = both.groupby(level="question_id")[["w_diff", "ideal_norm"]].sum()
    return sums["w_diff"] / sums["ideal_norm"]


def self_contexts_for_smaller(nodes: pd.DataFrame, loss: str, sizes: Sequence[str],
                              options: stats.Options) -> list[dict]:
    """Finding 2 on each pair of students (smaller, larger) in ``sizes`` order that both have a ``model:`` teacher."""
    rows = []
    for task, group in nodes.groupby("task", sort=False):
        advantage = {}
        for student in sizes:
            part = group[group.student == student]
            external = sorted(t for t in part.teacher.unique() if str(t).startswith("model:"))
            if external:
                advantage[student] = _self_minus_external(part, external[0], loss)
        present = [student for student in sizes if student in advantage]
        for smaller, larger in zip(present, present[1:]):
            joined = pd.concat([advantage[smaller], advantage[larger]], axis=1, join="inner").dropna()
            values = (joined.iloc[:, 0] - joined.iloc[:, 1]).to_numpy()

            def redo(permutations: int, values=values) -> stats.Estimate:
                return stats.mean_of_questions(values, **{**options.test, "permutations": permutations})

            estimate = stats.mean_of_questions(values, **options.test)
            rows.append(_row("2 self contexts gain on an external teacher as the student shrinks",
                             f"(self - external) of {smaller} minus that of {larger}", task,
                             f"{smaller} vs {larger}", "> 0", estimate,
                             stats.minimum_detectable_effect(estimate, alpha=options.alpha), redo))
        for student in present:
            estimate = stats.mean_of_questions(advantage[student].dropna().to_numpy(), **options.test)
            rows.append(_row("2 self contexts gain on an external teacher as the student shrinks",
                             "self contexts - external teacher (walign per question)", task, student, "(context)",
                             estimate, stats.minimum_detectable_effect(estimate, alpha=options.alpha)))
    return rows


def wrong_demonstrations(nodes: pd.DataFrame, loss: str, options: stats.Options) -> list[dict]:
    """Finding 3: the leaderboard's paired test of ``walign(correct-wrong) - walign(correct-only)`` on the nodes
    both share (:func:`harness.reports.leaderboard.pair_estimate`), per (task, student) and correct-only context."""
    rows = []
    cells = {(c.task, c.student, c.teacher): c for c in iter_cells(nodes, options) if c.loss == loss}
    for (task, student, teacher), wrong in cells.items():
        if teacher != WRONG or not wrong.mask.any():
            continue
        for other in sorted(CORRECT_ONLY):
            right = cells.get((task, student, other))
            if right is None or not right.mask.any():
                continue

            def redo(permutations: int, wrong=wrong, right=right) -> stats.Estimate:
                return pair_estimate(wrong, right, permutations)

            estimate = pair_estimate(wrong, right)
            rows.append(_row("3 wrong demonstrations align worse", f"walign({WRONG}) - walign({other})", task,
                             student, "< 0", estimate, stats.minimum_detectable_effect(estimate, alpha=options.alpha),
                             redo))
    return rows


def divergence_and_depth(nodes: pd.DataFrame, loss: str, options: stats.Options) -> list[dict]:
    rows = []
    for (task, student), group in nodes.groupby(["task", "student"], sort=False):
        used = _scored(group, loss)
        questions = used.question_id.astype(str).to_numpy(dtype=object)
        align = used[f"align_{loss}"].to_numpy(dtype=float)
        for variable, direction in ((KL_STUDENT_TEACHER, "> 0"), (L2, "> 0"), (COS_PQ, "< 0")):
            estimate = stats.correlation_ci(used[variable].to_numpy(dtype=float), align, questions,
                                            **options.bootstrap)
            rows.append(_row("4 larger divergence goes with higher alignment", f"Spearman(align, {variable})", task,
                             student, direction, estimate))
        estimate = stats.correlation_ci(used.depth_norm.to_numpy(dtype=float), align, questions,
                                        given=used.entropy.to_numpy(dtype=float), **options.bootstrap)
        rows.append(_row("5 alignment rises with depth", "Spearman(align, depth | entropy)", task, student, "> 0",
                         estimate))
    return rows


def depth_by_size(nodes: pd.DataFrame, loss: str, sizes: Sequence[str], options: stats.Options) -> list[dict]:
    """Finding 5's second half on each pair of students (smaller, larger) adjacent in ``sizes`` order."""
    rows = []
    for task, group in nodes.groupby("task", sort=False):
        used = _scored(group, loss)
        present = [student for student in sizes if (used.student == student).any()]
        for smaller, larger in zip(present, present[1:]):
            both = used[used.student.isin([smaller, larger])]
            depth, align, entropy = (both[c].to_numpy(dtype=float) for c in ("depth_norm", f"align_{loss}", "entropy"))
            is_smaller = (both.student == smaller).to_numpy()

            def difference(index: np.ndarray) -> float:
                first, second = index[is_smaller[index]], index[~is_smaller[index]]
                return (stats.partial_spearman(depth[first], align[first], entropy[first])
                        - stats.partial_spearman(depth[second], align[second], entropy[second]))

            estimate = stats.bootstrap_t(difference, both.question_id.astype(str).to_numpy(dtype=object),
                                         **options.bootstrap)
            rows.append(_row("5 alignment rises with depth",
                             f"Spearman(align, depth | entropy) of {smaller} minus that of {larger}", task,
                             f"{smaller} vs {larger}", "> 0", estimate))
    return rows


def verdict(row: dict[str, Any], alpha: float) -> str:
    if not row["questions"] > 0 and row["finding"].startswith("1 "):
        return NOT_TESTABLE  # no question with nodes past the divergence of its correct and incorrect paths
    if not row["questions"] >= stats.MIN_QUESTIONS or not math.isfinite(row["estimate"]):
        return "too few questions"
    if row["direction"] == "(context)":
        return ""
    if math.isfinite(row["p_holm"]) and row["p_holm"] < alpha:
        agrees = row["estimate"] < 0 if row["direction"] == "< 0" else row["estimate"] > 0
        return "reproduced" if agrees else "opposite"
    return "inconclusive"


def by_size(students: Sequence[str]) -> list[str]:
    """Students from smallest to largest by the storage per weight their specs tell (:func:`bits_per_weight`):
    ``@int4`` < ``@int4:g32`` < ``@int8`` < uncompressed, more layers pruned < fewer; ties keep the order given."""
    return sorted(students, key=bits_per_weight)


def findings(nodes: pd.DataFrame, *, loss: str = "rkl", sizes: Sequence[str] = (),
             options: stats.Options | None = None) -> pd.DataFrame:
    """The findings table (module docstring). ``sizes``: students from smallest to largest, for finding 2
    (default: :func:`by_size`)."""
    options = options or stats.Options()
    sizes = list(sizes) or by_size(list(pd.unique(nodes["student"])))
    if loss == REFERENCE_LOSS:
        raise ValueError("the findings are about teachers: choose a teacher loss (rkl, fkl, jsd, sampled)")
    rows = [*incorrect_over_correct(nodes, loss, options), *self_contexts_for_smaller(nodes, loss, sizes, options),
            *wrong_demonstrations(nodes, loss, options), *divergence_and_depth(nodes, loss, options),
            *depth_by_size(nodes, loss, sizes, options)]
    # Holm over the claims that can reach a verdict (10 questions or more); Monte Carlo p-values near the
    # decision drawn again with more permutations until it is stable
    claims = [row for row in rows if row["direction"] != "(context)"]
    estimates, adjusted = stats.settle(
        [row["_estimate"] for row in claims], lambda k, permutations: claims[k]["_redo"](permutations),
        stats.holm, testable=[row["questions"] >= stats.MIN_QUESTIONS and math.isfinite(row["estimate"])
                              for row in claims], alpha=options.alpha)
    for row, estimate, p_holm in zip(claims, estimates, adjusted):
        _update(row, estimate)
        row["p_holm"] = float(p_holm)
    for row in rows:
        row.setdefault("p_holm", math.nan)
        row["p_at_floor"] = row["_estimate"].at_floor
        row["verdict"] = verdict(row, options.alpha)
    table = pd.DataFrame.from_records(rows)
    return table.reindex(columns=COLUMNS) if len(table) else pd.DataFrame(columns=COLUMNS)
