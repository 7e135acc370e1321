"""The study of results/STUDY.md: collect the suite's runs into compact files, then write the write-up from them.

Two steps, so that every number in STUDY.md can be recomputed from what the repository holds:

    python results/study/build.py collect runs/study runs/study-accuracy   # runs -> results/study/{nodes.parquet,...}
    python results/study/build.py write                                    # results/study/* -> results/STUDY.md
    python results/study/build.py backfill DATA_DIR    # once: gold (and prefix_shared at position 0) into an older file
    python results/study/build.py chunk RUN_DIR...     # a finished chunk run -> results/study/chunks/ (never replaced;
                                                       # a committed chunk lacking its per-rollout file gets it)
    python results/study/build.py merge                # committed chunks -> nodes.parquet, runs.json, questions.parquet
                                                       # (other cells kept)

``collect`` keeps only the node columns the tables need (``COMPACT_COLUMNS``), each run's cost (``runs.json``) and
the ``opd accuracy`` reports (``accuracy/``). A chunk also keeps its rollouts' grades and lengths
(``ROLLOUT_COLUMNS``, ``questions-A-B.questions.parquet``; merged into ``questions.parquet``), which the cost per
question and the student's own accuracy read. ``write`` computes every table with the harness's own statistics
(``harness.reports``: findings, leaderboard, analysis, plan, depth) and renders
the Markdown and figures: the reasoning setting first, the cells of tasks whose informative nodes sit mostly at the
first response token as a labelled direct-answer contrast. ``tests/test_study.py`` recomputes the write-up from the
compact files and checks it matches, and checks the headline numbers against independent pandas arithmetic.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tabulate import tabulate

from harness.api.errors import ConfigError
from harness.reports import stats
from harness.storage import chunks

STUDY_DIR = Path(__file__).resolve().parent
WRITE_UP = STUDY_DIR.parent / "STUDY.md"
LOSSES = ("rkl", "fkl", "jsd", "sampled", "grpo")
HEADLINE_LOSS = "rkl"
EFFECT = 0.1  # the alignment difference the study is sized to detect (issue: MDE at most 0.1)
# the node columns the leaderboard, findings, routing, plan and figures read, and every column S_hat, g* and each
# alignment are recomputed from (tests/test_study.py); texts (prompts, contexts) are left out
RECOMPUTE_COLUMNS = [
    "support_token_ids", "sampled_token_id", "student_logprobs", "teacher_logprobs", "succ_correct", "succ_trials",
    "ideal_grad", "grpo_advantage", "rollout_correct", "kl_student_teacher", "jsd_rbar",
]
COMPACT_COLUMNS = [
    "task", "student", "teacher", "question_id", "rollout_id", "position", "rollout_len", "depth_norm", "window",
    "entropy", "rollout_correct", "rollout_unparsed", "prefix_shared", "gold", "kl_student_teacher",
    "kl_teacher_student", "l2", "cos_pq", "tv", "topk_shared_mass", "jsd_rbar",
    "ideal_norm", "informative", "context_ok", "logits_finite", "context_choice",
    *(f"align_{loss}" for loss in LOSSES), *(f"dnorm_{loss}" for loss in LOSSES),
    *(f"align_{loss}_{half}" for loss in LOSSES for half in ("a", "b")),
    *(name for name in RECOMPUTE_COLUMNS if name not in ("rollout_correct", "kl_student_teacher", "jsd_rbar")),
    "succ_correct_a", "succ_trials_a", "succ_correct_b", "succ_trials_b",
]
SIZE_LIMIT = 6 * 2**20  # results/study stays under about 6 MB
# what each run's run.json contributes: its configuration and cost (harness.reports.plan's rate reads the last four)
RUN_KEYS = ("config", "status", "device", "dtype", "threads", "counts", "timings", "resumed_questions", "cache_hits",
            "code", "sessions")


# ---------------------------------------------------------------- collect


def collect(suite_dir: Path, accuracy_dir: Path | None, out: Path = STUDY_DIR) -> None:
    """The compact files of ``out`` from the suite's run directories (``<suite>/<task>/<student>/``) and the
    ``opd accuracy --out`` reports in ``accuracy_dir``."""
    from harness.storage.records import load_run

    frames, runs = [], []
    for cell in _cells(Path(suite_dir)):
        loaded = [load_run(run_dir) for run_dir in cell]
        nodes, meta = loaded[0][0], loaded[0][2]
        if len(cell) > 1 or chunks.is_chunk(meta):  # a cell grown by chunks: checked, then every node once
            nodes, _ = chunks.combine(str(cell[0].parent), [(d, n, m) for d, (n, _, m) in zip(cell, loaded)])
            meta = chunks.merge_meta([m for _, _, m in loaded])
        frames.append(nodes[[c for c in COMPACT_COLUMNS if c in nodes]])
        runs.append({key: meta.get(key) for key in RUN_KEYS if key in meta})
    if not frames:
        raise SystemExit(f"no finished runs under {suite_dir} (expected <task>/<student>/run.json)")
    nodes = pd.concat(frames, ignore_index=True)
    out.mkdir(parents=True, exist_ok=True)
    _write_nodes(nodes, out)
    (out / "runs.json").write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
    if accuracy_dir is not None:
        target = out / "accuracy"
        target.mkdir(exist_ok=True)
        for report in sorted(Path(accuracy_dir).glob("*.json")):
            data = json.loads(report.read_text())
            (target / report.name).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def _cells(suite_dir: Path) -> list[list[Path]]:
    """The run directories of each cell: ``<task>/<student>/`` itself, or its chunks
    ``<task>/<student>/questions-A-B/`` (``opd suite`` with a ``questions`` key), in question order."""
    cells = [[run_json.parent] for run_json in sorted(suite_dir.glob("*/*/run.json"))]
    chunked: dict[Path, list[Path]] = {}
    for run_json in sorted(suite_dir.glob("*/*/questions-*/run.json")):
        chunked.setdefault(run_json.parent.parent, []).append(run_json.parent)
    for cell, runs in chunked.items():
        if (cell / "run.json").is_file():
            raise ConfigError(f"{cell} holds a whole run and chunk runs ({', '.join(r.name for r in runs)}): "
                              f"collect one or the other (move the whole run or the chunks elsewhere).")
        cells.append(runs)
    return sorted(cells)


CHUNKS_DIR = "chunks"  # results/study/chunks/<task>/<student>/questions-A-B.{parquet,json}: committed chunks
ROLLOUTS_SUFFIX = ".questions.parquet"  # beside each chunk's nodes: its per-rollout records (ROLLOUT_COLUMNS)
ROLLOUTS_FILE = "questions.parquet"  # results/study/questions.parquet: every chunked cell's per-rollout records
# what the cost per question, the token counts and the student's own accuracy per cell read from a run's
# questions.parquet (no texts, no token ids); ``unparsed`` is harness.storage.records.outcome's third outcome
ROLLOUT_COLUMNS = ["task", "student", "question_id", "rollout_id", "response_tokens", "finish_reason", "correct",
                   "unparsed", "gold", "extracted"]
CHUNK_KEYS = (*RUN_KEYS, "chunk", "questions_in_flight", "code_earlier")  # what a chunk's json keeps of run.json


def rollouts_path(chunk_nodes: Path) -> Path:
    """The per-rollout file beside a committed chunk's nodes file (``questions-A-B.parquet``)."""
    return chunk_nodes.with_name(chunk_nodes.stem + ROLLOUTS_SUFFIX)


def is_chunk_nodes(path: Path) -> bool:
    return path.name.endswith(".parquet") and not path.name.endswith(ROLLOUTS_SUFFIX)


def compact_rollouts(questions: pd.DataFrame) -> pd.DataFrame:
    """A run's questions.parquet reduced to :data:`ROLLOUT_COLUMNS` (``unparsed`` derived with the harness's own
    outcome where the records have no such column)."""
    from harness.storage.records import outcome

    frame = questions.copy()
    if "unparsed" not in frame:
        frame["unparsed"] = [outcome(c, e) == "unparsed" for c, e in zip(frame["correct"], frame["extracted"])]
    return frame[[c for c in ROLLOUT_COLUMNS if c in frame]]


def commit_chunks(run_dirs: Sequence[Path], out: Path = STUDY_DIR) -> list[Path]:
    """Each finished chunk run's compact records and run.json keys as ``out/chunks/<task>/<student>/questions-A-B``
    (parquet + json) with its per-rollout records beside them (``questions-A-B.questions.parquet``), to be committed
    as soon as the chunk finishes. A chunk already there is never replaced (a committed chunk is never recomputed):
    only a missing per-rollout file is added, from the same run (its json must be the committed one's). Returns the
    files written."""
    from harness.storage.records import load_run
    from harness.workflows.suite import chunk_dir_name, slug

    written = []
    for run_dir in run_dirs:
        nodes, questions, meta = load_run(run_dir)
        if not chunks.is_chunk(meta) or meta.get("status") != "complete":
            raise ConfigError(f"{run_dir} is not a finished chunk run (`opd run --questions A:B` that completed): "
                              f"only finished chunks are committed; finish it with the same command first.")
        config = meta["config"]
        target = Path(out) / CHUNKS_DIR / slug(config["task"]) / slug(config["student"]) / chunk_dir_name(
            tuple(config["questions"]))
        kept = {key: meta.get(key) for key in CHUNK_KEYS if key in meta}
        nodes_file, rollouts_file = target.with_suffix(".parquet"), rollouts_path(target.with_suffix(".parquet"))
        if nodes_file.exists():
            if rollouts_file.exists():
                continue
            committed = json.loads(target.with_suffix(".json").read_text())
            differing = [key for key in ("config", "code", "sessions") if committed.get(key) != kept.get(key)]
            if differing:
                raise ConfigError(f"{run_dir} is not the run {nodes_file} was committed from (its run.json differs "
                                  f"in {', '.join(differing)}), so its rollouts are not that chunk's: give the "
                                  f"chunk's own run directory to add {rollouts_file.name}; the nodes are never "
                                  f"replaced.")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_nodes(nodes[[c for c in COMPACT_COLUMNS if c in nodes]], nodes_file)
            target.with_suffix(".json").write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
            written += [nodes_file, target.with_suffix(".json")]
        _write_nodes(compact_rollouts(questions), rollouts_file)
        written.append(rollouts_file)
    return written


