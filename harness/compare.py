"""``opd compare``: teachers x students across runs (METHOD.md, Statistics).

Several run directories (typically one per student) are pooled and put through :func:`harness.leaderboard.leaderboard`
once, so every number here is a leaderboard number with the same intervals and tests:

- :func:`matrix`: one row per (task, loss, teacher), one ``align``/``walign`` column per student, plus the teacher's
  rank (1 = highest ``walign``) for that student;
- :func:`rank_agreement`: Kendall tau between two students' teacher rankings (``walign`` over the teachers both
  have), per (task, loss) -- does the best teacher for a small student stay best for a larger one?
- :func:`best_teachers`: per (task, student, loss) the leader, the runner-up, the margin in ``walign`` and the
  paired sign-flip p-value of runner-up vs leader (the leaderboard's Holm-corrected ``p_vs_leader``).
"""
from __future__ import annotations

import itertools

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness import stats
from harness.leaderboard import REFERENCE_LOSS, leaderboard
from harness.records import load_run

def load_runs(run_dirs: Sequence[Path]) -> pd.DataFrame:
    """The nodes of several run directories, concatenated."""
    frames = [load_run(run_dir)[0] for run_dir in run_dirs]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

def _teacher_rows(board: pd.DataFrame) -> pd.DataFrame:
    rows = board[board["loss"] != REFERENCE_LOSS].copy()
    rows["rank"] = rows.groupby(["task", "student", "loss"], sort=False)["walign"].rank(ascending=False,
                                                                                       method="min")
    return rows

def matrix(board: pd.DataFrame) -> pd.DataFrame:
    """Teachers x students: ``<student> align``, ``<student> walign`` and ``<student> rank`` columns."""
    rows = _teacher_rows(board)
    wide = rows.pivot_table(index=["task", "loss", "teacher"], columns="student", values=["align", "walign", "rank"],
                            sort=False, dropna=False)
    wide.columns = [f"{student} {value}" for value, student in wide.columns]
    students = list(pd.unique(rows["student"]))
    ordered = [f"{student} {value}" for student in students for value in ("align", "walign", "rank")]
    return wide[[name for name in ordered if name in wide.columns]].reset_index()

def rank_agreement(board: pd.DataFrame) -> pd.DataFrame:
    """Kendall tau of ``walign`` over the teachers two students share, for each (task, loss) and student pair."""
    rows = _teacher_rows(board)
    records = []
    for (task, loss), group in rows.groupby(["task", "loss"], sort=False):
        by_student = {student: part.set_index("teacher")["walign"] for student, part in group.groupby("student",
                                                                                                       sort=False)}
        for first, second in itertools.combinations(by_student, 2):
            both = pd.concat([by_student[first], by_student[second]], axis=1, join="inner").dropna()
            records.append({"task": task, "loss": loss, "student_a": first, "student_b": second,
                            "teachers": len(both),
                            "tau": stats.correlation(both.iloc[:, 0], both.iloc[:, 1], "kendall")})
    return pd.DataFrame.from_records(records, columns=["task", "loss", "student_a", "student_b", "teachers", "tau"])

def best_teachers(board: pd.DataFrame) -> pd.DataFrame:
    """Leader and runner-up by ``walign`` per (task, student, loss), the margin and the runner-up's paired p-value."""
    rows = _teacher_rows(board)
    records = []
    for (task, student, loss), group in rows.groupby(["task", "student", "loss"], sort=False):
        ranked = group.dropna(subset=["walign"]).sort_values("walign", ascending=False, kind="stable")
        record = {"task": task, "student": student, "loss": loss, "teachers": len(group)}
        if len(ranked):
            leader = ranked.iloc[0]
            record.update(best=leader.teacher, walign=leader.walign, walign_lo=leader.walign_lo,
                          walign_hi=leader.walign_hi, questions=int(leader.questions),
                          informative=int(leader.informative))
        if len(ranked) > 1:
            runner = ranked.iloc[1]
            record.update(runner_up=runner.teacher, margin=leader.walign - runner.walign,
                          p_runner_up=runner.p_vs_leader)
        records.append(record)
    return pd.DataFrame.from_records(records, columns=[
        "task", "student", "loss", "teachers", "best", "walign", "walign_lo", "walign_hi", "questions",
        "informative", "runner_up", "margin", "p_runner_up"])

def compare(nodes: pd.DataFrame, *, resamples: int = stats.RESAMPLES, permutations: int = stats.PERMUTATIONS,
            seed: int = 0) -> dict[str, pd.DataFrame]:
    """All tables of ``opd compare`` from pooled nodes, keyed ``matrix``, ``agreement``, ``best``."""
    board = leaderboard(nodes, resamples=resamples, permutations=permutations, seed=seed)
    if board.empty:
        empty = pd.DataFrame()
        return {"matrix": empty, "agreement": empty, "best": empty}
    return {"matrix": matrix(board), "agreement": rank_agreement(board), "best": best_teachers(board)}

