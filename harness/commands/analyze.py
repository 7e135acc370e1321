"""``opd analyze RUN_DIR``: correlations, oracle routing and proxy ranking of one run (:mod:`harness.analysis`)."""
from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    parser = commands.add_parser("analyze", help="alignment vs divergences and depth, oracle routing, proxy ranking")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--format", default="rich", choices=["rich", "md", "csv", "json", "latex"])
    parser.add_argument("--resamples", type=int, default=2000, help="question-level bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=handle)


def handle(args, console) -> int:
    from harness.analysis import analyze
    from harness.options import check_options
    from harness.records import load_run
    from harness.tables import format_sections

    check_options(seed=args.seed, resamples=args.resamples)  # bad numbers: one clear error, before reading
    nodes, _, _ = load_run(args.run_dir)
    text = format_sections(analyze(nodes, resamples=args.resamples, seed=args.seed), args.format, console)
    if text is not None:
        print(text)
    return 0
