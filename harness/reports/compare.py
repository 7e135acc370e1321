"""``opd compare``: teachers x students across runs (METHOD.md, Statistics).

Several run directories (typically one per student) are read together (:func:`load_runs`) and put through
:func:`harness.reports.leaderboard.build` once, so every number here is a leaderboard number with the same intervals and
tests:

- :func:`matrix`: one row per (task, loss, teacher), one ``align``/``walign`` column per student (over the
  teacher's own questions), plus the teacher's paired rank for that student (1 = the leader; METHOD, Which
  teacher leads);
- :func:`rank_agreement`: Kendall tau between two students' teacher rankings (``walign`` over the teachers both
  have), per (task, loss) -- does the best teacher for a small student stay best for a larger one?
- :func:`best_teachers`: per (task, student, loss) the leader and the runner-up by the leaderboard's paired rank,
  with their rank groups, and the leaderboard's pair test of the two (tested difference, Holm-corrected p-value
  over all pairs, verdict).

**Runs that share a (task, student)** are never pooled silently: pooling two runs with the same seed would count the
same (question, rollout, position, teacher) twice and shrink every interval. By default each run stays its own
column, labelled ``student [run directory]``, and a note says so. ``combine=True`` (``opd compare --combine``) merges
runs of one configuration (same task, student, seed, METHOD settings, backend, device and dtype; teachers and
``--limit`` may differ, e.g. more questions of the same study): a node row present in several runs is counted once,
after checking that its copies are identical; runs of different configurations, or copies that differ, are refused
with the reason. Chunk runs (``opd run --questions A:B``) combine by :func:`harness.storage.chunks.combine`: disjoint
ranges of one configuration and code, or refused.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.api.errors import ConfigError
from harness.reports import stats
from harness.reports.leaderboard import NODE_KEY, REFERENCE_LOSS, Leaderboard, build
from harness.storage import chunks
from harness.storage.records import load_run
from harness.storage.run_meta import RunMeta

ROW_KEY = [*NODE_KEY, "teacher"]
# what two runs must share to be one configuration (teachers, --limit, --data-dir, threads may differ), besides the
# device and dtype they ran on (RunMeta.configuration adds those)
SAME_CONFIGURATION = ("task", "student", "seed", "settings", "backend")


@dataclass
class Runs:
    """Nodes of several run directories read together, and what the reader did about runs sharing a student."""

    nodes: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _configuration(run_json: dict[str, Any]) -> dict[str, Any] | None:
    return RunMeta.of(run_json).configuration(SAME_CONFIGURATION)


def _label(run_dir: Path, run_dirs: Sequence[Path]) -> str:
    """The run's directory name, or its path when two runs share a name."""
    names = [Path(other).name for other in run_dirs]
    return run_dir.name if names.count(run_dir.name) == 1 else str(run_dir)


