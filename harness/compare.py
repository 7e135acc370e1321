"""``opd compare``: teachers x students across runs (METHOD.md, Statistics).

Several run directories (typically one per student) are pooled and put through :func:`harness.leaderboard.leaderboard`
once, so every number here is a leaderboard number with the same intervals and tests:

- :func:`matrix`: one row per (task, loss, teacher), one ``align``/``walign`` column per student, plus the teacher's
  rank (1 = highest ``walign``) for that student;
- :func:`rank_agreement`: Kendall tau between two students' teacher rankings (``walign`` over the teachers both
  have), per (task, loss) -- does the best teacher for a small student stay best for a larger one?
- :func:`best_teachers`: per (task, student, loss) the leader and the runner-up with their rank groups, and the
  leaderboard's pair test of the two (tested difference, Holm-corrected p-value over all pairs, verdict).
"""
from __future__ import annotations

import itertools

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness import stats
from harness.leaderboard import REFERENCE_LOSS, Leaderboard, build
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

def best_teachers(board: Leaderboard) -> pd.DataFrame:
    """Leader and runner-up by ``walign`` per (task, student, loss), their rank groups, and the tested difference of
    the pair (leader minus runner-up on the nodes both share) with its Holm-corrected p-value and verdict."""
    rows = _teacher_rows(board.table)
    records = []
    for (task, student, loss), group in rows.groupby(["task", "student", "loss"], sort=False):
        ranked = group.dropna(subset=["walign"]).sort_values("walign", ascending=False, kind="stable")
        record = {"task": task, "student": student, "loss": loss, "teachers": len(group)}
        if len(ranked):
            leader = ranked.iloc[0]
            record.update(best=leader.teacher, group=leader.group, walign=leader.walign, walign_lo=leader.walign_lo,
                          walign_hi=leader.walign_hi, questions=int(leader.align_questions),
                          nodes=int(leader.align_nodes))
        if len(ranked) > 1:
            runner = ranked.iloc[1]
            pair = board.pairs[(board.pairs.task == task) & (board.pairs.student == student)
                               & (board.pairs.loss == loss) & (board.pairs.teacher == leader.teacher)
                               & (board.pairs.other == runner.teacher)]
            record.update(runner_up=runner.teacher, runner_up_group=runner.group)
            if len(pair):
                record.update(diff=pair.iloc[0]["diff"], p_holm=pair.iloc[0]["p_holm"],
                              pair_questions=int(pair.iloc[0]["questions"]), verdict=pair.iloc[0]["verdict"])
        records.append(record)
    return pd.DataFrame.from_records(records, columns=[
        "task", "student", "loss", "teachers", "best", "group", "walign", "walign_lo", "walign_hi", "questions",
        "nodes", "runner_up", "runner_up_group", "diff", "p_holm", "pair_questions", "verdict"])


def compare(nodes: pd.DataFrame, *, options: stats.Options | None = None) -> dict[str, pd.DataFrame]:
    """All tables of ``opd compare`` from pooled nodes, keyed ``matrix``, ``agreement``, ``best``."""
    board = build(nodes, options=options)
    if board.table.empty:
        empty = pd.DataFrame()
        return {"matrix": empty, "agreement": empty, "best": empty}
    return {"matrix": matrix(board.table), "agreement": rank_agreement(board.table), "best": best_teachers(board)}