def merge_chunks(out: Path = STUDY_DIR) -> None:
    """``out/nodes.parquet``, ``runs.json`` and ``questions.parquet`` (per rollout) from the committed chunks (each
    cell's checked: disjoint ranges, one configuration and code; each chunk's rollouts cover its questions),
    keeping as they are the cells there that have no chunks (collected from whole runs; they have no per-rollout
    file). A chunk without its per-rollout file is refused (nothing written): ``build.py chunk RUN_DIR`` adds it."""
    out = Path(out)
    cells: dict[Path, list[Path]] = {}
    for path in sorted((out / CHUNKS_DIR).glob("*/*/questions-*.parquet")):
        if is_chunk_nodes(path):
            cells.setdefault(path.parent, []).append(path)
    missing = [str(rollouts_path(path)) for paths in cells.values() for path in paths
               if not rollouts_path(path).is_file()]
    if missing:
        raise ConfigError(f"{len(missing)} committed chunk(s) have no per-rollout file ({', '.join(missing)}), which "
                          f"the cost per question and the student's own accuracy read: run `python "
                          f"results/study/build.py chunk RUN_DIR` on each chunk's run directory (it adds the file "
                          f"and leaves the committed nodes as they are), then merge again. Nothing was written.")
    frames, runs, rollouts = [], [], []
    for cell, paths in cells.items():
        metas = [json.loads(path.with_suffix(".json").read_text()) for path in paths]
        parts = [(path, pq.read_table(path).to_pandas(), meta) for path, meta in zip(paths, metas)]
        nodes, _ = chunks.combine(str(cell), parts)
        for path, frame, meta in parts:
            rows = pq.read_table(rollouts_path(path)).to_pandas()
            have, expected = rows.question_id.nunique(), (meta.get("counts") or {}).get("questions")
            if expected is not None and have != expected or not set(frame.question_id) <= set(rows.question_id):
                raise ConfigError(f"{rollouts_path(path)} holds the rollouts of {have} question(s) but its chunk "
                                  f"{path.name} diagnosed {expected} (or has nodes on questions it lacks): it is not "
                                  f"that chunk's; delete it and add it again with `build.py chunk RUN_DIR`.")
            rollouts.append(rows)
        frames.append(nodes)
        runs.append(chunks.merge_meta(metas))
    chunked = {(run["config"]["task"], run["config"]["student"]) for run in runs}
    if (out / "nodes.parquet").is_file() and (out / "runs.json").is_file():  # the cells grown without chunks
        old = pq.read_table(out / "nodes.parquet").to_pandas()
        keep = ~pd.Series(list(zip(old.task, old.student)), index=old.index).isin(chunked)
        frames.insert(0, old[keep])
        runs[:0] = [run for run in json.loads((out / "runs.json").read_text())
                    if (run["config"]["task"], run["config"]["student"]) not in chunked]
    if not frames:
        raise ConfigError(f"no committed chunks under {out / CHUNKS_DIR} and no records in {out}: commit chunks "
                          f"with `build.py chunk RUN_DIR...` first.")
    _write_nodes(pd.concat(frames, ignore_index=True), out)
    (out / "runs.json").write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
    if rollouts:
        _write_nodes(pd.concat(rollouts, ignore_index=True), out / ROLLOUTS_FILE)


def _write_nodes(nodes: pd.DataFrame, out: Path) -> None:
    """``out/nodes.parquet`` (``out`` a directory), or ``out`` itself when it names a parquet file."""
    path = out if Path(out).suffix == ".parquet" else Path(out) / "nodes.parquet"
    pq.write_table(pa.Table.from_pandas(nodes, preserve_index=False), path, compression="zstd",
                   compression_level=19)


def backfill(data_dir: Path, study_dir: Path = STUDY_DIR) -> None:
    """Add to a compact file collected before they existed the outcome columns that can be derived without the
    runs: ``gold`` (each question's gold answer, from the task's own loader on ``data_dir``: the questions the runs
    read), ``prefix_shared`` at position 0 (every rollout shares the empty prefix: True); left null where it needs
    the rollouts' token ids (later positions) and ``rollout_unparsed`` (needs each rollout's extracted answer).
    Values present are kept."""
    from harness.api.task import resolve_task
    from harness.workflows.plugins import load_builtin

    load_builtin()
    path = Path(study_dir) / "nodes.parquet"
    nodes = pq.read_table(path).to_pandas()
    golds = {}
    for task in pd.unique(nodes["task"]):
        golds.update({q.id: q.gold for q in resolve_task(task).load(Path(data_dir))})
    derived = {"gold": nodes["question_id"].map(golds).astype(object),
               "prefix_shared": pd.Series(np.where(nodes["position"] == 0, True, None), index=nodes.index,
                                          dtype=object),
               "rollout_unparsed": pd.Series([None] * len(nodes), index=nodes.index, dtype=object)}
    for name, values in derived.items():
        nodes[name] = nodes[name].astype(object).where(nodes[name].notna(), values) if name in nodes else values
    if "prefix_shared" in nodes:
        nodes["prefix_shared"] = nodes["prefix_shared"].astype("boolean")
        nodes["rollout_unparsed"] = nodes["rollout_unparsed"].astype("boolean")
    _write_nodes(nodes[[c for c in COMPACT_COLUMNS if c in nodes]], Path(study_dir))


# ---------------------------------------------------------------- compute


def load(study_dir: Path = STUDY_DIR) -> tuple[pd.DataFrame, list[dict], dict[str, dict], pd.DataFrame]:
    """``(nodes, runs, accuracy reports, rollouts)`` from the compact files; ``rollouts`` (the chunked cells'
    per-rollout records) is empty where no chunk was merged."""
    study_dir = Path(study_dir)
    nodes = pq.read_table(study_dir / "nodes.parquet").to_pandas()
    runs = json.loads((study_dir / "runs.json").read_text())
    reports = [json.loads(path.read_text()) for path in sorted((study_dir / "accuracy").glob("*.json"))]
    accuracy = {f"{r['config']['task']} · {r['config']['student']}": r for r in reports}
    path = study_dir / ROLLOUTS_FILE
    rollouts = pq.read_table(path).to_pandas() if path.is_file() else pd.DataFrame(columns=ROLLOUT_COLUMNS)
    return nodes, runs, accuracy, rollouts


def cost(runs: Sequence[Mapping[str, Any]], nodes: pd.DataFrame) -> pd.DataFrame:
    """Per run: questions diagnosed (of the suite's limit; from run.json, or the records of a stopped run), those
    with any node, nodes and informative nodes (from the records), and the tokens and hours run.json states (a run
    stopped before its end states none)."""
    rows = []
    for run in runs:
        counts, timings, config = run.get("counts") or {}, run.get("timings") or {}, run["config"]
        cell = nodes[(nodes.task == config["task"]) & (nodes.student == config["student"])]
        keyed = cell.drop_duplicates(["question_id", "rollout_id", "position"])
        with_nodes = int(cell.question_id.nunique())
        # every session of a run grown or resumed over several (run.json's sessions), else its only one
        sessions = run.get("sessions") or [{"generated_tokens": counts.get("generated_tokens_this_session"),
                                            "total_s": timings.get("total_s")}]
        tokens = [s.get("generated_tokens") for s in sessions]
        seconds = [s.get("total_s") for s in sessions]
        rows.append({"task": config["task"], "student": config["student"],
                     "questions": counts.get("questions", with_nodes), "with_nodes": with_nodes,
                     "limit": config.get("limit"), "stopped": run.get("status") != "complete",
                     "teachers": len(config.get("teachers", [])), "nodes": len(keyed),
                     "informative": int(keyed.informative.astype(bool).sum()),
                     "generated_tokens": None if None in tokens else sum(tokens), "sessions": len(sessions),
                     "hours": math.nan if None in seconds else sum(seconds) / 3600,
                     "device": f"{run.get('device', '?')}, {run.get('threads', '?')} threads",
                     "code": (run.get("code") or "")[:8] or "—"})
    return pd.DataFrame.from_records(rows)


def accuracy_table(accuracy: Mapping[str, dict]) -> pd.DataFrame:
    rows = []
    for name, report in accuracy.items():
        config = report.get("config", {})
        for row in report["rows"]:
            rows.append({"report": name, "task": config.get("task"), "student": config.get("student"),
                         "samples": config.get("samples"), **{k: row.get(k) for k in (
                             "condition", "questions", "accuracy", "ci_low", "ci_high", "delta", "better", "worse",
                             "p_sign_flip")}})
    table = pd.DataFrame.from_records(rows)
    if table.empty:
        return table
    table["unparsed"] = [unparsed_share(accuracy[r.report], r.condition) for r in table.itertuples()]
    # each report compares every context with the student alone: one family, Holm-corrected
    table["p_holm"] = math.nan
    for _, group in table.groupby("report", sort=False):
        tested = group[pd.to_numeric(group.p_sign_flip, errors="coerce").notna()]
        if len(tested):
            table.loc[tested.index, "p_holm"] = stats.holm(tested.p_sign_flip.astype(float).to_numpy())
    return table


def unparsed_share(report: Mapping[str, Any], condition: str) -> float:
    """Share of a context's answers with no parseable answer (a third outcome, apart from wrong answers)."""
    answers = [a for q in report.get("questions", []) if q.get("condition") == condition
               for a in q.get("answers", []) if a is not None]
    return float(np.mean([not a.get("extracted") for a in answers])) if answers else math.nan


def render_accuracy_overview(table: pd.DataFrame, task: str) -> str:
    """The analog of the paper's accuracy table: every context (rows) per student (columns, largest first), each
    cell the accuracy, its difference from the student alone and that difference's Holm-corrected p, and n."""
    from harness.reports.findings import by_size

    rows = table[table.task == task]
    students = by_size(list(dict.fromkeys(rows.student)))[::-1]
    cells = {(r.condition, r.student): r for r in rows.itertuples()}
    body = []
    for condition in dict.fromkeys(rows.condition):
        line = [condition]
        for student in students:
            r = cells.get((condition, student))
            if r is None or _num(r.accuracy) == "—":
                line.append("—")
            elif condition == "student":
                line.append(f"{_num(r.accuracy)} (n {r.questions})")
            else:
                line.append(f"{_num(r.accuracy)} (Δ {_signed(r.delta)}, p {_p(r.p_holm)}, n {r.questions})")
        body.append(line)
    return _md(body, ["context", *students])


def answer_mix(accuracy: Mapping[str, dict]) -> pd.DataFrame:
    """Per report: the share of the student's own answers (no context) that extract to each answer ("unparsed"
    when none), beside the share of questions whose gold is that answer. A student leaning to one answer moves its
    accuracy by the gold mix alone, which is what accuracy differences between compressed students can reflect."""
    rows = []
    for name, report in accuracy.items():
        alone = [q for q in report.get("questions", []) if q.get("condition") == "student"]
        answers = pd.Series([a.get("extracted") or "unparsed" for q in alone for a in q["answers"] if a is not None],
                            dtype=object)
        golds = pd.Series([q.get("gold") for q in alone], dtype=object)
        for label, share in answers.value_counts(normalize=True).items():
            rows.append({"report": name, "task": report["config"]["task"], "student": report["config"]["student"],
                         "answer": label, "share": float(share), "gold_share": float((golds == label).mean())})
    return pd.DataFrame.from_records(rows, columns=["report", "task", "student", "answer", "share", "gold_share"])