def _combine(student: str, parts: list[tuple[Path, pd.DataFrame, dict]]) -> tuple[pd.DataFrame, str]:
    """One (task, student)'s runs merged, each (question, rollout, position, teacher) once; refuses what differs."""
    if any(chunks.is_chunk(run_json) for _, _, run_json in parts):  # chunk runs: disjoint ranges, one configuration
        return chunks.combine(student, parts)
    configurations = [_configuration(run_json) for _, _, run_json in parts]
    names = ", ".join(str(run_dir) for run_dir, _, _ in parts)
    if any(configuration is None for configuration in configurations):
        missing = ", ".join(str(run_dir) for (run_dir, _, _), c in zip(parts, configurations) if c is None)
        raise ConfigError(f"Cannot combine {names}: {missing} has no readable run.json, so its configuration cannot "
                          "be checked. Compare them as separate columns (leave out --combine).")
    differing = sorted({name for c in configurations[1:] for name in c if c[name] != configurations[0][name]})
    if differing:
        raise ConfigError(f"Cannot combine {names} ({student}): they differ in {', '.join(differing)}, so their "
                          "nodes are not draws of one configuration. Compare them as separate columns (leave out "
                          "--combine), or rerun one of them with the other's settings.")
    merged = pd.concat([nodes for _, nodes, _ in parts], ignore_index=True)
    duplicated = merged.duplicated(ROW_KEY, keep=False)
    values = [name for name in merged.columns if name.startswith(("align_", "ideal_norm", "succ_"))]
    for _, copies in merged[duplicated].groupby(ROW_KEY, sort=False):
        first = copies.iloc[0]
        for _, other in copies.iloc[1:].iterrows():
            if not all(_same(first[name], other[name]) for name in values):
                key = ", ".join(f"{name}={first[name]}" for name in ROW_KEY)
                raise ConfigError(f"Cannot combine {names}: the node ({key}) has different values in two runs "
                                  "(e.g. non-deterministic sampling on a GPU), so one of them would be counted for "
                                  "what it is not. Compare them as separate columns (leave out --combine).")
    kept = merged.drop_duplicates(ROW_KEY, keep="first").reset_index(drop=True)
    note = (f"{student}: combined {names} into one column; {int(duplicated.sum() - (len(merged) - len(kept)))} "
            f"node row(s) present in several runs counted once ({len(merged) - len(kept)} duplicate(s) dropped).")
    return kept, note


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple, np.ndarray)) or isinstance(b, (list, tuple, np.ndarray)):
        return np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float), equal_nan=True)
    if pd.isna(a) and pd.isna(b):
        return True
    return a == b


def load_runs(run_dirs: Sequence[Path], combine: bool = False) -> Runs:
    """The nodes of several run directories; runs that share a (task, student) become separate columns
    (``student [run]``) or, with ``combine``, one column with every node row once (module docstring)."""
    run_dirs = [Path(run_dir) for run_dir in run_dirs]
    loaded = []
    for run_dir in run_dirs:
        nodes, _, run_json = load_run(run_dir)
        loaded.append((run_dir, nodes, run_json))
    groups: dict[tuple[str, str], list[int]] = {}
    for index, (_, nodes, _) in enumerate(loaded):
        for key in nodes[["task", "student"]].drop_duplicates().itertuples(index=False):
            groups.setdefault((key.task, key.student), []).append(index)
    frames, notes = [], []
    for (task, student), members in groups.items():
        parts = [(loaded[i][0], loaded[i][1][(loaded[i][1].task == task) & (loaded[i][1].student == student)],
                  loaded[i][2]) for i in members]
        if len(parts) == 1:
            frames.append(parts[0][1])
        elif combine:
            merged, note = _combine(student, parts)
            frames.append(merged)
            notes.append(note)
        else:
            labels = [_label(run_dir, run_dirs) for run_dir, _, _ in parts]
            frames.extend(nodes.assign(student=f"{student} [{label}]") for (_, nodes, _), label in zip(parts, labels))
            notes.append(f"{task} · {student} is in {len(parts)} runs ({', '.join(labels)}): shown as separate "
                         "columns, never pooled (pooling would count shared nodes twice). To merge runs of one "
                         "configuration into one column, pass --combine.")
    nodes = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return Runs(nodes, notes)


def _teacher_rows(board: pd.DataFrame) -> pd.DataFrame:
    """The teacher rows, with the leaderboard's paired ``rank`` (METHOD, Which teacher leads; NaN: unranked, every
    pair not tested), or the walign rank on tables built without the paired columns."""
    rows = board[board["loss"] != REFERENCE_LOSS].copy()
    if "rank" not in rows:
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
    """Kendall tau of ``walign`` over the teachers two students share, for each (task, loss) and student pair, with
    scipy's two-sided p of no agreement (exact for a handful of teachers)."""
    rows = _teacher_rows(board)
    records = []
    for (task, loss), group in rows.groupby(["task", "loss"], sort=False):
        by_student = {student: part.set_index("teacher")["walign"] for student, part in group.groupby("student",
                                                                                                       sort=False)}
        for first, second in itertools.combinations(by_student, 2):
            both = pd.concat([by_student[first], by_student[second]], axis=1, join="inner").dropna()
            tau, p = stats.correlation_test(both.iloc[:, 0], both.iloc[:, 1], "kendall")
            records.append({"task": task, "loss": loss, "student_a": first, "student_b": second,
                            "teachers": len(both), "tau": tau, "p": p})
    return pd.DataFrame.from_records(records,
                                     columns=["task", "loss", "student_a", "student_b", "teachers", "tau", "p"])

