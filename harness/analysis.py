"""``opd analyze``: what goes with alignment, per run (METHOD.md, Alignment and Statistics).

Three tables, each computed at the question level by :mod:`harness.stats`:

- :func:`correlations`: Spearman correlation between a row's alignment (per teacher and loss) and each divergence
  column and ``depth_norm``, with a question-level bootstrap CI. The paper reports larger KL / L2 going with higher
  alignment, cosine(p, q) with lower, and alignment rising with depth.
- :func:`oracle_routing`: on the nodes informative for every teacher, the mean alignment when each node takes its
  best teacher (the oracle a per-node router could at most reach) against the best single teacher, the gain with a
  bootstrap CI, and how often the best teacher changes between consecutive diagnosed nodes of one rollout.
- :func:`proxy_ranking`: can a cheap proxy rank the teachers? Kendall tau between the teachers' mean
  ``KL(p||q)`` and their mean alignment, with a question-level bootstrap CI.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness import stats
from harness.leaderboard import NODE_KEY, REFERENCE_LOSS, TEACHER_LOSSES, informative_mask, iter_cells

DIVERGENCES = ("kl_student_teacher", "kl_teacher_student", "l2", "cos_pq", "tv", "topk_shared_mass")
VARIABLES = (*DIVERGENCES, "depth_norm")
PROXY = "kl_student_teacher"


def correlations(nodes: pd.DataFrame, *, variables=VARIABLES, resamples: int = stats.RESAMPLES,
                 seed: int = 0) -> pd.DataFrame:
    """One row per (task, student, teacher, loss, variable): Spearman rho with its cluster-bootstrap interval.

    A variable that is constant for a teacher (every divergence of the student against itself is 0) gives NaN.
    The grpo reference row only gets ``depth_norm`` (its direction involves no teacher divergence).
    """
    records = []
    for cell in iter_cells(nodes):
        for variable in variables:
            if cell.loss == REFERENCE_LOSS and variable != "depth_norm":
                continue
            x = cell.rows[variable].to_numpy(dtype=float, na_value=np.nan)[cell.mask]
            ci = stats.correlation_ci(x, cell.align, cell.question_ids, "spearman", resamples=resamples, seed=seed)
            records.append({"task": cell.task, "student": cell.student, "teacher": cell.teacher, "loss": cell.loss,
                            "variable": variable, "questions": ci.n_clusters, "nodes": ci.n, "rho": ci.estimate,
                            "rho_lo": ci.lo, "rho_hi": ci.hi})
    return pd.DataFrame.from_records(records, columns=["task", "student", "teacher", "loss", "variable", "questions",
                                                       "nodes", "rho", "rho_lo", "rho_hi"])


def _wide(group: pd.DataFrame, loss: str) -> tuple[pd.DataFrame, list[str]]:
    """Nodes x teachers alignment for ``loss``, only nodes informative for every teacher, sorted by position."""
    teachers = list(pd.unique(group["teacher"]))
    frames = []
    for teacher in teachers:
        rows = group[group["teacher"] == teacher]
        keep = rows.loc[informative_mask(rows, loss), [*NODE_KEY, "ideal_norm", f"align_{loss}"]]
        frames.append(keep.drop_duplicates(list(NODE_KEY)).set_index(list(NODE_KEY))[f"align_{loss}"].rename(teacher))
    wide = pd.concat(frames, axis=1, join="inner").reset_index().sort_values(list(NODE_KEY), kind="stable")
    return wide.reset_index(drop=True), teachers


def oracle_routing(nodes: pd.DataFrame, *, resamples: int = stats.RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Per (task, student, loss): oracle per-node routing vs the best single teacher, and the switch rate.

    Ties at a node (e.g. two teachers both at 0) go to the teacher listed first; a switch is counted between two
    consecutive diagnosed nodes of the same rollout whose best teachers differ.
    """
    records = []
    for (task, student), group in nodes.groupby(["task", "student"], sort=False, dropna=False):
        for loss in TEACHER_LOSSES:
            wide, teachers = _wide(group, loss)
            record = {"task": task, "student": student, "loss": loss, "teachers": len(teachers),
                      "questions": int(wide["question_id"].nunique()), "nodes": len(wide)}
            if wide.empty or len(teachers) < 2:
                records.append(record)
                continue
            align = wide[teachers].to_numpy(dtype=float)
            best_single = int(np.argmax(align.mean(axis=0)))
            gain = align.max(axis=1) - align[:, best_single]
            ci = stats.cluster_bootstrap(gain, wide["question_id"], resamples=resamples, seed=seed)
            best = np.argmax(align, axis=1)
            same_rollout = ((wide["question_id"].to_numpy()[1:] == wide["question_id"].to_numpy()[:-1])
                            & (wide["rollout_id"].to_numpy()[1:] == wide["rollout_id"].to_numpy()[:-1]))
            switches = (best[1:] != best[:-1])[same_rollout]
            record.update(best_single=teachers[best_single], best_single_align=float(align[:, best_single].mean()),
                          oracle_align=float(align.max(axis=1).mean()), gain=ci.estimate, gain_lo=ci.lo,
                          gain_hi=ci.hi, switch_pairs=int(switches.size),
                          switch_rate=float(switches.mean()) if switches.size else math.nan)
            records.append(record)
    return pd.DataFrame.from_records(records, columns=[
        "task", "student", "loss", "teachers", "questions", "nodes", "best_single", "best_single_align",
        "oracle_align", "gain", "gain_lo", "gain_hi", "switch_pairs", "switch_rate"])


