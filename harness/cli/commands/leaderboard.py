"""``opd leaderboard RUN_DIR``: a run's teacher x loss alignment table (``--pairs``: every teacher pair, tested)."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.options import add_format_argument, add_stats_arguments, add_wide_argument


def register(commands) -> None:
    board = commands.add_parser("leaderboard", help="per teacher x loss alignment table of a run")
    board.add_argument("run_dir", type=Path)
    add_format_argument(board)
    board.add_argument("--loss", action="append", dest="losses", default=[], metavar="NAME",
                       help="show only this loss's rows, repeatable (opd list losses; grpo: the reference row)")
    board.add_argument("--pairs", action="store_true",
                       help="every teacher pair instead: tested difference, interval, p, Holm p, questions, mde, "
                            "verdict")
    add_wide_argument(board)
    add_stats_arguments(board)
    board.set_defaults(handler=handle)


def handle(args: argparse.Namespace, console) -> int:
    from harness.cli.options import check_losses, options_from
    from harness.render.tables import format_table, print_depth, print_pairs, print_rich
    from harness.reports.depth import depth_summaries
    from harness.reports.leaderboard import build, select_losses
    from harness.storage.records import load_run

    # flags and loss names are checked before any record is read
    options = options_from(args)
    losses = check_losses(args.losses)
    nodes, _, _ = load_run(args.run_dir)
    board = build(nodes, options=options)
    table = select_losses(board.pairs if args.pairs else board.table, losses)
    if args.format != "rich":
        print(format_table(table, args.format))
    elif args.pairs:
        print_pairs(table, console, wide=args.wide)
    else:
        print_rich(table, console, wide=args.wide)
        print_depth(depth_summaries(nodes), console)
    return 0
