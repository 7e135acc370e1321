"""``opd suite SUITE.toml [--ray [ADDRESS]]``: run a grid of tasks x students x teachers (:mod:`harness.workflows.suite`)."""
from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    parser = commands.add_parser("suite", help="run a grid of tasks x students x teachers from a TOML file")
    parser.add_argument("suite_file", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="suite directory (default: the file's [suite] out)")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="spread cells over a Ray cluster (no ADDRESS: a local instance)")
    from harness.cli.options import add_cache_arguments, add_threads_argument

    add_cache_arguments(parser)
    add_threads_argument(parser)
    parser.set_defaults(handler=handle)


def handle(args, console) -> int:
    from harness.cli.options import cache_from, includes_of, quiet_libraries
    from harness.workflows.suite import load_suite, run_suite

    quiet_libraries()
    suite = load_suite(args.suite_file, args.out, threads=args.threads)
    cache = cache_from(args)  # a path, so that Ray workers on this machine (or a shared disk) use the same one
    run_suite(suite, ray_address=args.ray or None, use_ray=args.ray is not None, console=console,
              include=tuple(includes_of(args)), cache_dir=str(cache.root.resolve()) if cache is not None else None)
    console.print(f"Suite {suite.name!r}: {len(suite.cells)} cells done under {suite.out} "
                  f"(leaderboard.md per cell, compare.md per task)")
    return 0