def best_teachers(board: Leaderboard) -> pd.DataFrame:
    """Leader and runner-up by the leaderboard's paired ``rank`` per (task, student, loss) (the leader: no paired
    test puts it behind another teacher; METHOD, Which teacher leads), their rank groups, and the tested difference
    of the pair (leader minus runner-up on the nodes both share) with its Holm-corrected p-value, that p's
    Benjamini-Hochberg ``q_bh`` across the cells of the loss (a claim per cell), and the verdict. ``walign`` is the
    leader's over its own questions (``questions``)."""
    rows = _teacher_rows(board.table)
    records = []
    for (task, student, loss), group in rows.groupby(["task", "student", "loss"], sort=False):
        ranked = group.dropna(subset=["walign", "rank"]).sort_values("rank", kind="stable")
        record = {"task": task, "student": student, "loss": loss, "teachers": len(group)}
        if len(ranked):
            leader = ranked.iloc[0]
            record.update(best=leader.teacher, group=leader.group, walign=leader.walign, walign_lo=leader.walign_lo,
                          walign_hi=leader.walign_hi, questions=int(leader.align_questions),
                          nodes=int(leader.align_nodes))
        if len(ranked) > 1:
            runner = ranked.iloc[1]
            pairs = board.pairs[(board.pairs.task == task) & (board.pairs.student == student)
                                & (board.pairs.loss == loss)]
            pair = pairs[(pairs.teacher == leader.teacher) & (pairs.other == runner.teacher)]
            flipped = pairs[(pairs.teacher == runner.teacher) & (pairs.other == leader.teacher)]
            sign = 1.0
            if not len(pair) and len(flipped):  # the pair table orients by walign: leader minus runner-up here
                pair, sign = flipped, -1.0
            record.update(runner_up=runner.teacher, runner_up_group=runner.group)
            if len(pair):
                verdict = pair.iloc[0]["verdict"]
                if sign < 0 and verdict in ("ahead", "behind"):
                    verdict = "behind" if verdict == "ahead" else "ahead"
                record.update(diff=sign * pair.iloc[0]["diff"], p_holm=pair.iloc[0]["p_holm"],
                              pair_questions=int(pair.iloc[0]["questions"]), verdict=verdict)
        records.append(record)
    table = pd.DataFrame.from_records(records, columns=[
        "task", "student", "loss", "teachers", "best", "group", "walign", "walign_lo", "walign_hi", "questions",
        "nodes", "runner_up", "runner_up_group", "diff", "p_holm", "q_bh", "pair_questions", "verdict"])
    # a leader claim per (task, student, loss): Benjamini-Hochberg across the cells, per loss (METHOD, Statistics)
    for _, group in table.groupby("loss", sort=False):
        tested = group.index[group["p_holm"].notna()]
        if len(tested):
            table.loc[tested, "q_bh"] = stats.benjamini_hochberg(table.loc[tested, "p_holm"].to_numpy(float))
    return table


def compare(nodes: pd.DataFrame, *, options: stats.Options | None = None) -> dict[str, pd.DataFrame]:
    """All tables of ``opd compare`` from pooled nodes, keyed ``matrix``, ``agreement``, ``best``."""
    board = build(nodes, options=options)
    if board.table.empty:
        empty = pd.DataFrame()
        return {"matrix": empty, "agreement": empty, "best": empty}
    return {"matrix": matrix(board.table), "agreement": rank_agreement(board.table), "best": best_teachers(board)}