def compute(nodes: pd.DataFrame, runs: Sequence[Mapping[str, Any]], accuracy: Mapping[str, dict],
            rollouts: pd.DataFrame | None = None) -> dict[str, Any]:
    """Every table of the write-up."""
    from harness.reports.analysis import oracle_routing
    from harness.reports.compare import rank_agreement
    from harness.reports.findings import findings
    from harness.reports.leaderboard import build
    from harness.reports.plan import plan
    from harness.storage.run_meta import RunMeta

    options = stats.Options()
    rollouts = pd.DataFrame(columns=ROLLOUT_COLUMNS) if rollouts is None else rollouts
    where = where_nodes(nodes)
    # the reasoning cells first: every table below keeps the order of first appearance
    order = {cell: i for i, cell in enumerate(cells_of(where, REASONING) + cells_of(where, CONTRAST)
                                             + cells_of(where, NO_NODE))}
    nodes = nodes.iloc[np.argsort([order.get(c, len(order)) for c in zip(nodes.task, nodes.student)],
                                  kind="stable")].reset_index(drop=True)
    runs = sorted(runs, key=lambda run: order.get((run["config"]["task"], run["config"]["student"]), len(order)))
    board = build(nodes, options=options)
    cost_table, accuracy_rows = cost(runs, nodes), accuracy_table(accuracy)
    leaders = leader_claims(board)
    agreement = rank_agreement(board.table)
    routing = oracle_routing(nodes, options=options)
    # harness.reports.plan per cell, with that cell's own run: its rate (MMLU's rollouts are longer than BoolQ's) and the
    # questions it diagnosed (a question where screening kept no node cost as much as one that kept some)
    cells = [(run, nodes[(nodes.task == run["config"]["task"]) & (nodes.student == run["config"]["student"])])
             for run in runs]
    sizes = [plan(cell, RunMeta.of(run), effect=EFFECT, options=options) for run, cell in cells
             if len(cell)]
    configs = [run["config"] for run in runs]
    settings = {"tasks": list(dict.fromkeys(c["task"] for c in configs)),
                "students": list(dict.fromkeys(c["student"] for c in configs)),
                "teachers": list(dict.fromkeys(t for c in configs for t in c["teachers"])),
                "settings": configs[0]["settings"], "seed": configs[0]["seed"],
                # each distinct set of knobs with the cells that ran it (the reasoning chunks spread their windows)
                "knobs": [(json.loads(knobs), [f"{c['task']} · {c['student']}" for c in configs
                                               if json.dumps(c["settings"], sort_keys=True) == knobs])
                          for knobs in dict.fromkeys(json.dumps(c["settings"], sort_keys=True) for c in configs)],
                "chunked": [(c["task"], c["student"], c["questions"]) for c in configs if c.get("questions")]}
    return {
        "settings": settings,
        "findings": findings(nodes, loss=HEADLINE_LOSS, options=options),
        "board": board.table, "pairs": board.pairs, "gold": board.gold[board.gold["loss"] == HEADLINE_LOSS],
        "leaders": leaders, "records": records_status(nodes), "before": previous_rules(nodes, board.table),
        "agreement": agreement[agreement["loss"] == HEADLINE_LOSS],
        "routing": routing[routing["loss"] == HEADLINE_LOSS],
        "plan": pd.concat([size["summary"] for size in sizes], ignore_index=True),
        "plan_rows": pd.concat([size["comparisons"] for size in sizes], ignore_index=True),
        "cost": cost_table, "accuracy": accuracy_rows, "answer_mix": answer_mix(accuracy),
        "where": where, "own_accuracy": own_accuracy(rollouts, accuracy_rows, where),
        "shared_mass": shared_mass(nodes, options), "contexts": best_contexts(board.table, board.pairs, where),
        "per_question": cost_per_question(cost_table, rollouts), "sessions": session_costs(runs),
        "records_by_setting": {name: records_status(nodes[_in_cells(nodes, cells_of(where, name))])
                               for name in (REASONING, CONTRAST) if len(cells_of(where, name))},
    }


REASONING = "reasoning"  # a cell whose informative nodes are not mostly at the first response token
CONTRAST = "direct-answer contrast"  # mostly there (harness.reports.depth: more than half): the answer prior, not a chain
NO_NODE = "no informative node"
SETTING_TITLES = {REASONING: "Reasoning setting", CONTRAST: "Direct-answer contrast (mostly first-token nodes)"}


def where_nodes(nodes: pd.DataFrame) -> pd.DataFrame:
    """Per (task, student), where its informative nodes are (harness.reports.depth: each node once): how many, the share at
    the first response token and the quartiles of depth_norm; and the setting of its task, decided from the task's
    informative nodes pooled over its cells (:data:`CONTRAST` where they are mostly first-token ones, else
    :data:`REASONING`): a setting is a property of the task's answer format, so one cell whose nodes drift off the
    first token (a compressed student that rambles) stays in its task's setting and its own share says so."""
    from harness.reports.depth import depth_summaries, depth_summary

    settings = {}
    for task, group in nodes.groupby("task", sort=False):
        pooled = depth_summary(group)
        settings[task] = NO_NODE if not pooled.nodes else CONTRAST if pooled.mostly_first_token else REASONING
    rows = []
    for (task, student), summary in depth_summaries(nodes).items():
        q1, median, q3 = summary.quartiles or (math.nan,) * 3
        rows.append({"task": task, "student": student, "setting": settings[task], "selected": summary.selected,
                     "informative": summary.nodes, "first_token": summary.first_token,
                     "first_token_share": math.nan if summary.first_token_share is None
                     else summary.first_token_share, "mostly_first_token": summary.mostly_first_token,
                     "q1": q1, "median": median, "q3": q3})
    return pd.DataFrame.from_records(rows, columns=["task", "student", "setting", "selected", "informative",
                                                    "first_token", "first_token_share", "mostly_first_token",
                                                    "q1", "median", "q3"])


def cells_of(where: pd.DataFrame, setting: str) -> list[tuple[str, str]]:
    rows = where[where.setting == setting]
    return list(zip(rows.task, rows.student))


def _in_cells(table: pd.DataFrame, cells: Sequence[tuple[str, str]]) -> pd.Series:
    """Rows of a (task, student) table in ``cells``; a cross-student row (student ``a vs b``) by its task."""
    tasks = {task for task, _ in cells}
    keys = set(cells)
    return pd.Series([(t, s) in keys or (isinstance(s, str) and " vs " in s and t in tasks)
                      for t, s in zip(table.task, table.student)], index=table.index, dtype=bool)


def own_accuracy(rollouts: pd.DataFrame, accuracy: pd.DataFrame, where: pd.DataFrame) -> pd.DataFrame:
    """The student's own accuracy per cell: from the diagnostic's rollouts where the per-rollout file has them (mean
    over questions of the share of correct rollouts, Wilson interval with the question as the unit as
    harness.accuracy computes it), else from the cell's ``opd accuracy`` report (its own sampled answers)."""
    from harness.workflows.accuracy import wilson_interval

    rows = []
    for (task, student), group in rollouts.groupby(["task", "student"], sort=False):
        per_question = group.groupby("question_id").agg(rate=("correct", "mean"), unparsed=("unparsed", "mean"),
                                                         solved=("correct", "any"))
        n = len(per_question)
        lo, hi = wilson_interval(float(per_question.rate.sum()), n)
        rows.append({"task": task, "student": student, "source": "diagnostic rollouts", "questions": n,
                     "answers": len(group), "accuracy": float(per_question.rate.mean()), "lo": lo, "hi": hi,
                     "unparsed": float(per_question.unparsed.mean()), "solved": float(per_question.solved.mean()),
                     "length_share": float((group.finish_reason == "length").mean()),
                     "tokens_per_rollout": float(group.response_tokens.mean())})
    done = {(r["task"], r["student"]) for r in rows}
    alone = accuracy[accuracy.condition == "student"] if not accuracy.empty else accuracy
    for r in alone.itertuples():
        if (r.task, r.student) in done or not ((where.task == r.task) & (where.student == r.student)).any():
            continue
        rows.append({"task": r.task, "student": r.student, "source": "opd accuracy report", "questions": r.questions,
                     "answers": math.nan, "accuracy": r.accuracy, "lo": r.ci_low, "hi": r.ci_high,
                     "unparsed": r.unparsed, "solved": math.nan, "length_share": math.nan,
                     "tokens_per_rollout": math.nan})
    return pd.DataFrame.from_records(rows, columns=["task", "student", "source", "questions", "answers", "accuracy",
                                                    "lo", "hi", "unparsed", "solved", "length_share",
                                                    "tokens_per_rollout"])


def shared_mass(nodes: pd.DataFrame, options: stats.Options) -> pd.DataFrame:
    """Per (task, student, teacher): the shared top-k mass (``topk_shared_mass``: the student's probability mass on
    the union of its and the teacher's top-10 tokens) over every node with one, its excess over the student's own
    top-10 mass at the same node (the ``self`` row: the union always holds the student's own top 10, so that is the
    floor), and its rank correlation with the teacher's alignment over the nodes with a defined alignment
    (harness.reports.analysis.correlations: cluster-bootstrap t interval and test over questions) with its
    Benjamini-Hochberg q over this table's tests on 10 questions or more."""
    from harness.reports.analysis import correlations
    from harness.reports.depth import NODE_IDENTITY

    key = list(NODE_IDENTITY)
    mass = nodes[key + ["teacher", "topk_shared_mass"]].dropna(subset=["topk_shared_mass"])
    own = mass[mass.teacher == "self"].set_index(key)["topk_shared_mass"]
    rows = []
    for (task, student, teacher), group in mass.groupby(["task", "student", "teacher"], sort=False):
        values = group.topk_shared_mass.astype(float)
        floor = own.reindex(pd.MultiIndex.from_frame(group[key])).to_numpy(float)
        excess = values.to_numpy() - floor
        rows.append({"task": task, "student": student, "teacher": teacher, "nodes": len(group),
                     "questions": group.question_id.nunique(), "mean": float(values.mean()),
                     "median": float(values.median()), "p10": float(values.quantile(0.1)),
                     "excess": float(np.nanmean(excess)) if np.isfinite(excess).any() else math.nan})
    table = pd.DataFrame.from_records(rows)
    rho = correlations(nodes, variables=("topk_shared_mass",), options=options)
    rho = rho[rho.loss == HEADLINE_LOSS][["task", "student", "teacher", "rho", "rho_lo", "rho_hi", "p",
                                          "questions", "nodes"]]
    rho = rho.rename(columns={"questions": "rho_questions", "nodes": "rho_nodes"})
    table = table.merge(rho, on=["task", "student", "teacher"], how="left")
    table["q"] = math.nan
    family = table.index[table.rho_questions.fillna(0) >= stats.MIN_QUESTIONS]
    if len(family):
        table.loc[family, "q"] = stats.benjamini_hochberg(table.loc[family, "p"].to_numpy(float))
    return table


def cost_per_question(cost_table: pd.DataFrame, rollouts: pd.DataFrame) -> pd.DataFrame:
    """Per cell: wall minutes, generated tokens (rollouts, screening and continuations: run.json's sessions) and
    informative nodes per question diagnosed, and the rollouts' own response tokens per question (the per-rollout
    file; chunked cells only)."""
    response = rollouts.groupby(["task", "student"]).agg(tokens=("response_tokens", "sum"),
                                                         questions=("question_id", "nunique"))
    rows = []
    for r in cost_table.itertuples():
        questions = float(r.questions) if r.questions else math.nan
        generated = float(r.generated_tokens) if pd.notna(r.generated_tokens) else math.nan
        own = response.loc[(r.task, r.student)] if (r.task, r.student) in response.index else None
        rows.append({"task": r.task, "student": r.student, "questions": r.questions,
                     "minutes": r.hours * 60 / questions, "generated": generated / questions,
                     "response": own.tokens / own.questions if own is not None else math.nan,
                     "informative": r.informative / questions,
                     "tokens_per_informative": generated / r.informative if r.informative else math.nan,
                     "device": r.device})
    return pd.DataFrame.from_records(rows)


