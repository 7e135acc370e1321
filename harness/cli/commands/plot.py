"""``opd plot RUN_DIR [--out DIR]``: depth, correctness and divergence figures as PNG and PDF (:mod:`harness.render.plots`)."""
from __future__ import annotations

from pathlib import Path


def register(commands) -> None:
    from harness.cli.options import add_stats_arguments

    parser = commands.add_parser("plot", help="figures of a run (PNG and PDF)")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default RUN_DIR/plots)")
    parser.add_argument("--loss", default="rkl", help="teacher loss of the divergence figure: rkl (default), fkl, jsd "
                                                      "or sampled")
    add_stats_arguments(parser)
    parser.set_defaults(handler=handle)


def handle(args, console) -> int:
    from harness.cli.options import check_losses, options_from
    from harness.render.plots import plot_run
    from harness.reports.leaderboard import TEACHER_LOSSES
    from harness.storage.records import load_run

    options = options_from(args)

    # an unknown name is the registry's "did you mean" error; grpo would draw an empty figure (it has no teacher)
    check_losses([args.loss], TEACHER_LOSSES,
                 reason="the divergence figure draws one line per teacher, so it takes a loss that uses one")
    nodes, _, _ = load_run(args.run_dir)
    paths = plot_run(nodes, args.out or args.run_dir / "plots", loss=args.loss,
                     permutations=options.permutations, seed=options.seed)
    for path in paths:
        console.print(f"wrote [cyan]{path}[/]")
    return 0
