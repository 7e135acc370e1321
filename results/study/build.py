"""The study of results/STUDY.md: collect the suite's runs into compact files, then write the write-up from them.

Two steps, so that every number in STUDY.md can be recomputed from what the repository holds:

    python results/study/build.py collect runs/study runs/study-accuracy   # runs -> results/study/{nodes.parquet,...}
    python results/study/build.py write                                    # results/study/* -> results/STUDY.md

``collect`` keeps only the node columns the tables need (``COMPACT_COLUMNS``), each run's cost (``runs.json``) and
the ``opd accuracy`` reports (``accuracy/``). ``write`` computes every table with the harness's own statistics
(``harness.findings``, ``harness.leaderboard``, ``harness.analysis``, ``harness.plan``) and renders the Markdown and
figures; ``tests/test_study.py`` recomputes the write-up from the compact files and checks it matches, and checks
the headline numbers against independent pandas arithmetic.
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

from harness import stats

STUDY_DIR = Path(__file__).resolve().parent
WRITE_UP = STUDY_DIR.parent / "STUDY.md"
LOSSES = ("rkl", "fkl", "jsd", "sampled", "grpo")
HEADLINE_LOSS = "rkl"
EFFECT = 0.1  # the alignment difference the study is sized to detect (issue: MDE at most 0.1)
# the node columns the leaderboard, findings, routing, plan and figures read; lists and texts are left out
COMPACT_COLUMNS = [
    "task", "student", "teacher", "question_id", "rollout_id", "position", "rollout_len", "depth_norm", "window",
    "entropy", "rollout_correct", "kl_student_teacher", "kl_teacher_student", "l2", "cos_pq", "tv", "topk_shared_mass",
    "jsd_rbar",
    "ideal_norm", "informative", "context_ok", "logits_finite", "context_choice",
    *(f"align_{loss}" for loss in LOSSES), *(f"dnorm_{loss}" for loss in LOSSES),
    *(f"align_{loss}_{half}" for loss in LOSSES for half in ("a", "b")),
]
# what each run's run.json contributes: its configuration and cost (harness.plan's rate reads the last four)
RUN_KEYS = ("config", "status", "device", "dtype", "threads", "counts", "timings", "resumed_questions", "cache_hits",
            "code", "sessions")


# ---------------------------------------------------------------- collect


def collect(suite_dir: Path, accuracy_dir: Path | None, out: Path = STUDY_DIR) -> None:
    """The compact files of ``out`` from the suite's run directories (``<suite>/<task>/<student>/``) and the
    ``opd accuracy --out`` reports in ``accuracy_dir``."""
    from harness.records import load_run

    frames, runs = [], []
    for run_json in sorted(Path(suite_dir).glob("*/*/run.json")):
        nodes, _, meta = load_run(run_json.parent)
        frames.append(nodes[[c for c in COMPACT_COLUMNS if c in nodes]])
        runs.append({key: meta.get(key) for key in RUN_KEYS if key in meta})
    if not frames:
        raise SystemExit(f"no finished runs under {suite_dir} (expected <task>/<student>/run.json)")
    nodes = pd.concat(frames, ignore_index=True)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(nodes, preserve_index=False), out / "nodes.parquet", compression="zstd")
    (out / "runs.json").write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
    if accuracy_dir is not None:
        target = out / "accuracy"
        target.mkdir(exist_ok=True)
        for report in sorted(Path(accuracy_dir).glob("*.json")):
            data = json.loads(report.read_text())
            (target / report.name).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------- compute


def load(study_dir: Path = STUDY_DIR) -> tuple[pd.DataFrame, list[dict], dict[str, dict]]:
    nodes = pq.read_table(study_dir / "nodes.parquet").to_pandas()
    runs = json.loads((study_dir / "runs.json").read_text())
    reports = [json.loads(path.read_text()) for path in sorted((study_dir / "accuracy").glob("*.json"))]
    accuracy = {f"{r['config']['task']} · {r['config']['student']}": r for r in reports}
    return nodes, runs, accuracy


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
    # each report compares every context with the student alone: one family, Holm-corrected
    table["p_holm"] = math.nan
    for _, group in table.groupby("report", sort=False):
        tested = group[pd.to_numeric(group.p_sign_flip, errors="coerce").notna()]
        if len(tested):
            table.loc[tested.index, "p_holm"] = stats.holm(tested.p_sign_flip.astype(float).to_numpy())
    return table


def render_accuracy_overview(table: pd.DataFrame, task: str) -> str:
    """The analog of the paper's accuracy table: every context (rows) per student (columns, largest first), each
    cell the accuracy, its difference from the student alone and that difference's Holm-corrected p, and n."""
    from harness.findings import by_size

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