def session_costs(runs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per session of each chunked cell (one per chunk, in question order): its questions, wall minutes per question
    and generated tokens per question (run.json's sessions), so a chunk slowed by other work beside it shows."""
    rows = []
    for run in runs:
        config = run["config"]
        ranges = config.get("questions") or []
        ranges = ranges if ranges and isinstance(ranges[0], list) else [ranges] if ranges else []
        for i, session in enumerate(run.get("sessions") or []):
            sampled = session.get("questions_sampled")
            if not ranges or not sampled:
                continue
            rows.append({"task": config["task"], "student": config["student"],
                         # one session per chunk unless one was resumed: then which chunk is not known here
                         "chunk": f"{ranges[i][0]}:{ranges[i][1]}" if len(ranges) == len(run["sessions"]) else "—",
                         "questions": sampled, "minutes": session["total_s"] / 60 / sampled,
                         "generated": session["generated_tokens"] / sampled,
                         "finished_at": session.get("finished_at"), "code": (session.get("code") or "")[:8]})
    return pd.DataFrame.from_records(rows, columns=["task", "student", "chunk", "questions", "minutes", "generated",
                                                    "finished_at", "code"])


def _pair(pairs: pd.DataFrame, task: str, student: str, a: str, b: str) -> tuple[str, float, int]:
    """``(relation of a to b, Holm p, shared questions)`` from the cell's paired tests on the headline loss:
    ``ahead`` / ``behind`` / ``not separated`` / ``not tested`` (``no pair`` where the cell lacks one of them)."""
    rows = pairs[(pairs.task == task) & (pairs.student == student) & (pairs.loss == HEADLINE_LOSS)]
    for first, second, flip in ((a, b, False), (b, a, True)):
        hit = rows[(rows.teacher == first) & (rows.other == second)]
        if len(hit):
            verdict = hit.iloc[0].verdict
            if flip and verdict in ("ahead", "behind"):
                verdict = "behind" if verdict == "ahead" else "ahead"
            return verdict, float(hit.iloc[0].p_holm), int(hit.iloc[0].questions)
    return "no pair", math.nan, 0


def best_contexts(board: pd.DataFrame, pairs: pd.DataFrame, where: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per cell on the headline loss: the leader on paired evidence (rank 1) and the best-ranked context (a teacher
    that is the student itself in a context: every teacher but ``model:``), or, where no pair rests on 10 shared
    questions, the highest walign as a description with the questions it rests on. Per task, for every two students
    of one family (same base model: compression) or of two sizes: whether their best contexts differ, and whether
    each cell's paired test separates its best context from the other's."""
    from harness.reports.findings import by_size
    from harness.api.model_specs import split_compression

    table = board[(board.loss == HEADLINE_LOSS) & board.walign.notna()]
    cells = []
    for (task, student), group in table.groupby(["task", "student"], sort=False):
        contexts = group[~group.teacher.str.startswith("model:")]
        ranked, ranked_contexts = group[group["rank"].notna()], contexts[contexts["rank"].notna()]
        top = contexts.sort_values("walign", ascending=False).iloc[0] if len(contexts) else None
        cells.append({"task": task, "student": student,
                      "setting": where.set_index(["task", "student"]).setting.get((task, student), NO_NODE),
                      "leader": ranked.sort_values("rank").iloc[0].teacher if len(ranked) else None,
                      "best_context": ranked_contexts.sort_values("rank").iloc[0].teacher if len(ranked_contexts)
                      else None, "highest_walign": top.teacher if top is not None else None,
                      "highest_value": top.walign if top is not None else math.nan,
                      "questions": int(group.align_questions.max())})
    cells = pd.DataFrame.from_records(cells)
    changes = []
    for task, group in cells.groupby("task", sort=False):
        students = by_size(list(group.student))[::-1]  # largest first
        base = {s: split_compression(s)[0] for s in students}
        rows = group.set_index("student")
        for i, first in enumerate(students):
            for second in students[i + 1:]:
                axis = "compression" if base[first] == base[second] else "size"
                a, b = rows.loc[first], rows.loc[second]
                if pd.isna(a.best_context) or pd.isna(b.best_context):
                    few = [f"{s} (n={rows.loc[s].questions})" for s in (first, second)
                           if pd.isna(rows.loc[s].best_context)]
                    outcome, detail = "not testable", f"no ranked context in {', '.join(few)}"
                elif a.best_context == b.best_context:
                    outcome, detail = "same", f"`{a.best_context}` in both"
                else:
                    in_first = _pair(pairs, task, first, a.best_context, b.best_context)
                    in_second = _pair(pairs, task, second, b.best_context, a.best_context)
                    separated = in_first[0] == "ahead" and in_second[0] == "ahead"
                    outcome = "changes" if separated else "not settled"
                    detail = (f"`{a.best_context}` best in {first}, against `{b.best_context}` there: "
                              f"{in_first[0]} (Holm p {_p(in_first[1])}, n {in_first[2]}); `{b.best_context}` best "
                              f"in {second}, against `{a.best_context}` there: {in_second[0]} (Holm p "
                              f"{_p(in_second[1])}, n {in_second[2]})")
                changes.append({"task": task, "student": first, "other": second, "axis": axis, "outcome": outcome,
                                "detail": detail})
    return {"cells": cells, "changes": pd.DataFrame.from_records(
        changes, columns=["task", "student", "other", "axis", "outcome", "detail"])}


def leader_claims(board) -> pd.DataFrame:
    """Per (task, student) on the headline loss: the leader by paired evidence (rank 1), the teachers it is
    significantly ahead of (Holm within the cell) with those claims' Benjamini-Hochberg q across every cell's leader
    claims, the teachers no test separates from it, and those it was not tested against (< 10 shared questions)."""
    table = board.table[(board.table.loss == HEADLINE_LOSS) & board.table["rank"].notna()]
    pairs = board.pairs[board.pairs.loss == HEADLINE_LOSS]
    rows = []
    for (task, student), group in table.groupby(["task", "student"], sort=False):
        leader = group.sort_values("rank").iloc[0]
        cell = pairs[(pairs.task == task) & (pairs.student == student)
                     & ((pairs.teacher == leader.teacher) | (pairs.other == leader.teacher))]
        for pair in cell.itertuples():
            other = pair.other if pair.teacher == leader.teacher else pair.teacher
            ahead = (pair.verdict == "ahead") == (pair.teacher == leader.teacher) and pair.verdict in ("ahead",
                                                                                                     "behind")
            rows.append({"task": task, "student": student, "leader": leader.teacher, "walign": leader.walign,
                         "walign_shared": leader.walign_shared, "questions": leader.align_questions,
                         "other": other, "relation": "ahead" if ahead else "not tested"
                         if pair.verdict == "not tested" else "not separated", "p_holm": pair.p_holm,
                         "p_at_floor": bool(pair.p_at_floor), "pair_questions": pair.questions})
        if not len(cell):
            rows.append({"task": task, "student": student, "leader": leader.teacher, "walign": leader.walign,
                         "walign_shared": leader.walign_shared, "questions": leader.align_questions, "other": None,
                         "relation": None, "p_holm": math.nan, "p_at_floor": False, "pair_questions": 0})
    claims = pd.DataFrame.from_records(rows)
    if claims.empty:
        return claims
    claims["q_bh"] = math.nan
    ahead = claims.relation == "ahead"
    if ahead.any():
        claims.loc[ahead, "q_bh"] = stats.benjamini_hochberg(claims.loc[ahead, "p_holm"].to_numpy(float))
    return claims


def records_status(nodes: pd.DataFrame) -> dict[str, Any]:
    """What the compact records can and cannot give: the share of nodes whose prefix status, outcome and gold are
    known, and whether the columns to recompute S_hat, g* and the alignments are there."""
    keyed = nodes.drop_duplicates(["task", "student", "question_id", "rollout_id", "position"])
    def known(name: str) -> float:
        return float(keyed[name].notna().mean()) if name in keyed else 0.0
    return {"nodes": len(keyed), "first_token": float((keyed.position == 0).mean()),
            "prefix_known": known("prefix_shared"), "unparsed_known": known("rollout_unparsed"),
            "gold_known": known("gold"),
            "recompute": [c for c in RECOMPUTE_COLUMNS if c not in nodes or not nodes[c].notna().any()]}


def previous_rules(nodes: pd.DataFrame, board: pd.DataFrame) -> pd.DataFrame:
    """Per (task, student) on the headline loss, the statements the rules before issue 30 made, recomputed from the
    same records: the leader by the highest walign over each teacher's own questions (among teachers with 10 or
    more), and the questions the correct-vs-incorrect contrast rested on when every node entered it (the largest
    over teachers), beside what the paired rules give now."""
    rows = []
    used = nodes[nodes.informative.astype(bool) & nodes.context_ok.astype(bool)
                 & nodes[f"align_{HEADLINE_LOSS}"].notna() & nodes.rollout_correct.notna()]
    table = board[(board.loss == HEADLINE_LOSS) & board.walign.notna()]
    for (task, student), group in table.groupby(["task", "student"], sort=False):
        enough = group[group.align_questions >= stats.MIN_QUESTIONS]
        old = enough.sort_values("walign", ascending=False).iloc[0].teacher if len(enough) else None
        new = group[group["rank"] == 1].teacher
        cell = used[(used.task == task) & (used.student == student)]
        both = cell.groupby(["teacher", "question_id"]).rollout_correct.nunique()
        rows.append({"task": task, "student": student, "leader_before": old,
                     "leader_now": new.iloc[0] if len(new) else None,
                     "contrast_questions_before": int((both == 2).groupby(level="teacher").sum().max()) if len(both)
                     else 0, "contrast_questions_now": int(group.ok_bad_questions.max())})
    return pd.DataFrame.from_records(rows)


# ---------------------------------------------------------------- render


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.{digits}f}"


def _count(value: Any) -> str:
    return "—" if value is None or not math.isfinite(float(value)) else str(int(value))


def _text(value: Any) -> str:
    return value if isinstance(value, str) and value else "—"


def _with_interval(value: Any, lo: Any, hi: Any) -> str:
    return "—" if _num(value) == "—" else f"{_num(value)} {_interval(lo, hi)}"


def _interval(lo: Any, hi: Any, digits: int = 3) -> str:
    return "—" if _num(lo) == "—" else f"[{_num(lo, digits)}, {_num(hi, digits)}]"


def _signed(value: Any) -> str:
    return "—" if _num(value) == "—" else f"{float(value):+.3f}"


def _p(value: Any, floor: bool = False) -> str:
    """A p-value; ``floor``: a Monte Carlo p at its floor 1/(permutations+1), so the true p is at most this."""
    if value is None or not math.isfinite(float(value)):
        return "—"
    if floor:  # an upper bound: rounded up, never down
        return f"<= {math.ceil(float(value) * 1000 - 1e-9) / 1000:.3f}" if value > 0.001 else "<0.001"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _cell(value: Any) -> str:
    """A Markdown table cell: ``|`` escaped, or it would split the cell and shift every column after it."""
    return str(value).replace("|", "\\|")


def _md(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate([[_cell(v) for v in row] for row in rows], headers=[_cell(h) for h in headers],
                    tablefmt="github", disable_numparse=True)


def render_board(board: pd.DataFrame, task: str, student: str) -> str:
    table = board[(board.task == task) & (board.student == student) & (board.loss == HEADLINE_LOSS)]
    rows = [[_count(r.rank), r.teacher, _with_interval(r.walign, r.walign_lo, r.walign_hi), r.align_questions,
             r.informative, _num(r.walign_shared),
             "not testable" if r.ok_bad_verdict == "not testable"
             else _with_interval(r.ok_minus_bad, r.ok_minus_bad_lo, r.ok_minus_bad_hi),
             r.ok_bad_questions, _p(r.p_ok_minus_bad), _text(r.group), _text(r.untested)]
            for r in table.itertuples()]
    shared = table.shared_questions.dropna()
    return _md(rows, ["rank", "teacher", "walign, own questions [95% CI]", "n (own questions)", "informative nodes",
                      f"walign, shared ({_count(shared.max()) if len(shared) else 0} questions)", "ok − bad [95% CI]",
                      "n (questions)", "p (ok − bad)", "group", "not tested against"])


def render_gold(gold: pd.DataFrame, board: pd.DataFrame, task: str, student: str) -> str:
    """walign per gold label beside the pooled walign, for a categorical task."""
    part = gold[(gold.task == task) & (gold.student == student)]
    pooled = board[(board.task == task) & (board.student == student) & (board.loss == HEADLINE_LOSS)]
    labels = sorted(pd.unique(part.gold))
    cells = {(r.teacher, r.gold): r for r in part.itertuples()}
    rows = [[r.teacher, _with_interval(r.walign, r.walign_lo, r.walign_hi)]
            + [_with_interval(c.walign, c.walign_lo, c.walign_hi) + f" (n {c.questions})"
               if (c := cells.get((r.teacher, label))) is not None else "—" for label in labels]
            for r in pooled.itertuples() if any((r.teacher, label) in cells for label in labels)]
    return _md(rows, ["teacher", "walign, pooled [95% CI]", *(f"gold {label} [95% CI]" for label in labels)])


def render_accuracy(table: pd.DataFrame, report: str) -> str:
    rows = [[r.condition, r.questions, _with_interval(r.accuracy, r.ci_low, r.ci_high), _num(r.unparsed),
             _num(r.delta), "—" if r.better is None or pd.isna(r.better) else f"{int(r.better)} / {int(r.worse)}",
             _p(r.p_sign_flip), _p(r.p_holm)]
            for r in table[table.report == report].itertuples()]
    return _md(rows, ["context", "n (questions)", "accuracy [95% CI]", "unparsed answers", "Δ vs student",
                      "better / worse", "p", "p (Holm)"])


def design(settings: Mapping[str, Any]) -> list[str]:
    """What every run shares, read from the runs' configurations."""
    from harness.api.model_specs import split_compression

    how = "; ".join(f"{student}: {compression.describe()}" for student in settings["students"]
                    for compression in [split_compression(student)[1]] if compression is not None)
    knobs = [f"- Knobs (METHOD's names) of {', '.join(cells)}: "
             + ", ".join(f"{key}={value}" for key, value in values.items() if value is not None) + "."
             for values, cells in settings["knobs"]]
    chunked = [f"{task} · {student}: questions " + ", ".join(f"{a}:{b}" for a, b in (
                   ranges if isinstance(ranges[0], list) else [ranges])) for task, student, ranges in settings["chunked"]]
    return [
        f"- Tasks {', '.join(settings['tasks'])}; students {', '.join(settings['students'])} ({how}, of the same "
        "model's weights); teachers "
        f"{', '.join(settings['teachers'])}; the compressed students also get the uncompressed model (and a "
        "compressed reasoning student the larger one of its family) as an external teacher.",
        *knobs,
        f"- Seed {settings['seed']}. `--selection screened` spends the "
        "continuations on nodes whose outcome visibly depends on the token and estimates `S_hat` from fresh "
        "continuations only (README, Node selection), so every kept node's `S_hat` is unbiased; `even` depth "
        "windows spread the reasoning cells' nodes over the chain (docs/measurements/depth-spread-gsm8k.md).",
        *(["- The reasoning cells grow by chunks (suites/study-gsm8k.toml, OPD_QUESTIONS_IN_FLIGHT=4, each chunk "
           "from one fixed commit, committed under results/study/chunks/ as soon as it finishes and never "
           "recomputed; `build.py merge` counts every node once): " + "; ".join(chunked) + "."] if chunked else []),
        "- Size of the direct-answer cells: the pilot was the study's first build (the first 26 BoolQ and 10 MMLU "
        "questions per cell, "
        "commit a6c036b), on which `opd plan` asked for about 250 to 350 BoolQ questions per cell for the median "
        "comparison to detect 0.1 in alignment, and over a thousand for every comparison: more than a day of 2 "
        "CPU cores for the grid. This build runs the questions in What ran (as many as one session's compute "
        "allowed; a larger `limit` in suites/study.toml grows every cell in place) and states the minimum "
        "detectable effect it reached (In short) and the questions and hours each cell still needs (What more "
        "compute would settle).",
        "- Statistics (METHOD, Statistics): the question is the unit. Intervals: for means (walign, ok − bad, "
        "teacher pairs, findings 1-3, the routing gain) the 95% interval inverts the sign-flip test over questions "
        "(every delta it does not reject); for rank correlations (findings 4-5) it is a cluster-bootstrap t "
        "interval (questions resampled, questions - 1 degrees of freedom); none below 10 questions; accuracy "
        "intervals are Wilson with the question as the unit, its test a sign-flip test of per-question "
        "differences (the paired, multi-sample analogue of McNemar). Families: pairs of teachers Holm-corrected "
        "per (task, student, loss), the findings Holm-corrected over every claim, ok − bad Benjamini-Hochberg per "
        "(task, student), leader and routing claims Benjamini-Hochberg across cells; a test on fewer than 10 "
        "questions is in no family (not tested). A Monte Carlo p-value at its floor 1/(permutations+1) is printed "
        "with <=, and one near its decision (within a factor 2 of 0.05 after correction) is drawn again with ten "
        "times the permutations, up to 10^6, until the decision is stable.",
    ]


def summary(numbers: Mapping[str, pd.DataFrame]) -> list[str]:
    """The write-up's bullet points, each read off a table (so the prose cannot drift from the numbers)."""
    from harness.reports.findings import by_size

    lines = []
    found = numbers["findings"]
    claims = found[found["direction"] != "(context)"]
    for finding, group in claims.groupby("finding", sort=True):
        verdicts = group["verdict"].value_counts()
        counted = ", ".join(f"{verdicts[v]} {_verdict(v, f'<{stats.MIN_QUESTIONS}')}"
                            for v in ("reproduced", "opposite", "inconclusive", "too few questions", "not testable")
                            if v in verdicts)
        where = "".join(
            f"; {verdict}: " + ", ".join(f"{r.task} · {r.student} ({r.test}, {_num(r.estimate)}, Holm p "
                                         f"{_p(r.p_holm, r.p_at_floor)}, {r.questions} questions)"
                                         for r in rows.itertuples())
            for verdict in ("reproduced", "opposite") for rows in [group[group.verdict == verdict]] if len(rows))
        lines.append(f"- {finding}: {len(group)} test(s): {counted}{where}.")
    lines += leader_lines(numbers["leaders"], numbers["board"])
    lines += label_lines(numbers["gold"])
    lines += minimum_detectable_effects(numbers["plan_rows"])
    routing = numbers["routing"].dropna(subset=["cv_gain"])
    routing = routing[routing.cv_questions >= stats.MIN_QUESTIONS]  # the table has the rest
    for r in routing.itertuples():
        lines.append(f"- Per-node routing, {r.task} · {r.student}: cross-fitted gain over `{r.best_single}` "
                     f"{_with_interval(r.cv_gain, r.cv_gain_lo, r.cv_gain_hi)}, p {_p(r.p_cv_gain)}, BH q across "
                     f"cells {_p(r.q_cv_gain)} ({_count(r.cv_questions)} questions).")
    accuracy = numbers["accuracy"]
    alone = accuracy[accuracy.condition == "student"] if not accuracy.empty else accuracy
    for task, group in alone.groupby("task", sort=False):  # what compression did to the student itself
        group = group.set_index("student").loc[by_size(list(group.student))[::-1]].reset_index()
        students = ", ".join(f"{r.student} {_with_interval(r.accuracy, r.ci_low, r.ci_high)}"
                             for r in group.itertuples())
        lines.append(f"- Accuracy of the student alone, {task} ({_count(group.questions.max())} questions): "
                     f"{students}.")
        if task not in set(numbers["board"].task) and (group.accuracy == 0).all():
            lines.append(f"- {task} is out of reach for this student: it solves none of the "
                         f"{_count(group.questions.max())} questions. Where no rollout and no continuation is "
                         "correct, S_hat = 0 for every token and g* = 0: the diagnostic would find next to no "
                         "informative node, so it was not run.")
        mix = numbers["answer_mix"]
        mix = mix[mix.task == task]
        if 1 < mix.answer.nunique() <= 6:  # a closed answer set: how much of that accuracy is a lean to one answer
            gold = mix.drop_duplicates("answer").query("gold_share > 0").sort_values("answer")
            leans = "; ".join(
                f"{student} " + ", ".join(f"{r.answer} {r.share:.0%}" for r in
                                          mix[mix.student == student].sort_values("answer").itertuples())
                for student in group.student)
            lines.append(f"- Answers of the student alone, {task} (share of its answers; gold: "
                         f"{', '.join(f'{r.answer} {r.gold_share:.0%}' for r in gold.itertuples())} of questions): "
                         f"{leans}.")
    wrong = accuracy[accuracy.condition == "self:correct-wrong"] if not accuracy.empty else accuracy
    for r in wrong[wrong.questions >= stats.MIN_QUESTIONS].itertuples():  # the tables have the rest
        lines.append(f"- Wrong demonstrations, {r.report}: accuracy with correct+wrong examples "
                     f"{_with_interval(r.accuracy, r.ci_low, r.ci_high)}, {_num(r.delta)} against the student "
                     f"alone (sign-flip p {_p(r.p_sign_flip)}, {r.questions} questions).")
    return lines


def leader_lines(leaders: pd.DataFrame, board: pd.DataFrame) -> list[str]:
    """One line per (task, student): the leader on paired evidence, the teachers it is ahead of (Holm in the cell,
    BH across cells), those no test separates from it and those it was not tested against."""
    lines = []
    for (task, student), group in leaders.groupby(["task", "student"], sort=False):
        first = group.iloc[0]
        cell = board[(board.task == task) & (board.student == student) & (board.loss == HEADLINE_LOSS)]
        ranked = int(cell["rank"].notna().sum())
        ahead = group[(group.relation == "ahead") & (group.q_bh < stats.ALPHA)]
        lost = group[(group.relation == "ahead") & ~(group.q_bh < stats.ALPHA)]
        mates = group[group.relation == "not separated"]
        untested = group[group.relation == "not tested"]
        parts = []
        if len(ahead):
            parts.append("ahead of " + ", ".join(f"{r.other} (Holm p {_p(r.p_holm, r.p_at_floor)}, BH q "
                                                 f"{_p(r.q_bh)})" for r in ahead.itertuples()))
        if len(lost):
            parts.append("ahead after Holm but not after BH across cells of " + ", ".join(
                f"{r.other} (q {_p(r.q_bh)})" for r in lost.itertuples()))
        if len(mates):
            parts.append("not separated from " + ", ".join(mates.other))
        if len(untested):
            parts.append("not tested against " + ", ".join(untested.other) + f" (fewer than {stats.MIN_QUESTIONS} "
                         "shared questions)")
        unranked = cell[cell["rank"].isna() & cell.walign.notna()].teacher.tolist()
        lines.append(f"- {task} · {student}: `{first.leader}` leads on paired evidence (no paired test puts it "
                     f"behind another of the {ranked} ranked teachers; walign {_num(first.walign)} over its own "
                     f"{first.questions} questions, {_num(first.walign_shared)} on the questions every ranked teacher "
                     f"of the cell shares); " + ("; ".join(parts) if parts else "no other teacher")
                     + (f"; unranked (no pair tested): {', '.join(unranked)}" if unranked else "") + ".")
    return lines


def label_lines(gold: pd.DataFrame) -> list[str]:
    """Teachers whose walign has opposite signs on two gold labels, both intervals excluding 0 (10 questions or more
    each): their pooled walign, and any claim resting on it, follows the answer prior as much as the question."""
    lines = []
    for (task, student, teacher), rows in gold.groupby(["task", "student", "teacher"], sort=False):
        rows = rows[rows.questions >= stats.MIN_QUESTIONS]
        positive, negative = rows[rows.walign_lo > 0], rows[rows.walign_hi < 0]
        if len(positive) and len(negative):
            parts = ", ".join(f"gold {r.gold} {_with_interval(r.walign, r.walign_lo, r.walign_hi)} ({r.questions} "
                              "questions)" for r in pd.concat([positive, negative]).itertuples())
            lines.append(f"- Label-driven, {task} · {student}: `{teacher}` aligns with opposite signs by gold "
                         f"label ({parts}); its pooled walign mixes the two, and so does every comparison with it.")
    return lines


def records_lines(status: Mapping[str, Any]) -> list[str]:
    """What the committed compact records can and cannot give (no statement is made from what they lack)."""
    lines = [f"- `prefix_shared` (is the node's prefix also that of a rollout of the other outcome?) is known for "
             f"{status['prefix_known']:.0%} of the {status['nodes']} nodes: the {status['first_token']:.0%} at "
             "position 0, where every rollout shares the prompt (always shared). At later positions it needs the "
             "rollouts' token ids, which the runs' questions.parquet holds and the compact file of this study "
             "does not: unknown counts as shared, so no node enters ok − bad or finding 1 and both are not "
             "testable here. A rerun (or `build.py collect` on the original runs, whose questions.parquet "
             "`opd` reads) records it for every node."]
    lines.append(f"- Unparsed responses (no answer found) are known for {status['unparsed_known']:.0%} of the nodes' "
                 "rollouts: the compact file keeps each rollout's grade but not its extracted answer, so here an "
                 "unparsed rollout still counts as incorrect in align_correct / align_incorrect. The accuracy "
                 "reports keep every answer: In short gives the student's unparsed share, and the accuracy tables "
                 "count unparsed answers apart.")
    lines.append(f"- The gold answer is known for {status['gold_known']:.0%} of the nodes (added from the task's "
                 "own loader on the data the runs read): walign by gold label below.")
    if status["recompute"]:
        lines.append("- The columns that recompute S_hat, g* and each alignment from scratch ("
                     + ", ".join(f"`{c}`" for c in status["recompute"]) + ") are not in this compact file, collected "
                     "before `build.py collect` kept them; the next collect keeps them (tests/test_study.py "
                     "recomputes the alignments from them).")
    return lines


def changes_lines(before: pd.DataFrame, findings_table: pd.DataFrame, pairs: pd.DataFrame) -> list[str]:
    """The statements the rules of issue 30 changed, each recomputed from the same records under both rules."""
    lines = []
    redrawn = pairs[(pairs.loss == HEADLINE_LOSS) & (pairs.draws > stats.PERMUTATIONS)]
    for r in redrawn.itertuples():
        lines.append(f"- {r.task} · {r.student}, `{r.teacher}` vs `{r.other}`: its Holm p lay near 0.05 with "
                     f"{stats.PERMUTATIONS} sign flips, so it was drawn again with {r.draws}: Holm p "
                     f"{_p(r.p_holm)}, verdict {r.verdict}.")
    moved = before[before.leader_before != before.leader_now]
    for r in moved.itertuples():
        lines.append(f"- {r.task} · {r.student}: the leader was `{r.leader_before}` (highest walign over each "
                     f"teacher's own questions); on paired evidence it is `{r.leader_now}`.")
    kept = before[before.leader_before == before.leader_now]
    if len(kept):
        lines.append("- Leader unchanged under the paired rule: " + ", ".join(
            f"{r.task} · {r.student} (`{r.leader_now}`)" for r in kept.itertuples()) + ".")
    lines.append("- ok − bad and finding 1 rested, with every node counted, on up to " + ", ".join(
        f"{r.contrast_questions_before} ({r.task} · {r.student})" for r in before.itertuples())
        + " questions per cell; only nodes past the divergence of correct and incorrect rollouts count now, and "
        + (f"at most {int(before.contrast_questions_now.max())} question(s) per cell qualify"
           if before.contrast_questions_now.max() > 0 else "no question qualifies")
        + " from these records (What the records give): "
        + ("their estimates, intervals, p-values, verdicts and the ok − bad MDE are gone (not testable)."
           if before.contrast_questions_now.max() == 0 else "the tables give what remains."))
    small = findings_table[(findings_table.direction != "(context)")
                           & (findings_table.questions < stats.MIN_QUESTIONS)]
    lines.append(f"- The findings' Holm family no longer holds the {len(small)} claims on fewer than "
                 f"{stats.MIN_QUESTIONS} questions (they could reach no verdict), so every other Holm p is corrected "
                 "for fewer tests; p-values at their Monte Carlo floor print with <=; pairs of teachers on fewer than "
                 f"{stats.MIN_QUESTIONS} shared questions are not tested (no longer read as not separated), and the "
                 "leader lines list them apart.")
    lines.append("- New: walign by gold label for both tasks (both are categorical), and the finding-5 rows render "
                 "(their `depth | entropy` no longer splits the Markdown cell).")
    return lines


def minimum_detectable_effects(plan_rows: pd.DataFrame) -> list[str]:
    """Per task, the MDE the study reached for ``ok_minus_bad`` and for the teacher pairs on the headline loss, over
    the tests that rest on enough questions for a verdict (below that the MDE is a formula, not a reading)."""
    lines = []
    headline = plan_rows[plan_rows.loss == HEADLINE_LOSS]
    for task, rows in headline.groupby("task", sort=False):
        enough = rows[(rows.questions >= stats.MIN_QUESTIONS) & rows.mde.notna()]
        parts = []
        for comparison, label in (("ok_minus_bad", "ok − bad"), ("pair", "teacher pairs")):
            mde = enough.loc[enough.comparison == comparison, "mde"]
            if len(mde):
                parts.append(f"{label} median {_num(mde.median())} ({_num(mde.min())} to {_num(mde.max())}, "
                             f"{len(mde)} tests)")
        few = len(rows) - len(enough)
        reached = "; ".join(parts) if parts else f"no test rests on {stats.MIN_QUESTIONS} questions or more"
        lines.append(f"- Minimum detectable effect reached, {task} (`{HEADLINE_LOSS}`, 80% power, alpha 0.05, "
                     f"tests on {stats.MIN_QUESTIONS} questions or more; the study was sized for {EFFECT}): {reached}"
                     + (f"; {few} more tests rest on fewer questions." if few else "."))
    return lines


def _median_to_run(plan_rows: pd.DataFrame, task: str, student: str) -> float:
    rows = plan_rows[(plan_rows.task == task) & (plan_rows.student == student)]["questions_to_run"].dropna()
    return float(np.ceil(rows.median())) if len(rows) else math.nan


def _only(numbers: Mapping[str, Any], cells: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The tables of :func:`compute` restricted to ``cells`` (accuracy reports: to the cells' tasks)."""
    tasks = {task for task, _ in cells}
    out = dict(numbers)
    out["all_findings"] = numbers["findings"]
    for name in ("findings", "board", "pairs", "gold", "leaders", "routing", "plan", "plan_rows", "cost", "where",
                 "own_accuracy", "shared_mass", "per_question", "before", "agreement"):
        table = numbers[name]
        if isinstance(table, pd.DataFrame) and len(table) and {"task", "student"} <= set(table.columns):
            out[name] = table[_in_cells(table, cells)]
    for name in ("accuracy", "answer_mix"):
        table = numbers[name]
        out[name] = table[table.task.isin(tasks)] if len(table) else table
    contexts = numbers["contexts"]
    out["contexts"] = {"cells": contexts["cells"][_in_cells(contexts["cells"], cells)],
                       "changes": contexts["changes"][contexts["changes"].task.isin(tasks)]}
    return out


def contrast_note(where: pd.DataFrame) -> str:
    """What the direct-answer cells' nodes are, read off Where the nodes are: the pooled share at the first
    response token, the range over cells and the cells where it is half or less."""
    part = where[where.setting == CONTRAST]
    if not len(part):
        return ""
    off = part[~part.mostly_first_token.astype(bool)]
    return (f"Direct-answer contrast: {_share(part.first_token.sum() / part.informative.sum())} of these cells' "
            f"informative nodes are first-token nodes (per cell {_share(part.first_token_share.min())} to "
            f"{_share(part.first_token_share.max())}; Where the nodes are), where every rollout shares the prefix: "
            "they measure the answer prior more than a chain, and findings 1 and 5 and per-token routing are not "
            "really tested there"
            + (". Not mostly first-token: " + ", ".join(f"{r.task} · {r.student} ({_share(r.first_token_share)}, "
                                                        f"median depth_norm {_num(r.median, 2)})"
                                                        for r in off.itertuples()) + "." if len(off) else "."))


def _verdict(verdict: Any, questions: Any) -> str:
    """A finding's verdict; below the 10-question floor no verdict: inconclusive at its n."""
    if verdict == "too few questions":
        return f"inconclusive at n{questions}" if isinstance(questions, str) else \
            f"inconclusive at n={_count(questions)}"
    return _text(verdict)


def render_findings(table: pd.DataFrame) -> str:
    rows = [[r.finding, r.test, r.task, _text(r.student), r.direction, _num(r.estimate), _interval(r.lo, r.hi),
             _p(r.p, r.p_at_floor), _p(r.p_holm, r.p_at_floor), r.questions, _num(r.mde),
             _verdict(r.verdict, r.questions)]
            for r in table.itertuples()]
    return _md(rows, ["finding", "test", "task", "student", "paper", "estimate", "95% CI", "p", "p (Holm)",
                      "n (questions)", "MDE", "verdict"])


def render_where(where: pd.DataFrame) -> str:
    return _md([[r.task, r.student, r.setting, _count(r.selected), r.informative, r.first_token,
                 _share(r.first_token_share), "yes" if r.mostly_first_token else "no",
                 f"{_num(r.q1, 2)} / {_num(r.median, 2)} / {_num(r.q3, 2)}"]
                for r in where.itertuples()],
               ["task", "student", "setting (the task's pooled nodes)", "nodes", "informative", "at the first token",
                "share", "mostly first-token", "depth_norm quartiles (informative)"])


def _share(value: Any) -> str:
    return "—" if _num(value) == "—" else f"{float(value):.0%}"


def render_own_accuracy(table: pd.DataFrame) -> str:
    return _md([[r.task, r.student, r.source, r.questions, _count(r.answers),
                 _with_interval(r.accuracy, r.lo, r.hi), _num(r.unparsed), _share(r.solved), _share(r.length_share),
                 _num(r.tokens_per_rollout, 0)] for r in table.itertuples()],
               ["task", "student", "from", "n (questions)", "answers", "accuracy [95% CI]", "unparsed",
                "questions with a correct rollout", "cut at the token cap", "response tokens per rollout"])


def render_shared_mass(table: pd.DataFrame) -> str:
    rows = []
    for r in table.itertuples():
        if r.teacher == "self":
            relation = "(the student's own top-10 mass: the floor)"
        elif _num(r.rho) == "—":
            relation = "—"
        elif r.rho_questions < stats.MIN_QUESTIONS:
            relation = f"{_num(r.rho)} (inconclusive at n={_count(r.rho_questions)})"
        else:
            relation = f"{_with_interval(r.rho, r.rho_lo, r.rho_hi)}, p {_p(r.p)}, q {_p(r.q)}"
        rows.append([r.task, r.student, r.teacher, r.nodes, r.questions, _num(r.mean), _num(r.median), _num(r.p10),
                     "—" if r.teacher == "self" else _signed(r.excess), relation, _count(r.rho_questions)])
    return _md(rows, ["task", "student", "teacher", "nodes", "questions", "mean", "median", "10th percentile",
                      "excess over the student's own", "Spearman with alignment [95% CI]",
                      "n (questions, with alignment)"])


def render_contexts(contexts: Mapping[str, pd.DataFrame]) -> str:
    cells = contexts["cells"]
    return _md([[r.task, r.student, r.setting, _text(r.leader), _text(r.best_context),
                 f"`{r.highest_walign}` {_num(r.highest_value)}" if pd.notna(r.highest_walign) else "—",
                 r.questions]
                for r in cells.itertuples()],
               ["task", "student", "setting", "leader (paired evidence)", "best context (paired evidence)",
                "highest walign among contexts (description)", "n (questions, most of any teacher)"])


def render_per_question(table: pd.DataFrame) -> str:
    return _md([[r.task, r.student, r.questions, _num(r.minutes, 2), _num(r.generated, 0), _num(r.response, 0),
                 _num(r.informative, 2), _num(r.tokens_per_informative, 0), r.device] for r in table.itertuples()],
               ["task", "student", "questions", "minutes per question", "generated tokens per question",
                "rollout response tokens per question", "informative nodes per question",
                "generated tokens per informative node", "where"])


def _few(questions: Any) -> bool:
    return not (pd.notna(questions) and questions >= stats.MIN_QUESTIONS)


def reasoning_summary(numbers: Mapping[str, Any]) -> list[str]:
    """The In short bullets of the reasoning setting, each read off a table; below the 10-question floor a number
    is stated with its n and no verdict."""
    lines = []
    where, own, per_question = numbers["where"], numbers["own_accuracy"], numbers["per_question"]
    for r in where.itertuples():
        cost = per_question[(per_question.task == r.task) & (per_question.student == r.student)]
        diagnosed = f" of {cost.iloc[0].questions} questions diagnosed" if len(cost) else ""
        lines.append(f"- Where the nodes are, {r.task} · {r.student}: {r.informative} informative nodes{diagnosed}, "
                     f"{_share(r.first_token_share)} at the first response token, depth_norm quartiles "
                     f"{_num(r.q1, 2)} / {_num(r.median, 2)} / {_num(r.q3, 2)}: the nodes sit along the chain.")
    for r in own.itertuples():
        lines.append(f"- The student's own accuracy, {r.task} · {r.student} (its {_count(r.answers)} diagnostic "
                     f"rollouts on {r.questions} questions): {_with_interval(r.accuracy, r.lo, r.hi)}, unparsed "
                     f"{_num(r.unparsed)}, {_share(r.solved)} of questions with a correct rollout (the self-demo "
                     "and correct-wrong contexts need one).")
    found = numbers["findings"]
    claims = found[found["direction"] != "(context)"]
    decided = claims[claims.verdict.isin(["reproduced", "opposite"])]
    for finding, group in claims.groupby("finding", sort=True):
        parts = "; ".join(f"{r.task} · {r.student}: {r.test} {_num(r.estimate)}, "
                          + (_verdict(r.verdict, r.questions) if r.verdict != "too few questions" else
                             f"inconclusive at n={r.questions} (MDE {_num(r.mde)})" if _num(r.mde) != "—" else
                             f"inconclusive at n={r.questions}") for r in group.itertuples())
        lines.append(f"- Finding {finding}: {parts}.")
    every = numbers["all_findings"]
    students = where.groupby("task").student.nunique()
    for finding in sorted(set(every.finding) - set(found.finding)):
        lines.append(f"- Finding {finding}: no test in this setting yet (at most {students.max()} student(s) per "
                     "task so far" + ("; it compares the students of one task)" if finding.startswith("2") else ")")
                     + ".")
    if len(claims) and not len(decided):
        lines.append(f"- Nothing reproduced and nothing contradicted in the reasoning setting yet: every claim rests "
                     f"on at most {_count(claims.questions.max())} questions, and a verdict needs "
                     f"{stats.MIN_QUESTIONS} (the MDEs above say how large an effect these few questions could see).")
    cells = numbers["contexts"]["cells"]
    for r in cells.itertuples():
        if pd.notna(r.leader):
            lines.append(f"- {r.task} · {r.student}: `{r.leader}` leads on paired evidence (Leaderboards).")
        else:
            lines.append(f"- {r.task} · {r.student}: no teacher leads on paired evidence, inconclusive at "
                         f"n={r.questions} (pairs are tested from {stats.MIN_QUESTIONS} shared questions); the highest "
                         f"walign among contexts is `{r.highest_walign}` ({_num(r.highest_value)}), a description, "
                         "not a ranking.")
    changes = numbers["contexts"]["changes"]
    if not len(changes):
        for task, group in cells.groupby("task", sort=False):
            lines.append(f"- Does the best context change with student size or compression? Not testable yet: "
                         f"{task} has one student ({', '.join(group.student)}) in the committed chunks.")
    for r in changes.itertuples():
        lines.append(f"- Best context, {r.task}, {r.student} vs {r.other} ({r.axis}): {r.outcome} ({r.detail}).")
    mass = numbers["shared_mass"]
    for (task, student), group in mass.groupby(["task", "student"], sort=False):
        teachers = group[group.teacher != "self"]
        floor = group[group.teacher == "self"]
        if not len(teachers):
            continue
        lines.append(f"- Shared top-k mass, {task} · {student}: mean {_num(teachers['mean'].min())} to "
                     f"{_num(teachers['mean'].max())} across the {len(teachers)} teachers (medians "
                     f"{_num(teachers['median'].min())} to {_num(teachers['median'].max())}), against "
                     f"{_num(floor['mean'].iloc[0]) if len(floor) else '—'} for the student's own top 10 alone "
                     f"(excess {_signed(teachers.excess.min())} to {_signed(teachers.excess.max())}): the student's "
                     "mass sits on a small shared set, as the Rethinking-OPD paper reports, but most of it is the "
                     "student's own top 10; its rank correlation with alignment is "
                     + ("inconclusive at n=" + _count(teachers.rho_questions.max())
                        if _few(teachers.rho_questions.max()) else "in the table (Shared top-k mass)") + ".")
    for r in numbers["routing"].itertuples():
        if _few(r.cv_questions):
            lines.append(f"- Per-node routing, {r.task} · {r.student}: in-sample oracle {_num(r.oracle_walign)} "
                         f"against the best single teacher `{_text(r.best_single)}` {_num(r.best_single_walign)}, "
                         f"switch rate {_num(r.switch_rate)} (both inflated by noise); the cross-fitted gain "
                         f"{_num(r.cv_gain)} is inconclusive at n={_count(r.cv_questions)} (MDE "
                         f"{_num(r.mde_cv_gain)}).")
        else:
            lines.append(f"- Per-node routing, {r.task} · {r.student}: cross-fitted gain over `{r.best_single}` "
                         f"{_with_interval(r.cv_gain, r.cv_gain_lo, r.cv_gain_hi)}, p {_p(r.p_cv_gain)}, BH q "
                         f"{_p(r.q_cv_gain)} ({_count(r.cv_questions)} questions).")
    for r in per_question.itertuples():
        to_run = _median_to_run(numbers["plan_rows"], r.task, r.student)
        sized = numbers["plan"][(numbers["plan"].task == r.task) & (numbers["plan"].student == r.student)]
        lines.append(f"- Cost, {r.task} · {r.student}: {_num(r.minutes, 2)} minutes, {_num(r.generated, 0)} "
                     f"generated tokens and {_num(r.informative, 2)} informative nodes per question ({r.device}); "
                     f"the median comparison needs about {_count(to_run)} questions to detect {EFFECT}"
                     + (f", every sized comparison {_count(sized.iloc[0].questions_for_all)} (about "
                        f"{_num(sized.iloc[0].hours, 0)} hours at this rate)" if len(sized) else "")
                     + " (What more compute would settle).")
    return lines


def render(numbers: Mapping[str, Any], figures: Sequence[str] = ()) -> str:
    """STUDY.md from :func:`compute`'s tables: the reasoning setting first, the direct-answer cells as a contrast."""
    from harness.api.model_specs import split_compression

    where = numbers["where"]
    reasoning, contrast = cells_of(where, REASONING), cells_of(where, CONTRAST)
    first, second = _only(numbers, reasoning), _only(numbers, contrast)

    def family(cells: Sequence[tuple[str, str]]) -> str:
        tasks = ", ".join(dict.fromkeys(task for task, _ in cells))
        models = ", ".join(dict.fromkeys(split_compression(student)[0] for _, student in cells))
        return f"{tasks}; {models}"

    title = "# Study: the paper's findings on reasoning chains" + (f" ({family(reasoning)})" if reasoning else "")
    if contrast:
        title += f", with a direct-answer contrast ({family(contrast)})"
    lines = [title, "",
             "Generated by `bash results/study/regenerate.sh` (runs, then `python results/study/build.py merge` and "
             "`write`); every number below is recomputed from `results/study/` by `tests/test_study.py`.", ""]
    lines += ["## In short", ""]
    lines += [f"The study is the reasoning setting: {len(reasoning)} cell(s) "
              f"({', '.join(f'{t} · {s}' for t, s in reasoning) or 'none yet'}) whose informative nodes lie along "
              "the chain of thought. "
              + (f"The {len(contrast)} direct-answer cells ({family(contrast)}) are a labelled contrast. "
                 + contrast_note(where) if contrast else ""), ""]
    if reasoning:
        lines += [f"### {SETTING_TITLES[REASONING]}", "", *reasoning_summary(first), ""]
    if contrast:
        lines += [f"### {SETTING_TITLES[CONTRAST]}", "", *summary(second), ""]
    lines += ["## Design", "", *design(numbers["settings"]), ""]
    cost_table = numbers["cost"]
    lines += ["## What ran", "",
              _md([[r.task, r.student, f"{r.questions} of {_count(r.limit)}", r.with_nodes, r.teachers, r.nodes,
                    r.informative, _count(r.generated_tokens), _num(r.hours, 2), r.sessions, r.device, r.code]
                   for r in cost_table.itertuples()],
                  ["task", "student", "questions", "with nodes", "teachers", "nodes", "informative",
                   "generated tokens", "hours", "sessions", "where", "code"]), "",
              "`questions ... of —`: a cell grown by chunks has no limit (its questions are the chunks' ranges). "
              "`generated tokens` and `hours`: every session of the cell together (a larger limit, or each chunk, "
              "is a session).", "",
              "`code`: the hash of the harness, tasks and teachers sources that ran the cell's first session "
              "(`run.json`; — where the run predates this record).", "",
              "A question has no node when screening found no position whose outcome depends on the token (e.g. "
              "every rollout wrong and no continuation right): it enters no alignment estimate.", ""]
    stopped = cost_table[cost_table.stopped]
    if len(stopped):
        lines += [f"{len(stopped)} run(s) hold fewer questions than their limit: they were stopped when the "
                  "compute of the session that built this study ran out. Their records hold every question they "
                  "finished (no tokens or hours stated).", ""]
    lines += ["### Cost per question", "",
              "Per question diagnosed: wall minutes and generated tokens of every session (rollouts, screening "
              "candidates and continuations), the rollouts' own response tokens (from the per-rollout file, chunked "
              "cells only) and informative nodes.", "", render_per_question(numbers["per_question"]), ""]
    sessions = numbers["sessions"]
    if len(sessions):
        lines += ["Per chunk of the chunked cells (each chunk one session; a chunk that shared the machine with "
                  "other work runs slower):", "",
                  _md([[r.task, r.student, r.chunk, r.questions, _num(r.minutes, 2), _num(r.generated, 0),
                        _text(r.finished_at), r.code or "—"] for r in sessions.itertuples()],
                      ["task", "student", "chunk", "questions", "minutes per question",
                       "generated tokens per question", "finished", "code"]), ""]
    lines += ["## Where the nodes are", "",
              "Each node once (whatever the teacher), from harness.reports.depth: the share of informative nodes at the "
              "first response token and the quartiles of their depth_norm (position / rollout length). A cell "
              "whose informative nodes are mostly (more than half) at the first token is a direct-answer cell: "
              "there every rollout shares the prefix and g* only says which first token leads to success.", "",
              render_where(where), ""]
    lines += ["## The student's own accuracy", "",
              "The share of the student's answers that are correct, per question then averaged (Wilson interval with "
              "the question as the unit, as `opd accuracy`): from the diagnostic's own rollouts where the cell's "
              "per-rollout file is committed (the chunked cells), else from the cell's `opd accuracy` report "
              "(its own sampled answers).", "", render_own_accuracy(numbers["own_accuracy"]), ""]
    missing = [task for task in dict.fromkeys(t for t, _ in reasoning)
               if not len(numbers["accuracy"]) or task not in set(numbers["accuracy"].task)]
    if missing:
        lines += [f"No `opd accuracy` report for {', '.join(missing)} is committed (results/study/accuracy/): the "
                  "in-context accuracy of every context per student is not measured yet for the reasoning "
                  "setting.", ""]
    lines += ["## The paper's findings", "",
              f"Headline loss `{HEADLINE_LOSS}`; Holm over every claim in the table that rests on 10 questions or "
              "more; a verdict needs p (Holm) < 0.05; below 10 questions no interval, no Holm p and no verdict "
              "(`inconclusive at n=...`, the MDE says what those questions could detect); `not testable`: no "
              "question has nodes past the divergence of its correct and incorrect rollouts.", ""]
    for name, part in ((REASONING, first), (CONTRAST, second)):
        if len(part["findings"]):
            note = contrast_note(where) if name == CONTRAST else ""
            lines += [f"### {SETTING_TITLES[name]}", ""] + ([note.strip(), ""] if note else []) + [
                render_findings(part["findings"]), ""]
    lines += ["## Which teacher leads, and does the best context change?", "",
              "Per cell, the leader on paired evidence (rank 1 of the leaderboard: no paired test puts it behind "
              "another teacher) and the best-ranked context (every teacher but `model:`); where no pair rests on "
              "10 shared questions there is no ranking, and the highest walign is a description only. Whether the "
              "best context changes with student size or compression (the paper: it depends jointly on the "
              "student's capacity and the task) is read from two cells' paired tests: `changes` only where each "
              "cell's best context is ahead of the other's there.", "", render_contexts(numbers["contexts"]), ""]
    changes = numbers["contexts"]["changes"]
    if len(changes):
        lines += [_md([[r.task, r.student, r.other, r.axis, r.outcome, r.detail] for r in changes.itertuples()],
                      ["task", "student", "other", "axis", "best context", "evidence"]), ""]
    lines += ["## Leaderboards (`rkl`)", "",
              "`rank` and `group` come from paired tests of every teacher pair (Holm over the pairs with 10 or more "
              "shared questions): rank 1 is the teacher no paired test puts behind another, teachers in one tier "
              "ordered by walign on the questions they share; a letter shared means not separated; `not tested "
              "against`: pairs on fewer than 10 shared questions (not the same as not separated); a teacher with no "
              "tested pair has no rank (group `not tested`). Two populations: `walign, own questions` is over each "
              "teacher's own questions (its n beside it; self-demo contexts exist only where the student has a "
              "correct and an incorrect answer), `walign, shared` over the questions every ranked teacher of the cell "
              "has. "
              "`ok − bad` uses only nodes past the divergence of the question's correct and incorrect rollouts "
              "(not testable: no such question).", ""]
    board = numbers["board"]
    for (task, student), _ in board.groupby(["task", "student"], sort=False):
        label = " (direct-answer contrast)" if (task, student) in contrast else ""
        cell = where[(where.task == task) & (where.student == student)]
        note = ([f"Direct-answer contrast: {_share(cell.first_token_share.iloc[0])} of this cell's informative "
                 "nodes are at the first response token.", ""] if label and len(cell) else [])
        lines += [f"### {task} · {student}{label}", "", *note, render_board(board, task, student), ""]
    lines += ["## Shared top-k mass", "",
              "`topk_shared_mass` (METHOD): the student's probability mass on the union of its own and the "
              "teacher's top-10 tokens, over every node (each teacher's row). The union always holds the student's "
              "own top 10, so the `self` row (the student's own top-10 mass) is the floor and `excess` (the mean "
              "paired difference from it at the same nodes) is what the teacher's tokens add. Its relation to "
              "alignment: Spearman between the node's shared mass and the teacher's alignment over the nodes with "
              "one (harness.reports.analysis: cluster-bootstrap t interval and test over questions; q: Benjamini-Hochberg "
              "over this table's tests on 10 questions or more).", "", render_shared_mass(numbers["shared_mass"]), ""]
    gold = numbers["gold"]
    if len(gold):
        lines += ["## walign by gold label", "",
                  "Tasks with a categorical gold answer (yes/no, a letter): a teacher can align with the ideal "
                  "direction because of the answer it favours rather than the question. Each label's walign over "
                  "the questions with that gold, beside the pooled walign.", ""]
        for (task, student), _ in gold.groupby(["task", "student"], sort=False):
            lines += [f"### {task} · {student} (by gold)", "", render_gold(gold, board, task, student), ""]
    lines += ["## What the records give", ""]
    if REASONING in numbers["records_by_setting"]:
        status = numbers["records_by_setting"][REASONING]
        lines += [f"- Reasoning setting: `prefix_shared` is known for {status['prefix_known']:.0%} of its "
                  f"{status['nodes']} nodes, the unparsed outcome for {status['unparsed_known']:.0%}, the gold "
                  f"answer for {status['gold_known']:.0%}; "
                  + ("every column that recomputes S_hat, g* and the alignments is there." if not status["recompute"]
                     else "missing: " + ", ".join(f"`{c}`" for c in status["recompute"]) + ".")]
    if CONTRAST in numbers["records_by_setting"]:
        lines += ["- Direct-answer contrast:", *("  " + line for line in records_lines(
            numbers["records_by_setting"][CONTRAST]))]
    lines += [""]
    if len(second["before"]):
        lines += ["## What changed with issue 30 (direct-answer contrast)", "",
                  "Statements of the previous write-up that the rules of issue 30 (METHOD, Alignment and Statistics) "
                  "change, recomputed from the same records under both rules:", "",
                  *changes_lines(second["before"], second["findings"], second["pairs"]), ""]
    lines += ["## Does the ranking change with compression?", "",
              "Kendall's tau between two students' walign orderings of the teachers both have (`self` has no "
              "alignment).", "",
              _md([[r.task, r.student_a, r.student_b, r.teachers, _num(r.tau), _p(r.p)]
                   for r in numbers["agreement"].itertuples()],
                  ["task", "student", "other", "teachers", "Kendall tau", "p"]), ""]
    lines += ["## Does the best teacher change from token to token?", "",
              "`in-sample oracle`: each node sent to the teacher with the highest alignment there, picked and scored "
              "on the same continuations, so it beats the best single teacher even when the teachers do not differ "
              "(noise alone picks a winner at every node); the `switch rate` (how often that pick changes between "
              "consecutive nodes of a rollout) is inflated the same way. Against that null, the `cross-fitted "
              "gain` picks each node's teacher and the best single teacher on one half of the continuations and "
              "scores both on the other half: its expectation is 0 or less when no per-node choice is real, and "
              "its sign-flip test over questions says whether routing beats the best single teacher. It is what "
              "a router that knew each node's best teacher from independent evidence would gain, an upper bound "
              "for one that must predict it. Below 10 questions: no interval, inconclusive at that n.", "",
              _md([[r.task, r.student, _text(r.best_single), _num(r.best_single_walign), _num(r.oracle_walign),
                    _num(r.switch_rate), _with_interval(r.cv_gain, r.cv_gain_lo, r.cv_gain_hi),
                    _p(r.p_cv_gain), _p(r.q_cv_gain), _count(r.cv_questions), _num(r.mde_cv_gain)]
                   for r in numbers["routing"].itertuples()],
                  ["task", "student", "best single", "its walign", "in-sample oracle", "switch rate",
                   "cross-fitted gain [95% CI]", "p", "q (BH across cells)", "n (questions)", "MDE"]), ""]
    accuracy = numbers["accuracy"]
    if not accuracy.empty:
        lines += ["## In-context accuracy", "",
                  "Every context per student, the analog of the paper's accuracy table: accuracy (mean "
                  "per-question pass rate), Δ against the student alone on the same answers, the p of its "
                  "sign-flip test (McNemar's exact test for one answer per question) Holm-corrected over the "
                  "student's contexts, and n in questions. Per-student tables with intervals follow.", ""]
        for task in pd.unique(accuracy["task"]):
            if (accuracy[accuracy.task == task].condition != "student").any():
                lines += [f"### {task}: every context per student", "", render_accuracy_overview(accuracy, task), ""]
        for report in pd.unique(accuracy["report"]):
            lines += [f"### {report}", "", render_accuracy(accuracy, report), ""]
    lines += ["## What more compute would settle", "",
              "Per (task, student), from the spread measured here (harness.reports.plan, 80% power, alpha 0.05): the "
              f"questions to run so that the median comparison, and every comparison, detects {EFFECT} in "
              "alignment, and the hours the slower of the two takes at the cell's own rate measured in What ran (its "
              "threads). Questions count as run whether or not screening kept a node in them. A comparison with no "
              "spread to extrapolate from is not sized, so `every comparison` covers the sized ones; below 10 "
              "questions the spread itself rests on few questions, so those sizes are rough.", "",
              *minimum_detectable_effects(numbers["plan_rows"]), "",
              _md([[r.task, r.student, r.pilot_questions, r.comparisons, r.undetermined,
                    _count(_median_to_run(numbers["plan_rows"], r.task, r.student)), _count(r.questions_for_all),
                    _num(r.hours, 1)] for r in numbers["plan"].itertuples()],
                  ["task", "student", "questions now", "comparisons", "not sized (no spread)",
                   "median comparison", "every comparison (sized)", "hours (every)"]), ""]
    if figures:
        lines += ["## Figures", ""]
    for figure in figures:
        lines += [f"![{figure}](study/{figure})", ""]
    return "\n".join(lines)


def figure_names(study_dir: Path = STUDY_DIR) -> list[str]:
    return sorted(path.name for path in Path(study_dir).glob("*.png"))


FIGURES = ("depth", "correctness")  # per (task, student): alignment by depth, and on correct vs incorrect paths


FIGURE_COLOURS = 64  # line and scatter plots on a white ground: a palette this size looks the same at a third the bytes


def _compact_png(source: Path, target: Path) -> None:
    """``source`` saved as ``target`` with a palette of FIGURE_COLOURS colours: every chunk adds cells and figures,
    and results/study must stay small enough to commit (tests/test_study.py)."""
    from PIL import Image

    with Image.open(source) as image:
        image.convert("RGB").quantize(colors=FIGURE_COLOURS).save(target, optimize=True)


def write(study_dir: Path = STUDY_DIR, write_up: Path = WRITE_UP) -> str:
    """The figures (per task and student) and STUDY.md from the compact files."""
    import tempfile

    from harness.render.plots import plot_run
    from harness.workflows.suite import slug

    nodes, runs, accuracy, rollouts = load(study_dir)
    numbers = compute(nodes, runs, accuracy, rollouts)
    for old in Path(study_dir).glob("*.png"):
        old.unlink()
    for (task, student), group in nodes.groupby(["task", "student"], sort=False):
        with tempfile.TemporaryDirectory() as scratch:
            for path in plot_run(group, scratch, loss=HEADLINE_LOSS):
                if path.suffix == ".png" and path.stem in FIGURES:
                    _compact_png(path, Path(study_dir) / f"{task}-{slug(student)}-{path.name}")  # no ':' in names
    text = render(numbers, figure_names(study_dir))
    write_up.write_text(text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    gather = sub.add_parser("collect", help="compact files from the suite's runs and the accuracy reports")
    gather.add_argument("suite_dir", type=Path)
    gather.add_argument("accuracy_dir", type=Path, nargs="?")
    commit = sub.add_parser("chunk", help="commit finished chunk runs' compact records and per-rollout files under "
                                          "chunks/ (never replaced; a missing per-rollout file is added)")
    commit.add_argument("run_dirs", type=Path, nargs="+")
    sub.add_parser("merge", help="nodes.parquet and runs.json from the committed chunks (other cells kept)")
    sub.add_parser("write", help="results/STUDY.md and its figures from the compact files")
    fill = sub.add_parser("backfill", help="add gold and the derivable outcome columns to an older compact file")
    fill.add_argument("data_dir", type=Path)
    args = parser.parse_args(argv)
    if args.step == "collect":
        try:
            collect(args.suite_dir, args.accuracy_dir)
        except ConfigError as error:  # chunks that overlap or differ: one paragraph, nothing written
            print(f"error: {error}", file=sys.stderr)
            return 2
    elif args.step in ("chunk", "merge"):
        try:
            for path in commit_chunks(args.run_dirs) if args.step == "chunk" else merge_chunks() or ():
                print(path)
        except (ConfigError, FileNotFoundError) as error:  # chunks that overlap or differ, a run missing: one
            print(f"error: {error}", file=sys.stderr)  # paragraph, nothing written
            return 2
    elif args.step == "backfill":
        backfill(args.data_dir)
    else:
        write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
