"""``opd findings RUN_DIR ...``: the paper's five findings tested on runs (:mod:`harness.reports.findings`)."""
from __future__ import annotations

from pathlib import Path

NOTES = (
    "direction: the paper's; reproduced / opposite: significant after Holm over every claim on 10 questions or "
    "more, by the sign of the estimate; inconclusive: not significant at this n (the effect may be anything up to "
    "about the mde), never evidence of no effect; too few questions: below 10 (out of the Holm family); not "
    "testable: finding 1 with no question whose correct and incorrect rollouts have nodes past their divergence.",
    "finding 2 compares students: the advantage of the self-distillation contexts over the external model: teacher, "
    "smaller student minus larger (rows marked (context) give each student's advantage, not a claim).",
)


def register(commands) -> None:
    from harness.cli.options import add_report_arguments

    parser = commands.add_parser("findings", help="the paper's five findings tested on one or more runs: direction, "
                                                  "estimate, interval, Holm p, n, verdict")
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    parser.add_argument("--loss", default="rkl", help="teacher loss the findings are tested on (default rkl)")
    parser.add_argument("--sizes", default=None, metavar="A,B,...",
                        help="students from smallest to largest, for finding 2 (default: by bits per weight, "
                             "@int4 < @int4:g32 < @int8 < plain)")
    parser.add_argument("--combine", action="store_true", help="merge runs of one configuration (as opd compare)")
    add_report_arguments(parser)
    parser.set_defaults(handler=handle)


def handle(args, console) -> int:
    from harness.cli.options import check_losses, options_from
    from harness.render.tables import print_sections
    from harness.reports.compare import load_runs
    from harness.reports.findings import findings
    from harness.reports.leaderboard import TEACHER_LOSSES

    options = options_from(args)
    loss = check_losses([args.loss], TEACHER_LOSSES, reason="the findings are about teachers")[0]
    runs = load_runs(args.run_dirs, combine=args.combine)
    sizes = [name.strip() for name in args.sizes.split(",")] if args.sizes else ()
    table = findings(runs.nodes, loss=loss, sizes=sizes, options=options)
    print_sections({"findings": table}, args.format, console, notes=[*NOTES, *runs.notes], wide=args.wide)
    return 0