def proxy_ranking(nodes: pd.DataFrame, *, proxy: str = PROXY, resamples: int = stats.RESAMPLES,
                  seed: int = 0) -> pd.DataFrame:
    """Per (task, student, loss): Kendall tau between teachers' mean ``proxy`` and their mean alignment.

    The proxy mean is over every node where the teacher's context was built; the alignment mean over its
    informative nodes. The interval resamples questions and recomputes both means for every teacher.
    """
    records = []
    for (task, student), group in nodes.groupby(["task", "student"], sort=False, dropna=False):
        teacher_code, teachers = pd.factorize(group["teacher"])
        questions = group["question_id"].to_numpy(dtype=object)
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
                return stats.correlation(per_teacher(proxy_values, proxy_ok, index),
                                         per_teacher(align, align_ok, index), "kendall")

            ci = stats.cluster_bootstrap_stat(tau, questions, resamples=resamples, seed=seed)
            everything = np.arange(len(group))
            records.append({"task": task, "student": student, "loss": loss, "proxy": proxy, "teachers": len(teachers),
                            "questions": ci.n_clusters,
                            "proxy_order": " > ".join(_order(teachers, per_teacher(proxy_values, proxy_ok, everything))),
                            "align_order": " > ".join(_order(teachers, per_teacher(align, align_ok, everything))),
                            "tau": ci.estimate, "tau_lo": ci.lo, "tau_hi": ci.hi})
    return pd.DataFrame.from_records(records, columns=["task", "student", "loss", "proxy", "teachers", "questions",
                                                       "proxy_order", "align_order", "tau", "tau_lo", "tau_hi"])


def _order(teachers, values: np.ndarray) -> list[str]:
    order = np.argsort(-np.nan_to_num(values, nan=-np.inf), kind="stable")
    return [str(teachers[i]) for i in order]


def analyze(nodes: pd.DataFrame, *, resamples: int = stats.RESAMPLES, seed: int = 0) -> dict[str, pd.DataFrame]:
    """All three tables, keyed ``correlations``, ``routing``, ``proxy``."""
    return {"correlations": correlations(nodes, resamples=resamples, seed=seed),
            "routing": oracle_routing(nodes, resamples=resamples, seed=seed),
            "proxy": proxy_ranking(nodes, resamples=resamples, seed=seed)}