def compute(nodes: pd.DataFrame, runs: Sequence[Mapping[str, Any]], accuracy: Mapping[str, dict]
            ) -> dict[str, Any]:
    """Every table of the write-up."""
    from harness.analysis import oracle_routing
    from harness.compare import rank_agreement
    from harness.findings import findings
    from harness.leaderboard import build
    from harness.plan import plan

    options = stats.Options()
    board = build(nodes, options=options)
    agreement = rank_agreement(board.table)
    routing = oracle_routing(nodes, options=options)
    # harness.plan per cell, with that cell's own run: its rate (MMLU's rollouts are longer than BoolQ's) and the
    # questions it diagnosed (a question where screening kept no node cost as much as one that kept some)
    cells = [(run, nodes[(nodes.task == run["config"]["task"]) & (nodes.student == run["config"]["student"])])
             for run in runs]
    sizes = [plan(cell, run, effect=EFFECT, options=options) for run, cell in cells if len(cell)]
    configs = [run["config"] for run in runs]
    settings = {"tasks": list(dict.fromkeys(c["task"] for c in configs)),
                "students": list(dict.fromkeys(c["student"] for c in configs)),
                "teachers": list(dict.fromkeys(t for c in configs for t in c["teachers"])),
                "settings": configs[0]["settings"], "seed": configs[0]["seed"]}
    return {
        "settings": settings,
        "findings": findings(nodes, loss=HEADLINE_LOSS, options=options, board=board),
        "board": board.table, "pairs": board.pairs, "agreement": agreement[agreement["loss"] == HEADLINE_LOSS],
        "routing": routing[routing["loss"] == HEADLINE_LOSS],
        "plan": pd.concat([size["summary"] for size in sizes], ignore_index=True),
        "plan_rows": pd.concat([size["comparisons"] for size in sizes], ignore_index=True),
        "cost": cost(runs, nodes), "accuracy": accuracy_table(accuracy),
        "answer_mix": answer_mix(accuracy),
    }


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


