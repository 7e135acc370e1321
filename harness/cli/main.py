"""The ``opd`` command line: ``run``, ``leaderboard`` and ``list``.

Known mistakes (unknown names, bad numbers, missing data, tokenizer mismatch...) and faults of the file system (a
full disk, a damaged record file) print one paragraph saying what to fix and exit with status 2; ``--debug`` shows
the traceback instead. A run stopped by a fault ends its paragraph with the exact command that resumes it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from harness.api.method import Settings
from harness.cli.options import (
    add_cache_arguments,
    add_global_arguments,
    add_threads_argument,
    cache_from,
    debug_of,
    includes_of,
    quiet_libraries,
)

# `opd run` without any selection flag (--task, --student, --teacher, --limit or a METHOD knob) runs this demo
# (the screened selection: about 2.5x the informative nodes per generated token of METHOD's windows on BoolQ)
DEMO_ARGS = ["--task", "boolq", "--student", "smollm2-135m", "--teacher", "self:correct-demo", "--teacher", "self",
             "--limit", "3", "--rollouts", "4", "--nodes-per-window", "1", "--continuations", "2",
             "--selection", "screened"]
_SELECTION_FLAGS = ("--task", "--student", "--teacher", "--limit", "--questions", "--rollouts", "--temperature",
                    "--nodes-per-window", "--top-k", "--continuations", "--priority", "--jsd-beta", "--max-new-tokens",
                    "--selection", "--depth-windows")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _question_range(text: str) -> tuple[int, int]:
    from harness.storage.chunks import parse_range
    from harness.api.errors import ConfigError

    try:
        return parse_range(text)
    except ConfigError as error:  # argparse prints it as the usage error (exit 2), before anything runs
        raise argparse.ArgumentTypeError(str(error)) from None


class OpdParser(argparse.ArgumentParser):
    """The parser of ``opd`` and of every subcommand: no abbreviated flags, since an abbreviation silently turns
    into another flag (``--include`` after ``run`` used to mean ``--include-path``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    from harness.cli.options import add_format_argument, add_stats_arguments, add_wide_argument

    parser = OpdParser(prog="opd", description="Training-free diagnostic of on-policy distillation.")
    add_global_arguments(parser, top_level=True)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OpdParser)

    run = commands.add_parser("run", help="run the diagnostic (no arguments: a small BoolQ demo)")
    run.add_argument("--task", default="boolq", help="task name (opd list tasks)")
    run.add_argument("--student", default="smollm2-135m", help="student model spec (opd list models)")
    run.add_argument("--teacher", action="append", dest="teachers", metavar="SPEC",
                     help="teacher spec, repeatable (opd list teachers); default: self:correct-demo and self")
    run.add_argument("--limit", type=int, default=None, help="first N questions (default: all)")
    run.add_argument("--questions", type=_question_range, default=None, metavar="A:B",
                     help="a chunk: questions A to B-1 of the task's order (0-based), with the records they get in a "
                          "run over the whole task; chunk runs merge with `opd compare --combine` (not with --limit)")
    run.add_argument("--data-dir", default=None,
                     help="local dataset root laid out like shared/data (default: $OPD_DATA_DIR, ./data, "
                          "../shared/data, else the public hub dataset)")
    run.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<task>_<student>_<time>)")
    run.add_argument("--overwrite", action="store_true", help="replace the records in an existing --out")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", default=None, help="auto (default), cpu or cuda[:n]")
    run.add_argument("--trust-remote-code", action="store_true",
                     help="allow hub models to run their own Python code (off by default)")
    run.add_argument("--summarizer", default=None, metavar="MODEL",
                     help="model that writes self:summary's summaries: short for --teacher self:summary:MODEL "
                          "(default: $OPD_SUMMARIZER, else the student itself)")
    run.add_argument("--include-path", action="append", default=[], metavar="DIR",
                     help="extra lm-eval task YAML directory for --task lm_eval:<name> (repeatable)")
    add_cache_arguments(run)
    run.add_argument("--backend", default="transformers",
                     help="who generates rollouts and continuations: transformers (default) or vllm (GPU, "
                          "pip install 'opd-harness[vllm]')")
    knobs = run.add_argument_group("METHOD knobs (defaults are METHOD.md's)")
    method = Settings()  # the one owner of the knobs' defaults
    knobs.add_argument("--rollouts", type=int, default=method.rollouts, metavar="G",
                       help="student samples per question")
    knobs.add_argument("--temperature", type=float, default=method.temperature, metavar="T")
    knobs.add_argument("--nodes-per-window", type=int, default=method.nodes_per_window, metavar="B")
    knobs.add_argument("--top-k", type=int, default=method.top_k, metavar="K",
                       help="top-K student tokens in the support")
    knobs.add_argument("--continuations", type=int, default=method.continuations, metavar="M",
                       help="forced continuations per token")
    knobs.add_argument("--priority", default=method.priority, help="node priority: entropy | disagreement")
    knobs.add_argument("--selection", default=method.selection,
                       help="node selection: windows (METHOD: top-B per depth window) | screened (candidates "
                            "screened with one cheap continuation, S_hat from fresh continuations only)")
    knobs.add_argument("--depth-windows", default=method.depth_windows,
                       help="depth windows of either selection: exponential (METHOD: [0,1), [1,2), [2,4), ...) | "
                            "even (as many windows, of equal width in depth_norm: nodes cover the whole chain)")
    knobs.add_argument("--jsd-beta", type=float, default=method.jsd_beta)
    knobs.add_argument("--max-new-tokens", type=int, default=method.max_new_tokens, help="default: the task's")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    add_threads_argument(run)
    run.set_defaults(handler=cmd_run)

    board = commands.add_parser("leaderboard", help="per teacher x loss alignment table of a run")
    board.add_argument("run_dir", type=Path)
    add_format_argument(board)
    board.add_argument("--loss", action="append", dest="losses", default=[], metavar="NAME",
                       help="show only this loss's rows, repeatable (opd list losses; grpo: the reference row)")
    board.add_argument("--pairs", action="store_true",
                       help="every teacher pair instead: tested difference, interval, p, Holm p, questions, mde, "
                            "verdict")
    add_wide_argument(board)
    add_stats_arguments(board)
    board.set_defaults(handler=cmd_leaderboard)

    listing = commands.add_parser("list", help="registered tasks, teachers, models or losses")
    listing.add_argument("what", choices=["tasks", "teachers", "models", "losses", "backends"])
    listing.set_defaults(handler=cmd_list)
    _register_extra_commands(commands)
    for subcommand in commands.choices.values():
        add_global_arguments(subcommand, top_level=False)
    return parser


