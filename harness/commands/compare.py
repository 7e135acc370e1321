"""``opd compare RUN_DIR RUN_DIR ...``: teachers x students across runs (:mod:`harness.compare`)."""
from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    from harness.options import add_format_argument, add_stats_arguments

    parser = commands.add_parser("compare", help="teachers x students matrix, rank agreement, best teacher per student")
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    add_format_argument(parser)
    add_stats_arguments(parser)
    parser.set_defaults(handler=handle)


def handle(args, console) -> int:
    from harness.compare import compare, load_runs
    from harness.options import options_from
    from harness.tables import format_sections

    options = options_from(args)
    tables = compare(load_runs(args.run_dirs), options=options)
    text = format_sections(tables, args.format, console)
    if text is not None:
        print(text)
    return 0