def _p(value: Any) -> str:
    if value is None or not math.isfinite(float(value)):
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _md(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def render_findings(table: pd.DataFrame) -> str:
    rows = [[r.finding, r.test, r.task, _text(r.student), r.direction, _num(r.estimate), _interval(r.lo, r.hi),
             _p(r.p), _p(r.p_holm), r.questions, _num(r.mde), _text(r.verdict)] for r in table.itertuples()]
    return _md(rows, ["finding", "test", "task", "student", "paper", "estimate", "95% CI", "p", "p (Holm)",
                      "n (questions)", "MDE", "verdict"])


def render_board(board: pd.DataFrame, task: str, student: str) -> str:
    table = board[(board.task == task) & (board.student == student) & (board.loss == HEADLINE_LOSS)]
    rows = [[r.teacher, _with_interval(r.walign, r.walign_lo, r.walign_hi), r.align_questions,
             r.informative, _with_interval(r.ok_minus_bad, r.ok_minus_bad_lo, r.ok_minus_bad_hi),
             r.ok_bad_questions, _p(r.p_ok_minus_bad), _text(r.group)]
            for r in table.itertuples()]
    return _md(rows, ["teacher", "walign [95% CI]", "n (questions)", "informative nodes", "ok − bad [95% CI]",
                      "n (questions)", "p (ok − bad)", "group"])


def render_accuracy(table: pd.DataFrame, report: str) -> str:
    rows = [[r.condition, r.questions, _with_interval(r.accuracy, r.ci_low, r.ci_high), _num(r.delta),
             "—" if r.better is None or pd.isna(r.better) else f"{int(r.better)} / {int(r.worse)}", _p(r.p_sign_flip),
             _p(r.p_holm)]
            for r in table[table.report == report].itertuples()]
    return _md(rows, ["context", "n (questions)", "accuracy [95% CI]", "Δ vs student", "better / worse", "p",
                      "p (Holm)"])


def design(settings: Mapping[str, Any]) -> list[str]:
    """What every run shares, read from the runs' configurations."""
    from harness.models import split_compression

    knobs = ", ".join(f"{key}={value}" for key, value in settings["settings"].items() if value is not None)
    how = "; ".join(f"{student}: {compression.describe()}" for student in settings["students"]
                    for compression in [split_compression(student)[1]] if compression is not None)
    return [
        f"- Tasks {', '.join(settings['tasks'])}; students {', '.join(settings['students'])} ({how}, of the same "
        "model's weights); teachers "
        f"{', '.join(settings['teachers'])}; the compressed students also get the uncompressed model as an "
        "external teacher.",
        f"- Knobs (METHOD's names): {knobs}; seed {settings['seed']}. `--selection screened` spends the "
        "continuations on nodes whose outcome visibly depends on the token and estimates `S_hat` from fresh "
        "continuations only (README, Node selection), so every kept node's `S_hat` is unbiased.",
        "- Size: the pilot was the study's first build (the first 26 BoolQ and 10 MMLU questions per cell, "
        "commit a6c036b), on which `opd plan` asked for about 250 to 350 BoolQ questions per cell for the median "
        "comparison to detect 0.1 in alignment, and over a thousand for every comparison: more than a day of 2 "
        "CPU cores for the grid. This build runs the questions in What ran (as many as one session's compute "
        "allowed; a larger `limit` in suites/study.toml grows every cell in place) and states the minimum "
        "detectable effect it reached (In short) and the questions and hours each cell still needs (What more "
        "compute would settle).",
        "- Statistics (METHOD, Statistics): the question is the unit; 95% intervals by test inversion of a "
        "sign-flip test, none below 10 questions; pairs of teachers Holm-corrected per (task, student, loss), the "
        "findings Holm-corrected over every claim; accuracy intervals are Wilson with the question as the unit, "
        "its test a sign-flip test of per-question differences (the paired, multi-sample analogue of McNemar).",
    ]


def summary(numbers: Mapping[str, pd.DataFrame]) -> list[str]:
    """The write-up's bullet points, each read off a table (so the prose cannot drift from the numbers)."""
    from harness.findings import by_size

    lines = []
    found = numbers["findings"]
    claims = found[found["direction"] != "(context)"]
    for finding, group in claims.groupby("finding", sort=True):
        verdicts = group["verdict"].value_counts()
        counted = ", ".join(f"{verdicts[v]} {v}" for v in ("reproduced", "opposite", "inconclusive",
                                                            "too few questions") if v in verdicts)
        where = "".join(
            f"; {verdict}: " + ", ".join(f"{r.task} · {r.student} ({r.test}, {_num(r.estimate)}, Holm p "
                                         f"{_p(r.p_holm)}, {r.questions} questions)" for r in rows.itertuples())
            for verdict in ("reproduced", "opposite") for rows in [group[group.verdict == verdict]] if len(rows))
        lines.append(f"- {finding}: {len(group)} test(s): {counted}{where}.")
    board = numbers["board"]
    rows = board[(board.loss == HEADLINE_LOSS) & board["walign"].notna()]
    for (task, student), group in rows.groupby(["task", "student"], sort=False):
        enough = group[group.align_questions >= stats.MIN_QUESTIONS]  # a leader on fewer questions is noise
        if enough.empty:
            lines.append(f"- {task} · {student}: no leader named: at most {group.align_questions.max()} questions "
                         f"have an alignment (a verdict needs {stats.MIN_QUESTIONS}).")
            continue
        leader = enough.sort_values("walign", ascending=False).iloc[0]
        letters = set(leader.group) if isinstance(leader.group, str) else set()
        mates = [t for t, g in zip(group.teacher, group.group)  # teachers no test separates from the leader
                 if t != leader.teacher and isinstance(g, str) and letters & set(g)]
        apart = "; the only teacher with an alignment" if len(group) == 1 else (
            "; no other teacher is separated from it") if len(mates) == len(group) - 1 else (
            f"; not separated from {', '.join(mates)}" if mates else "; ahead of every other teacher")
        among = "" if len(enough) == len(group) else f" among the teachers with {stats.MIN_QUESTIONS} questions or more"
        lines.append(f"- {task} · {student}: `{leader.teacher}` leads by walign{among} ({_num(leader.walign)}, "
                     f"{leader.align_questions} questions){apart} (rank groups, Holm over all pairs).")
    lines += minimum_detectable_effects(numbers["plan_rows"])
    routing = numbers["routing"].dropna(subset=["cv_gain"])
    routing = routing[routing.cv_questions >= stats.MIN_QUESTIONS]  # the table has the rest
    for r in routing.itertuples():
        lines.append(f"- Per-node routing, {r.task} · {r.student}: cross-fitted gain over `{r.best_single}` "
                     f"{_with_interval(r.cv_gain, r.cv_gain_lo, r.cv_gain_hi)}, p {_p(r.p_cv_gain)} "
                     f"({_count(r.cv_questions)} questions).")
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


def render(numbers: Mapping[str, pd.DataFrame], figures: Sequence[str] = ()) -> str:
    """STUDY.md from :func:`compute`'s tables."""
    board, cost_table = numbers["board"], numbers["cost"]
    lines = ["# Study: the paper's findings on SmolLM2-135M and its compressed variants", "",
             "Generated by `bash results/study/regenerate.sh` (runs, then `python results/study/build.py write`); "
             "every number below is recomputed from `results/study/` by `tests/test_study.py`.", ""]
    lines += ["## Design", "", *design(numbers["settings"]), ""]
    lines += ["## In short", "", *summary(numbers), ""]
    lines += ["## What ran", "",
              _md([[r.task, r.student, f"{r.questions} of {_count(r.limit)}", r.with_nodes, r.teachers, r.nodes,
                    r.informative, _count(r.generated_tokens), _num(r.hours, 2), r.sessions, r.device, r.code]
                   for r in cost_table.itertuples()],
                  ["task", "student", "questions", "with nodes", "teachers", "nodes", "informative",
                   "generated tokens", "hours", "sessions", "where", "code"]), "",
              "`generated tokens` and `hours`: every session of the cell together (a larger limit grows a cell in "
              "a later session).", "",
              "`code`: the hash of the harness, tasks and teachers sources that ran the cell's latest session "
              "(`run.json`; — where the run predates this record).", "",
              "A question has no node when screening found no position whose outcome depends on the token (e.g. "
              "every rollout wrong and no continuation right): it enters no alignment estimate.", ""]
    stopped = cost_table[cost_table.stopped]
    if len(stopped):
        lines += [f"{len(stopped)} run(s) hold fewer questions than their limit: they were stopped when the "
                  "compute of the session that built this study ran out. Their records hold every question they "
                  "finished (no tokens or hours stated); `opd suite suites/study.toml` resumes them, and cells of "
                  "the grid missing from this table have not started.", ""]
    lines += ["## The paper's findings", "",
              f"Headline loss `{HEADLINE_LOSS}`; Holm over every claim in the table; a verdict needs p (Holm) < 0.05; "
              "below 10 questions no interval and no verdict.", "", render_findings(numbers["findings"]), ""]
    lines += ["## Leaderboards (`rkl`)", ""]
    for (task, student), _ in board.groupby(["task", "student"], sort=False):
        lines += [f"### {task} · {student}", "", render_board(board, task, student), ""]
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
              "for one that must predict it.", "",
              _md([[r.task, r.student, _text(r.best_single), _num(r.best_single_walign), _num(r.oracle_walign),
                    _num(r.switch_rate), _with_interval(r.cv_gain, r.cv_gain_lo, r.cv_gain_hi),
                    _p(r.p_cv_gain), _count(r.cv_questions), _num(r.mde_cv_gain)]
                   for r in numbers["routing"].itertuples()],
                  ["task", "student", "best single", "its walign", "in-sample oracle", "switch rate",
                   "cross-fitted gain [95% CI]", "p", "n (questions)", "MDE"]), ""]
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
              "Per (task, student), from the spread measured here (harness.plan, 80% power, alpha 0.05): the "
              f"questions to run so that the median comparison, and every comparison, detects {EFFECT} in "
              "alignment, and the hours the slower of the two takes at the cell's own rate measured in What ran (its "
              "threads). Questions count as run whether or not screening kept a node in them.", "",
              _md([[r.task, r.student, r.pilot_questions, r.comparisons,
                    _count(_median_to_run(numbers["plan_rows"], r.task, r.student)), _count(r.questions_for_all),
                    _num(r.hours, 1)] for r in numbers["plan"].itertuples()],
                  ["task", "student", "questions now", "comparisons", "median comparison", "every comparison",
                   "hours (every)"]), ""]
    if figures:
        lines += ["## Figures", ""]
    for figure in figures:
        lines += [f"![{figure}](study/{figure})", ""]
    return "\n".join(lines)