def _register_extra_commands(commands) -> None:
    import importlib
    import pkgutil

    import harness.cli.commands

    for module in sorted(pkgutil.iter_modules(harness.cli.commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"harness.cli.commands.{module.name}").register(commands)


def _config_from(args: argparse.Namespace):
    from harness.workflows.runner import RunConfig

    settings = Settings(
        rollouts=args.rollouts, temperature=args.temperature, nodes_per_window=args.nodes_per_window,
        top_k=args.top_k, continuations=args.continuations, priority=args.priority, jsd_beta=args.jsd_beta,
        max_new_tokens=args.max_new_tokens, selection=args.selection, depth_windows=args.depth_windows,
    )
    from harness.cli.options import include_paths_from, with_summarizer

    # --summarizer and --include-path reach the factories as arguments (the environment is only ever read)
    teachers = with_summarizer(args.teachers or ("self:correct-demo", "self"), args.summarizer)
    return RunConfig(task=args.task, student=args.student, teachers=teachers, limit=args.limit,
                     questions=args.questions,
                     data_dir=args.data_dir, seed=args.seed, settings=settings, device=args.device,
                     trust_remote_code=args.trust_remote_code, backend=args.backend, threads=args.threads,
                     include_paths=include_paths_from(args.include_path))


def cmd_run(args: argparse.Namespace, console) -> int:
    from harness.reports.depth import depth_summaries
    from harness.reports.leaderboard import leaderboard
    from harness.storage.records import load_run
    from harness.render.tables import print_depth, print_rich
    from harness.render.progress import RichProgress
    from harness.workflows.runner import default_out_dir, run

    quiet_libraries()
    config = _config_from(args)
    out = args.out = args.out or default_out_dir(config)  # kept on args: the resume command names it
    started = time.perf_counter()
    cache = cache_from(args)
    if args.quiet:
        meta = run(config, out, overwrite=args.overwrite, cache=cache)
    else:
        with RichProgress() as progress:
            meta = run(config, out, progress, overwrite=args.overwrite, cache=cache)
    if meta.get("added_teachers"):
        console.print(f"Added {', '.join(meta['added_teachers'])} to the run in {out}.")
    nodes, _, _ = load_run(out)
    print_rich(leaderboard(nodes), console)
    print_depth(depth_summaries(nodes), console)  # the leaderboard's footer, the run's summary: where the nodes are
    counts, timings = meta["counts"], meta["timings"]
    rate = timings["nodes_per_minute"]
    rate_text = f"{rate:.1f} nodes/min" if rate is not None else "no node sampled now: resumed or reused"
    console.print(
        f"[bold]{counts['nodes']}[/] nodes diagnosed ({counts['informative_nodes']} informative) on "
        f"{counts['questions']} questions x {config.settings.rollouts} rollouts in {time.perf_counter() - started:.0f} s "
        f"({rate_text}). Records: [cyan]{out}[/] "
        f"(nodes.parquet, questions.parquet, run.json). Table again: opd leaderboard {out}"
    )
    hits = meta.get("cache_hits")
    if hits and (hits["sampled_hits"] or any(hits["teacher_hits"].values())):
        reused = ", ".join(f"{name} ({n})" for name, n in hits["teacher_hits"].items()) or "none"
        console.print(f"Reused from the cache ({meta['cache']}): sampled work of {hits['sampled_hits']} question(s); "
                      f"rows of teachers {reused}; generated {counts['generated_tokens_this_session']} new tokens.",
                      highlight=False)
    if meta.get("set_aside_parts"):
        console.print(f"[yellow]Set aside {len(meta['set_aside_parts'])} damaged part file(s)[/] (unreadable: "
                      f"truncated or emptied) in {out}: {', '.join(meta['set_aside_parts'])}. Their questions were "
                      f"redone; the files are kept for inspection and can be deleted.", highlight=False)
    if meta.get("cache_write_error"):
        console.print(f"[yellow]The reuse cache was not fully written[/] ({meta['cache_write_error']}): this run's "
                      f"records are complete, but adding a teacher later recomputes the work not cached.", highlight=False)
    return 0


def cmd_leaderboard(args: argparse.Namespace, console) -> int:
    from harness.reports.depth import depth_summaries
    from harness.reports.leaderboard import build, select_losses
    from harness.cli.options import check_losses, options_from
    from harness.storage.records import load_run
    from harness.render.tables import format_table, print_depth, print_pairs, print_rich

    # flags and loss names are checked before any record is read
    options = options_from(args)
    losses = check_losses(args.losses)
    nodes, _, _ = load_run(args.run_dir)
    board = build(nodes, options=options)
    table = select_losses(board.pairs if args.pairs else board.table, losses)
    if args.format != "rich":
        print(format_table(table, args.format))
    elif args.pairs:
        print_pairs(table, console, wide=args.wide)
    else:
        print_rich(table, console, wide=args.wide)
        print_depth(depth_summaries(nodes), console)
    return 0


def cmd_list(args: argparse.Namespace, console) -> int:
    from rich.markup import escape
    from rich.table import Table

    from harness.sampling.backends import BACKENDS
    from harness.diagnostic.losses import LOSSES
    from harness.sampling.models import MODELS
    from harness.api.task import TASKS
    from harness.sampling.teacher import TEACHERS

    registry = {"tasks": TASKS, "teachers": TEACHERS, "models": MODELS, "losses": LOSSES,
                "backends": BACKENDS}[args.what]
    table = Table(title=f"registered {args.what}")
    table.add_column("name", style="bold")
    table.add_column("description")
    for name in registry.names():
        table.add_row(name, escape(registry.describe(name)))  # descriptions may hold [extras]
    console.print(table)
    return 0


def _known_errors() -> tuple[type[BaseException], ...]:
    """:class:`~harness.api.errors.OpdError` (every error with a message for the user derives from it) and a missing
    file named on the command line: each carries a message saying what to fix."""
    from harness.api.errors import OpdError

    return (OpdError, FileNotFoundError)


def _resume_command(argv: list[str], args: argparse.Namespace) -> str:
    """The command line as typed (quoted for a POSIX shell) that resumes a stopped run: with the --out that `opd run`
    chose itself when none was given (another run would get a new time-stamped directory)."""
    import shlex

    chose_out = getattr(args, "out", None) is not None and not any(a.split("=")[0] == "--out" for a in argv)
    return "opd " + shlex.join([*argv, "--out", str(args.out)] if args.command == "run" and chose_out else argv)


def main(argv: list[str] | None = None) -> int:
    # first, before anything imports torch: its OpenMP threads then sleep instead of spinning while they wait,
    # which keeps a run fast beside other busy processes (harness.sampling.threads)
    from harness.sampling.threads import set_wait_policy

    set_wait_policy()
    from rich.console import Console
    from rich.markup import escape

    argv = list(sys.argv[1:] if argv is None else argv)
    # the console's width: the terminal's, else $COLUMNS; piped output without either (files, CI logs) gets room
    # for the whole table instead of rich's 80-column default. Tables and notes then fit it (harness.render.tables).
    console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit() else 160)
    if "run" in argv and not any(arg.split("=")[0] in _SELECTION_FLAGS for arg in argv):
        console.print("[bold]Embedded demo:[/] opd run " + " ".join(DEMO_ARGS) + " (pass --task etc. to choose)")
        argv = [*argv, *DEMO_ARGS]
    args = build_parser().parse_args(argv)
    try:
        from harness.workflows.plugins import load_all

        load_all(includes_of(args))
        return args.handler(args, console)
    except _known_errors() as error:
        if debug_of(args):
            raise
        from harness.workflows.runner import RunStoppedError

        message = str(error)
        if isinstance(error, RunStoppedError):
            message += f" Resume with: {_resume_command(argv, args)}"
        # escaped: messages hold literal brackets (pip install 'opd-harness[vllm]') that rich would read as markup
        console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        return 2
    except OSError as error:
        import errno

        # a full or read-only disk under a report's output (a figure, an HTML view): the same one paragraph
        if debug_of(args) or error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        where = f" {error.filename}" if error.filename else ""
        console.print(f"[bold red]error:[/] Could not write{escape(where)}: {os.strerror(error.errno)} (errno "
                      f"{error.errno}). Free some space or choose another output path, then run the same command "
                      f"again: {escape(_resume_command(argv, args))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        resume = _resume_command(argv, args)
        console.print(f"[yellow]Interrupted.[/] Every finished question is saved; run the same command again to "
                      f"resume where it stopped: {resume}", highlight=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
