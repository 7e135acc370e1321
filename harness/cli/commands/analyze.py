"""``opd analyze RUN_DIR``: correlations, cross-fitted oracle routing, proxy ranking and split-half reliability of
one run (:mod:`harness.reports.analysis`)."""
from __future__ import annotations

from pathlib import Path

NOTES = (
    "correlations: Spearman rho of alignment with each variable; interval and p from a question-level bootstrap "
    "(t with questions - 1 df), q = Benjamini-Hochberg over the whole table; 'depth_norm | entropy' controls for the "
    "entropy that nodes are selected by. No interval below 10 questions.",
    "routing: cv_gain = held-out gain of routing each node to its own best teacher over the best single teacher "
    "(both picked on one half of the continuations, scored on the other); only a cv_gain whose interval excludes 0 "
    "is evidence for per-node routing. oracle_walign is the in-sample, optimistic bound.",
    "reliability: split-half (Spearman-Brown) reliability of per-node alignments; below ~0.5, M is too small for "
    "per-node conclusions (raise --continuations).",
)


def register(commands) -> None:
    from harness.cli.options import add_report_arguments

    parser = commands.add_parser("analyze", help="alignment vs divergences and depth, oracle routing, proxy ranking, "
                                                 "reliability")
    parser.add_argument("run_dir", type=Path)
    add_report_arguments(parser)
    parser.set_defaults(handler=handle)


def handle(args, console) -> int:
    from harness.cli.options import options_from
    from harness.render.tables import print_sections
    from harness.reports.analysis import analyze
    from harness.storage.records import load_run

    options = options_from(args)  # bad numbers: one clear error, before reading
    nodes, _, _ = load_run(args.run_dir)
    print_sections(analyze(nodes, options=options), args.format, console, notes=NOTES, wide=args.wide)
    return 0
