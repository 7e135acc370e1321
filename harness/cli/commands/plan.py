"""``opd plan RUN_DIR [--effect 0.1]``: questions and compute each headline comparison needs, from a pilot run
(:mod:`harness.reports.plan`)."""
from __future__ import annotations

from pathlib import Path

# the terminal's column order (the files keep harness.reports.plan's): a console too narrow for all leaves out the others
TERMINAL_FIRST = {
    "comparisons": ("comparison", "loss", "teacher", "other", "mde", "questions_needed", "questions_to_run", "hours"),
    "summary": ("task", "student", "questions_for_all", "hours", "pilot_questions", "effect", "undetermined"),
}


def register(commands) -> None:
    from harness.api.method import ALPHA, POWER
    from harness.cli.options import add_report_arguments

    parser = commands.add_parser("plan", help="from a pilot run: questions (and tokens, hours) each headline "
                                              "comparison needs to detect an effect")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--effect", type=float, default=0.1,
                        help=f"difference in alignment to detect with {POWER:.0%} power at alpha {ALPHA:g} "
                             "(default 0.1)".replace("%", "%%"))  # argparse formats help with %
    add_report_arguments(parser)
    parser.set_defaults(handler=handle)


def handle(args, console) -> int:
    from harness.api.errors import ConfigError
    from harness.api.method import POWER
    from harness.cli.options import options_from
    from harness.render.tables import print_sections
    from harness.reports.plan import plan
    from harness.storage.records import load_run
    from harness.storage.run_meta import RunMeta

    options = options_from(args)
    if not args.effect > 0:
        raise ConfigError(f"--effect must be a positive difference in alignment, e.g. 0.1 (got {args.effect}).")
    nodes, _, run_json = load_run(args.run_dir)
    tables = plan(nodes, RunMeta.of(run_json), effect=args.effect, options=options)
    notes = [
        f"mde: the smallest difference each test detects with {POWER:.0%} power at the pilot's n; questions_needed: "
        f"the n at which it would detect {args.effect:g}, assuming the pilot's between-question spread.",
        "questions_to_run divides that by counted_share, the share of pilot questions the comparison could use "
        "(ok_minus_bad needs both correct and incorrect rollouts with informative nodes in a question).",
        "tokens and hours: at the pilot's rate per newly sampled question (run.json of its last session); a "
        "resumed or cached pilot has no rate (—). A pilot of a few questions gives a rough spread: plan again "
        "after the first tens of questions.",
    ]
    if args.format == "rich":  # what a reader decides on first, so the narrowest console still shows it
        tables = {name: table[[*(c for c in TERMINAL_FIRST[name] if c in table),
                               *(c for c in table.columns if c not in TERMINAL_FIRST[name])]]
                  for name, table in tables.items()}
    print_sections(tables, args.format, console, notes=notes, wide=args.wide)
    return 0
