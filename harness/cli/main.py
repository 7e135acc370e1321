"""The ``opd`` command line: the parser (each subcommand is one module of :mod:`harness.cli.commands`) and
:func:`main`, which loads the plugins, runs the chosen command and turns known errors into one paragraph.

Known mistakes (unknown names, bad numbers, missing data, tokenizer mismatch...) and faults of the file system (a
full disk, a damaged record file) print one paragraph saying what to fix and exit with status 2; ``--debug`` shows
the traceback instead. A run stopped by a fault ends its paragraph with the exact command that resumes it.
"""
from __future__ import annotations

import argparse
import os
import sys

from harness.cli.commands.run import DEMO_ARGS, SELECTION_FLAGS
from harness.cli.options import add_global_arguments, debug_of, includes_of


class OpdParser(argparse.ArgumentParser):
    """The parser of ``opd`` and of every subcommand: no abbreviated flags, since an abbreviation silently turns
    into another flag (``--include`` after ``run`` used to mean ``--include-path``)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = OpdParser(prog="opd", description="Training-free diagnostic of on-policy distillation.")
    add_global_arguments(parser, top_level=True)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OpdParser)
    _register_commands(commands)
    for subcommand in commands.choices.values():
        add_global_arguments(subcommand, top_level=False)
    return parser


# listed first in `opd --help`, the rest by name
_FIRST_COMMANDS = ("run", "leaderboard", "list")


def _register_commands(commands) -> None:
    """Every module of :mod:`harness.cli.commands` adds its subcommand (a new command is a new file there)."""
    import importlib
    import pkgutil

    import harness.cli.commands

    order = {name: index for index, name in enumerate(_FIRST_COMMANDS)}
    names = sorted((m.name for m in pkgutil.iter_modules(harness.cli.commands.__path__)),
                   key=lambda name: (order.get(name, len(order)), name))
    for name in names:
        importlib.import_module(f"harness.cli.commands.{name}").register(commands)


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
    if "run" in argv and not any(arg.split("=")[0] in SELECTION_FLAGS for arg in argv):
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
