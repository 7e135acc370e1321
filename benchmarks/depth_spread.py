"""Where each node selection puts its nodes: the spread over depth of the nodes and informative nodes of
``--selection windows|screened`` x ``--depth-windows exponential|even`` on one task and student (issue 29, item 4).

Each combination is an ordinary resumable ``opd run`` into ``OUT/<selection>-<depth windows>/`` with the same
questions, seed and knobs (the rollouts are the same in every combination: same seeds), so a killed measurement
resumes and a finished one is only re-read. The report (printed, and written to ``OUT/depth_spread.md`` and
``.json``) states per combination: nodes and informative nodes (each node once, whatever the teachers), the share
at the first response token, the quartiles of depth_norm and the share in each quarter of the chain (of all nodes
and of the informative ones), questions and rollouts holding an informative node past mid-chain, generated tokens
and informative nodes per 1,000 of them, and wall seconds (summed over the sessions that made the records).

On the tiny fakes of the test suite (seconds)::

    python benchmarks/depth_spread.py --include tests/fakes.py --task test-parity --student tiny-random \\
        --teacher self --limit 2 --rollouts 3 --max-new-tokens 24 --out /tmp/depth-spread

The GSM8K measurement (the task and the Qwen models installed; cost: four runs of the diagnostic)::

    python benchmarks/depth_spread.py --task gsm8k --student qwen2.5-coder-0.5b --teacher self:correct-demo \\
        --teacher self --limit 8 --rollouts 4 --nodes-per-window 1 --continuations 2 --out runs/depth-spread-gsm8k
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the checkout's harness, not an installed one
    sys.path.insert(0, str(ROOT))

from harness.sampling.threads import set_wait_policy  # noqa: E402

set_wait_policy()  # as the opd entry point, before torch loads: spinning OpenMP threads beside any other work cost 7x
from harness.diagnostic.selection import DEPTH_WINDOWS, SELECTIONS  # noqa: E402
from harness.reports.depth import depth_shares, depth_summary, unique_nodes  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--student", required=True)
    parser.add_argument("--teacher", action="append", dest="teachers", required=True)
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--nodes-per-window", type=int, default=1)
    parser.add_argument("--continuations", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--selections", default=",".join(SELECTIONS), help="comma-separated")
    parser.add_argument("--depth-windows", default=",".join(DEPTH_WINDOWS), help="comma-separated")
    parser.add_argument("--include", action="append", default=[], help="plugin file (e.g. tests/fakes.py)")
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def spread_row(selection: str, windows: str, nodes: pd.DataFrame, meta: dict) -> dict:
    """One combination's line of the report, from its records and run.json."""
    unique = unique_nodes(nodes)
    informative = unique[unique["informative"].eq(True)]
    every, useful = depth_summary(nodes, informative_only=False), depth_summary(nodes)
    late = informative[informative["depth_norm"] >= 0.5]
    sessions = meta.get("sessions") or []
    tokens = sum(int(s.get("generated_tokens") or 0) for s in sessions)
    row = {"selection": selection, "depth_windows": windows, "questions": meta["counts"]["questions"],
           "nodes": every.nodes, "informative": useful.nodes,
           "first_token_share_nodes": every.first_token_share,
           "first_token_share_informative": useful.first_token_share,
           "quartiles_nodes": every.quartiles, "quartiles_informative": useful.quartiles,
           "quarters_nodes": depth_shares(unique["depth_norm"].to_numpy(dtype=float)),
           "quarters_informative": depth_shares(informative["depth_norm"].to_numpy(dtype=float)),
           "questions_with_late_informative": int(late["question_id"].nunique()),
           "rollouts_with_late_informative": int(len(late[["question_id", "rollout_id"]].drop_duplicates())),
           "generated_tokens": tokens,
           "informative_per_1k_tokens": 1000 * useful.nodes / tokens if tokens else None,
           "wall_s": round(sum(float(s.get("total_s") or 0) for s in sessions), 1)}
    # JSON has no NaN: an empty set of nodes has no shares
    return {key: [None if v != v else v for v in value] if key.startswith("quarters") else value
            for key, value in row.items()}


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, (tuple, list)):
        return " / ".join(_fmt(v) for v in value)
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def report(rows: list[dict]) -> str:
    columns = [("selection", "selection"), ("depth_windows", "windows"), ("nodes", "nodes"),
               ("informative", "informative"), ("first_token_share_informative", "inf. at 1st token"),
               ("quartiles_informative", "inf. depth_norm q1/q2/q3"),
               ("quarters_informative", "inf. per quarter of chain"), ("quarters_nodes", "nodes per quarter"),
               ("rollouts_with_late_informative", "rollouts w/ inf. past 0.5"), ("generated_tokens", "tokens"),
               ("informative_per_1k_tokens", "inf. / 1k tokens"), ("wall_s", "wall s")]
    table = [[_fmt(row[key]) for key, _ in columns] for row in rows]
    return tabulate(table, headers=[header for _, header in columns], tablefmt="github")


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse(argv)
    from harness.diagnostic.question import Settings
    from harness.storage.records import load_run
    from harness.workflows.plugins import load_all
    from harness.workflows.runner import RunConfig, run

    load_all(args.include)
    rows = []
    for selection in args.selections.split(","):
        for windows in args.depth_windows.split(","):
            settings = Settings(rollouts=args.rollouts, nodes_per_window=args.nodes_per_window,
                                continuations=args.continuations, max_new_tokens=args.max_new_tokens,
                                selection=selection, depth_windows=windows)
            config = RunConfig(task=args.task, student=args.student, teachers=tuple(args.teachers), limit=args.limit,
                               data_dir=args.data_dir, seed=args.seed, settings=settings, device=args.device)
            out = args.out / f"{selection}-{windows}"
            run(config, out)
            nodes, _, meta = load_run(out)
            rows.append(spread_row(selection, windows, nodes, meta))
            print(f"done: {selection} x {windows} -> {out}", file=sys.stderr)
    text = (f"{args.task} x {args.student}, {args.limit} questions, G={args.rollouts}, B={args.nodes_per_window}, "
            f"M={args.continuations}, teachers {', '.join(args.teachers)}\n\n" + report(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "depth_spread.md").write_text(text + "\n")
    (args.out / "depth_spread.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(text)
    return rows


if __name__ == "__main__":
    main()
