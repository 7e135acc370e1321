"""``opd compare RUN_DIR RUN_DIR ...``: teachers x students across runs (:mod:`harness.compare`)."""
from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    parser = commands.add_parser("compare", help="teachers x students matrix, rank agreement, best teacher per student")
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    parser.add_argument("--format", default="rich", choices=["rich", "md", "csv", "json", "latex"])
    parser.add_argument("--resamples", type=int, default=2000, help="question-level bootstrap resamples")
    parser.add_argument("--permutations", type=int, default=10000, help="sign-flip / permutation draws")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=handle)


def handle(args, console) -> int:
    from harness.compare import compare, load_runs
    from harness.options import check_options
    from harness.tables import format_sections

    check_options(seed=args.seed, resamples=args.resamples, permutations=args.permutations)
    tables = compare(load_runs(args.run_dirs), resamples=args.resamples, permutations=args.permutations,
                     seed=args.seed)
    text = format_sections(tables, args.format, console)
    if text is not None:
        print(text)
    return 0
