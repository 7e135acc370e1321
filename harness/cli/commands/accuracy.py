"""``opd accuracy``: task accuracy of the student alone and of each teacher answering with its own context.

    opd accuracy --task boolq --student smollm2-135m --teacher self:correct-demo --limit 50 [--samples 8]
        [--summarizer MODEL] [--data-dir DIR] [--format rich|md|csv|json] [--out FILE.json] [--seed S]
        [--device D] [--include-path DIR]   # lm-eval YAML directories for --task lm_eval:<name>

See :mod:`harness.workflows.accuracy` for what is measured.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(commands) -> None:
    from harness.cli.options import add_cell_arguments, add_format_argument, add_wide_argument

    parser = commands.add_parser(
        "accuracy", help="accuracy of the student alone and of each teacher with its context (Wilson CI, paired sign-flip "
             "test over questions)")
    add_cell_arguments(parser, task_help="task name (opd list tasks), e.g. boolq or lm_eval:gsm8k",
                       teacher_help="none: the student row only")
    parser.add_argument("--limit", type=int, default=None, help="first N questions (default: all)")
    parser.add_argument("--samples", type=int, default=None, metavar="K",
                        help="K answers per question at temperature 1, averaged (default: one greedy answer); "
                             "contexts built from the student's other answers need K >= 2 (self:self-demo), "
                             "K >= 3 (self:correct-wrong: a correct and an incorrect other answer)")
    parser.add_argument("--summarizer", default=None, metavar="MODEL",
                        help="model that writes self:summary's summaries: short for --teacher self:summary:MODEL "
                             "(default: $OPD_SUMMARIZER, else the student itself), as in `opd run`")
    parser.add_argument("--data-dir", default=None,
                        help="local dataset root laid out like shared/data (default: $OPD_DATA_DIR, ./data, "
                             "../shared/data, else the public hub dataset)")
    add_format_argument(parser, ("rich", "md", "csv", "json"))
    add_wide_argument(parser)
    parser.add_argument("--out", type=Path, default=None, metavar="FILE.json",
                        help="also write the full report, with every answer, as JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="auto (default), cpu or cuda[:n]")
    # a separate dest from any top-level flag of the same name, so neither overwrites the other in the namespace
    parser.add_argument("--include-path", action="append", dest="lm_eval_include_path", default=[], metavar="DIR",
                        help="directory of lm-eval task YAML files for --task lm_eval:<name> (repeatable)")
    from harness.cli.options import add_threads_argument

    add_threads_argument(parser)
    parser.set_defaults(handler=cmd_accuracy)


def cmd_accuracy(args: argparse.Namespace, console) -> int:
    from harness.cli.options import include_paths_from, quiet_libraries, with_summarizer
    from harness.render.tables import format_accuracy, print_accuracy
    from harness.sampling.threads import apply_threads
    from harness.workflows.accuracy import ANSWERS, AccuracyConfig, evaluate, write_report

    apply_threads(args.threads)  # a bad --threads stops here, before any model loads
    quiet_libraries()
    # --summarizer and --include-path reach the factories as arguments, exactly as in `opd run`
    config = AccuracyConfig(
        task=args.task, student=args.student, teachers=with_summarizer(args.teachers, args.summarizer),
        limit=args.limit, samples=args.samples, data_dir=args.data_dir, seed=args.seed, device=args.device,
        include_paths=include_paths_from(args.lm_eval_include_path),
    )
    if args.format == "rich" and sys.stderr.isatty():
        from harness.render.progress import RichProgress

        with RichProgress((ANSWERS,), transient=True) as progress:
            report = evaluate(config, progress)
    else:
        report = evaluate(config)
    if args.format == "rich":
        print_accuracy(report, console, wide=args.wide)
    else:
        print(format_accuracy(report, args.format))
    if args.out is not None:
        write_report(report, args.out)
        if args.format == "rich":
            console.print(f"Full report with every answer: [cyan]{args.out}[/]")
    return 0

