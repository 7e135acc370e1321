"""``opd validate``: short on-policy distillation runs per teacher, their measured gain against the diagnostic.

    opd validate --task boolq --student smollm2-135m --teacher self:correct-demo --teacher self:self-demo
        --steps 20 --train-limit 200 --eval-limit 300 --out DIR [--diagnostic RUN] [--loss rkl] [--lr 1e-5]
        [--batch 2] [--rollouts 4] [--samples 4] [--seeds 0,1] [--data-dir DIR] [--device D]

Needs the train extra (``pip install 'opd-harness[train]'``). See :mod:`harness.workflows.validate` for the protocol and
:mod:`harness.reports.validation_report` for the statistics. Running the same command again resumes: finished (condition,
seed) runs are kept, an interrupted one continues from its last checkpoint; ``--report-only`` rewrites the report from
the finished runs without training.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers, got {text!r}") from None


def register(commands) -> None:
    from harness.cli.options import add_cell_arguments
    from harness.workflows.validate_config import Ranges, Training, ValidateConfig

    # every default is the dataclass's own (harness.workflows.validate_config), never a copy here

    parser = commands.add_parser(
        "validate", help="does the ranking predict training? short OPD runs per teacher, gain vs walign / "
                         "in-context gap / teacher accuracy (needs opd-harness[train])")
    add_cell_arguments(parser, teacher_help="a no-training control and GRPO always run")
    parser.add_argument("--loss", default=Training.loss,
                        help=f"distillation loss trained: rkl, fkl, jsd, sampled (default {Training.loss})")
    parser.add_argument("--jsd-beta", type=float, default=Training.jsd_beta)
    parser.add_argument("--steps", type=int, default=Training.steps, help="optimizer steps per (condition, seed)")
    parser.add_argument("--lr", type=float, default=Training.lr, help="AdamW learning rate")
    parser.add_argument("--batch", type=int, default=Training.batch, help="training questions per step")
    parser.add_argument("--rollouts", type=int, default=Training.rollouts,
                        help="student samples per question per step")
    parser.add_argument("--max-new-tokens", type=int, default=Training.max_new_tokens, help="default: the task's")
    parser.add_argument("--train-limit", type=int, default=Ranges.train_limit, help="number of training questions")
    parser.add_argument("--eval-limit", type=int, default=Ranges.eval_limit,
                        help="number of held-out evaluation questions")
    parser.add_argument("--eval-start", type=int, default=Ranges.eval_start,
                        help="index of the first evaluation question (default: after the diagnostic's questions)")
    parser.add_argument("--train-start", type=int, default=Ranges.train_start,
                        help="index of the first training question: in the task's train split where it has one "
                             "(default 0, e.g. gsm8k), else in its question order (default: after evaluation)")
    parser.add_argument("--samples", type=int, default=ValidateConfig.samples, metavar="K",
                        help="answers per evaluation question at T=1, besides the greedy one")
    parser.add_argument("--seed", type=int, default=None, help="one seed (default 0)")
    parser.add_argument("--seeds", type=_seeds, default=None, help="several seeds, e.g. 0,1")
    parser.add_argument("--checkpoint-every", type=int, default=Training.checkpoint_every,
                        help="steps between checkpoints")
    parser.add_argument("--diagnostic", default=None, metavar="RUN",
                        help="an `opd run` directory on the same task and student: its walign and questions")
    parser.add_argument("--data-dir", default=None, help="local dataset root laid out like shared/data")
    parser.add_argument("--device", default=None, help="auto (default), cpu or cuda[:n]")
    parser.add_argument("--out", type=Path, required=True, help="validation directory (resumable)")
    parser.add_argument("--max-runs", type=int, default=None, metavar="N",
                        help="stop after N (condition, seed) runs finish, reporting what is done (grow a long "
                             "validation one committed run at a time)")
    parser.add_argument("--report-only", action="store_true",
                        help="write the report from the runs already finished in --out (same settings); train and "
                             "load nothing (a validation grown on several machines, or re-rendered by newer code)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    from harness.cli.options import add_threads_argument

    add_threads_argument(parser)
    parser.set_defaults(handler=cmd_validate)


def config_from(args: argparse.Namespace):
    from harness.workflows.validate_config import Ranges, Training, ValidateConfig, ValidateError

    if args.seed is not None and args.seeds is not None:
        raise ValidateError("Give either --seed or --seeds, not both.")
    seeds = args.seeds if args.seeds is not None else (args.seed if args.seed is not None else 0,)
    seeds = seeds if isinstance(seeds, tuple) else (seeds,)
    training = Training(steps=args.steps, lr=args.lr, batch=args.batch, rollouts=args.rollouts, loss=args.loss,
                        jsd_beta=args.jsd_beta, max_new_tokens=args.max_new_tokens,
                        checkpoint_every=args.checkpoint_every)
    ranges = Ranges(eval_limit=args.eval_limit, train_limit=args.train_limit, eval_start=args.eval_start,
                    train_start=args.train_start)
    return ValidateConfig(task=args.task, student=args.student, teachers=tuple(args.teachers), training=training,
                          ranges=ranges, seeds=seeds, samples=args.samples, data_dir=args.data_dir,
                          device=args.device, diagnostic=args.diagnostic)


def cmd_validate(args: argparse.Namespace, console) -> int:
    from harness.cli.options import quiet_libraries
    from harness.render.progress import RichProgress
    from harness.reports.validation_report import render_markdown
    from harness.sampling.threads import apply_threads
    from harness.workflows.validate import PROGRESS_KINDS, report_finished, run_validation

    apply_threads(args.threads)  # a bad --threads stops here, before any model loads
    config = config_from(args)
    if args.max_runs is not None and args.max_runs < 1:
        from harness.workflows.validate_config import ValidateError

        raise ValidateError(f"--max-runs must be at least 1 (got {args.max_runs}).")
    quiet_libraries()
    if args.report_only:
        report = report_finished(config, args.out)
    elif args.quiet:
        report = run_validation(config, args.out, max_runs=args.max_runs)
    else:
        with RichProgress(PROGRESS_KINDS) as progress:
            report = run_validation(config, args.out, progress, max_runs=args.max_runs)
    console.print(render_markdown(report), highlight=False, markup=False, soft_wrap=True)
    console.print(f"Report: {args.out / 'validation.json'} and {args.out / 'validation.md'}", highlight=False)
    return 0
