"""``opd compare RUN_DIR RUN_DIR ...``: teachers x students across runs (:mod:`harness.reports.compare`)."""
from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    from harness.cli.options import add_format_argument, add_stats_arguments, add_wide_argument

    parser = commands.add_parser("compare", help="teachers x students matrix, rank agreement, best teacher per student")
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    add_format_argument(parser)
    add_wide_argument(parser)
    parser.add_argument("--combine", action="store_true",
                        help="merge runs of the same task, student and configuration into one column (more "
                             "questions of one study), each node counted once; default: such runs stay separate "
                             "columns labelled by run")
    add_stats_arguments(parser)
    parser.set_defaults(handler=handle)


def handle(args, console) -> int:
    from harness.cli.options import options_from
    from harness.render.tables import print_sections
    from harness.reports.compare import compare, load_runs

    options = options_from(args)
    runs = load_runs(args.run_dirs, combine=args.combine)
    tables = compare(runs.nodes, options=options)
    print_sections(tables, args.format, console, notes=runs.notes, wide=args.wide)
    return 0