def figure_names(study_dir: Path = STUDY_DIR) -> list[str]:
    return sorted(path.name for path in Path(study_dir).glob("*.png"))


FIGURES = ("depth", "correctness")  # per (task, student): alignment by depth, and on correct vs incorrect paths


def write(study_dir: Path = STUDY_DIR, write_up: Path = WRITE_UP) -> str:
    """The figures (per task and student) and STUDY.md from the compact files."""
    import tempfile

    from harness.plots import plot_run
    from harness.suite import slug

    nodes, runs, accuracy = load(study_dir)
    numbers = compute(nodes, runs, accuracy)
    for old in Path(study_dir).glob("*.png"):
        old.unlink()
    for (task, student), group in nodes.groupby(["task", "student"], sort=False):
        with tempfile.TemporaryDirectory() as scratch:
            for path in plot_run(group, scratch, loss=HEADLINE_LOSS):
                if path.suffix == ".png" and path.stem in FIGURES:
                    path.replace(Path(study_dir) / f"{task}-{slug(student)}-{path.name}")  # no ':' in names
    text = render(numbers, figure_names(study_dir))
    write_up.write_text(text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    gather = sub.add_parser("collect", help="compact files from the suite's runs and the accuracy reports")
    gather.add_argument("suite_dir", type=Path)
    gather.add_argument("accuracy_dir", type=Path, nargs="?")
    sub.add_parser("write", help="results/STUDY.md and its figures from the compact files")
    args = parser.parse_args(argv)
    if args.step == "collect":
        collect(args.suite_dir, args.accuracy_dir)
    else:
        write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
