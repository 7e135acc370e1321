"""``opd analyze``: what goes with alignment, per run (METHOD.md, Alignment, Statistics and Reliability).

Four tables, every estimate with its interval, its test and its n (questions, rollouts, nodes), all at the question
level (:mod:`harness.reports.stats`):

- :func:`correlations`: Spearman correlation between a row's alignment (per teacher and loss) and each divergence
  column and ``depth_norm``, with a question-level bootstrap t interval and t test, and Benjamini-Hochberg q-values
  across the whole table (many cells are tested at once). Depth is also reported *controlling for entropy*
  (``depth_norm | entropy``, partial rank correlation): nodes are picked by entropy inside depth windows and deeper
  windows hold more candidates, so their top-entropy nodes are more extreme, which alone can tie alignment to depth.
- :func:`oracle_routing`: would routing each node to its own best teacher beat the best single teacher? An in-sample
  oracle is >= the best teacher at every node by construction, so the test is *cross-fitted*: each node's teacher is
  picked from the alignments of one half of the continuations (METHOD, Reliability) and scored on the other half
  (and the other way round); the best single teacher is picked by the leaderboard's statistic (``walign``) on the
  same halves. The gain can then be negative, and its test can say "no gain". The in-sample oracle is kept as an
  optimistic bound, with how often the best teacher changes between consecutive nodes of a rollout.
- :func:`proxy_ranking`: can a cheap proxy rank the teachers? Kendall tau between the teachers' mean ``KL(p||q)``
  and their mean alignment, with a bootstrap t interval and test.
- :func:`reliability`: split-half reliability of each row's alignments (Spearman-Brown).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.reports import stats
from harness.reports.leaderboard import NODE_KEY, REFERENCE_LOSS, TEACHER_LOSSES, informative_mask, iter_cells
from harness.storage.records import DIVERGENCE_COLUMNS, KL_STUDENT_TEACHER

DIVERGENCES = DIVERGENCE_COLUMNS
VARIABLES = (*DIVERGENCES, "depth_norm")
DEPTH_GIVEN_ENTROPY = "depth_norm | entropy"
PROXY = KL_STUDENT_TEACHER
KEYS = ["task", "student", "teacher", "loss"]


def _rollouts(rows: pd.DataFrame, mask: np.ndarray) -> int:
    return int(len(rows.loc[mask, ["question_id", "rollout_id"]].drop_duplicates()))


def correlations(nodes: pd.DataFrame, *, variables=VARIABLES, options: stats.Options | None = None) -> pd.DataFrame:
    """One row per (task, student, teacher, loss, variable): Spearman rho, its bootstrap t interval and p-value,
    the q-value (BH over every row of the table) and the questions, rollouts and nodes it rests on.

    A variable that is constant for a teacher (every divergence of the student against itself is 0) gives NaN.
    The grpo reference row only gets the depth rows (its direction involves no teacher divergence).
    """
    options = options or stats.Options()
    records = []
    for cell in iter_cells(nodes, options):
        if not cell.mask.any():
            continue  # no alignment at all (the self control): nothing to correlate
        rollouts = _rollouts(cell.rows, cell.mask)
        names = [*variables, DEPTH_GIVEN_ENTROPY] if "depth_norm" in variables else list(variables)
        for variable in names:
            if cell.loss == REFERENCE_LOSS and not variable.startswith("depth_norm"):
                continue
            if variable == DEPTH_GIVEN_ENTROPY:
                estimate = stats.correlation_ci(cell.column("depth_norm"), cell.align, cell.question_ids,
                                                given=cell.column("entropy"), **options.bootstrap)
            else:
                estimate = stats.correlation_ci(cell.column(variable), cell.align, cell.question_ids,
                                                **options.bootstrap)
            records.append({"task": cell.task, "student": cell.student, "teacher": cell.teacher, "loss": cell.loss,
                            "variable": variable, "rho": estimate.estimate, "rho_lo": estimate.lo,
                            "rho_hi": estimate.hi, "p": estimate.pvalue, "questions": estimate.questions,
                            "rollouts": rollouts, "nodes": estimate.n})
    table = pd.DataFrame.from_records(records, columns=[*KEYS, "variable", "rho", "rho_lo", "rho_hi", "p",
                                                        "questions", "rollouts", "nodes"])
    table.insert(table.columns.get_loc("p") + 1, "q", stats.benjamini_hochberg(table["p"]) if len(table) else [])
    return table


def _wide(group: pd.DataFrame, loss: str) -> tuple[pd.DataFrame, list[str]]:
    """Nodes x teachers: full and half-sample alignments for ``loss``, on the nodes where every teacher that has
    any alignment has one (teachers with none, like the ``self`` control, are left out), sorted by position."""
    frames, teachers = [], []
    for teacher in pd.unique(group["teacher"]):
        rows = group[group["teacher"] == teacher]
        mask = informative_mask(rows, loss)
        if not mask.any():
            continue
        columns = {f"align_{loss}": teacher, f"align_{loss}_a": f"{teacher}\x1fa", f"align_{loss}_b": f"{teacher}\x1fb"}
        present = [name for name in columns if name in rows]
        keep = rows.loc[mask, [*NODE_KEY, "ideal_norm", *present]].drop_duplicates(list(NODE_KEY))
        frames.append(keep.set_index([*NODE_KEY, "ideal_norm"])[present].rename(columns=columns))
        teachers.append(str(teacher))
    if not frames:
        return pd.DataFrame(columns=[*NODE_KEY, "ideal_norm"]), []
    wide = pd.concat(frames, axis=1, join="inner").reset_index().sort_values(list(NODE_KEY), kind="stable")
    return wide.reset_index(drop=True), teachers


def _cross_fitted_gain(wide: pd.DataFrame, teachers: list[str]) -> np.ndarray:
    """Per node: the held-out alignment of the teacher routed to it minus that of the best single teacher, both
    chosen on one half of the continuations and scored on the other, averaged over the two directions. NaN where
    a half is undefined for some teacher."""
    weights = wide["ideal_norm"].to_numpy(dtype=float)
    gains = []
    for pick, score in (("a", "b"), ("b", "a")):
        if not all(f"{t}\x1f{pick}" in wide for t in teachers):
            return np.full(len(wide), math.nan)
        chosen = wide[[f"{t}\x1f{pick}" for t in teachers]].to_numpy(dtype=float)
        held_out = wide[[f"{t}\x1f{score}" for t in teachers]].to_numpy(dtype=float)
        usable = np.isfinite(chosen).all(axis=1) & np.isfinite(held_out).all(axis=1)
        gain = np.full(len(wide), math.nan)
        if usable.any():
            w = weights[usable]
            single = int(np.argmax(w @ chosen[usable] / w.sum()))  # walign on the picking half
            routed = np.argmax(chosen[usable], axis=1)
            rows = np.flatnonzero(usable)
            gain[rows] = held_out[rows, routed] - held_out[rows, single]
        gains.append(gain)
    stacked = np.vstack(gains)
    counts = np.isfinite(stacked).sum(axis=0)
    # the mean of the directions that are defined at the node (NaN where neither is)
    return np.where(counts > 0, np.nansum(stacked, axis=0) / np.maximum(counts, 1), math.nan)


ROUTING_COLUMNS = ["task", "student", "loss", "teachers", "questions", "nodes", "best_single", "best_single_walign",
                   "oracle_walign", "switch_rate", "cv_gain", "cv_gain_lo", "cv_gain_hi", "p_cv_gain", "q_cv_gain",
                   "cv_questions", "cv_nodes", "mde_cv_gain"]


def oracle_routing(nodes: pd.DataFrame, *, options: stats.Options | None = None) -> pd.DataFrame:
    """Per (task, student, loss): per-node routing against the best single teacher.

    ``best_single`` is the leader by ``walign`` on the nodes every teacher shares; ``oracle_walign`` the in-sample
    oracle (an optimistic bound: >= the leader at every node by construction); ``switch_rate`` how often the
    in-sample best teacher changes between consecutive diagnosed nodes of a rollout. ``cv_gain`` is the
    cross-fitted gain (module docstring), ``||g*||``-weighted like walign, with its interval, sign-flip test,
    n and minimum detectable effect: a gain the test cannot tell from 0 is no evidence for routing. ``q_cv_gain``:
    Benjamini-Hochberg, per loss, over the (task, student) cells whose gain rests on 10 questions or more.
    """
    options = options or stats.Options()
    records = []
    for (task, student), group in nodes.groupby(["task", "student"], sort=False, dropna=False):
        for loss in TEACHER_LOSSES:
            wide, teachers = _wide(group, loss)
            record = {"task": task, "student": student, "loss": loss, "teachers": len(teachers),
                      "questions": int(wide["question_id"].nunique()) if len(wide) else 0, "nodes": len(wide)}
            if wide.empty or len(teachers) < 2:
                records.append(record)
                continue
            align = wide[teachers].to_numpy(dtype=float)
            weights = wide["ideal_norm"].to_numpy(dtype=float)
            walign = weights @ align / weights.sum()
            best_single = int(np.argmax(walign))
            best = np.argmax(align, axis=1)
            same_rollout = ((wide["question_id"].to_numpy()[1:] == wide["question_id"].to_numpy()[:-1])
                            & (wide["rollout_id"].to_numpy()[1:] == wide["rollout_id"].to_numpy()[:-1]))
            switches = (best[1:] != best[:-1])[same_rollout]
            gain = stats.cluster_mean(_cross_fitted_gain(wide, teachers), wide["question_id"].astype(str), weights,
                                      **options.test)
            record.update(best_single=teachers[best_single], best_single_walign=float(walign[best_single]),
                          oracle_walign=float(weights @ align.max(axis=1) / weights.sum()),
                          switch_rate=float(switches.mean()) if switches.size else math.nan,
                          cv_gain=gain.estimate, cv_gain_lo=gain.lo, cv_gain_hi=gain.hi, p_cv_gain=gain.pvalue,
                          cv_questions=gain.questions, cv_nodes=gain.n,
                          mde_cv_gain=stats.minimum_detectable_effect(gain, alpha=options.alpha))
            records.append(record)
    table = pd.DataFrame.from_records(records, columns=ROUTING_COLUMNS)
    # a routing claim per cell: Benjamini-Hochberg across the cells whose gain rests on 10 questions or more (the
    # others can reach no verdict and stay out of the family)
    table["q_cv_gain"] = math.nan
    for _, group in table.groupby("loss", sort=False):
        testable = group.index[group["cv_questions"].fillna(0) >= stats.MIN_QUESTIONS]
        if len(testable):
            table.loc[testable, "q_cv_gain"] = stats.benjamini_hochberg(table.loc[testable, "p_cv_gain"]
                                                                        .to_numpy(float))
    return table


def proxy_ranking(nodes: pd.DataFrame, *, proxy: str = PROXY, options: stats.Options | None = None) -> pd.DataFrame:
    """Per (task, student, loss): Kendall tau between teachers' mean ``proxy`` and their mean alignment.

    The proxy mean is over every node where the teacher's context was built; the alignment mean over its
    informative nodes. The interval and test resample questions and recompute both means for every teacher.
    """
    options = options or stats.Options()
    records = []
    for (task, student), group in nodes.groupby(["task", "student"], sort=False, dropna=False):
        teacher_code, teachers = pd.factorize(group["teacher"])
        questions = group["question_id"].astype(str).to_numpy(dtype=object)
        proxy_values = group[proxy].to_numpy(dtype=float, na_value=np.nan)
        proxy_ok = group["context_ok"].eq(True).to_numpy(dtype=bool, na_value=False) & np.isfinite(proxy_values)
        for loss in TEACHER_LOSSES:
            align_ok = informative_mask(group, loss)
            align = group[f"align_{loss}"].to_numpy(dtype=float, na_value=np.nan)

            def per_teacher(values, ok, index):
                code, weight = teacher_code[index], ok[index].astype(float)
                with np.errstate(invalid="ignore", divide="ignore"):
                    return (np.bincount(code, np.where(ok[index], values[index], 0.0), len(teachers))
                            / np.bincount(code, weight, len(teachers)))

            def tau(index):
                proxies, aligns = per_teacher(proxy_values, proxy_ok, index), per_teacher(align, align_ok, index)
                ranked = np.isfinite(proxies) & np.isfinite(aligns)  # teachers without alignment (self) drop out
                return stats.correlation(proxies[ranked], aligns[ranked], "kendall")

            estimate = stats.bootstrap_t(tau, questions, **options.bootstrap)
            everything = np.arange(len(group))
            ranked_teachers = int(np.sum(np.isfinite(per_teacher(align, align_ok, np.arange(len(group))))))
            records.append({"task": task, "student": student, "loss": loss, "proxy": proxy, "teachers": ranked_teachers,
                            "proxy_order": " > ".join(_order(teachers, per_teacher(proxy_values, proxy_ok, everything))),
                            "align_order": " > ".join(_order(teachers, per_teacher(align, align_ok, everything))),
                            "tau": estimate.estimate, "tau_lo": estimate.lo, "tau_hi": estimate.hi,
                            "p": estimate.pvalue, "questions": estimate.questions})
    return pd.DataFrame.from_records(records, columns=["task", "student", "loss", "proxy", "teachers", "proxy_order",
                                                       "align_order", "tau", "tau_lo", "tau_hi", "p", "questions"])


def _order(teachers, values: np.ndarray) -> list[str]:
    order = np.argsort(-np.nan_to_num(values, nan=-np.inf), kind="stable")
    return [str(teachers[i]) for i in order]


def reliability(nodes: pd.DataFrame, *, options: stats.Options | None = None) -> pd.DataFrame:
    """Per (task, student, teacher, loss): split-half reliability of the alignment (Spearman-Brown corrected
    correlation of the two halves' alignments over nodes where both are defined), and the nodes and questions it
    rests on. Low values mean M is too small for per-node conclusions (METHOD, Reliability)."""
    records = []
    for cell in iter_cells(nodes, options):
        first, second = cell.column(f"align_{cell.loss}_a"), cell.column(f"align_{cell.loss}_b")
        value, n = stats.split_half_reliability(first, second)
        both = np.isfinite(first) & np.isfinite(second)
        records.append({"task": cell.task, "student": cell.student, "teacher": cell.teacher, "loss": cell.loss,
                        "reliability": value, "nodes": n, "questions": int(len(set(cell.question_ids[both])))})
    return pd.DataFrame.from_records(records, columns=[*KEYS, "reliability", "nodes", "questions"])


def analyze(nodes: pd.DataFrame, *, options: stats.Options | None = None) -> dict[str, pd.DataFrame]:
    """All four tables, keyed ``correlations``, ``routing``, ``proxy``, ``reliability``."""
    options = options or stats.Options()
    return {"correlations": correlations(nodes, options=options), "routing": oracle_routing(nodes, options=options),
            "proxy": proxy_ranking(nodes, options=options), "reliability": reliability(nodes, options=options)}
