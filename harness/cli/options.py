"""The flags the commands share, each defined once: ``--debug``/``--include`` on every command, the reuse cache's
and ``--threads`` of the commands that run models, and the report commands' ``--seed``, ``--resamples``,
``--permutations``, ``--loss``, ``--format``, ``--wide`` (checked before any record is read, one clear error naming
every bad flag).
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.api.method import PERMUTATIONS, RESAMPLES
from harness.render.formats import FILE_FORMATS
from harness.storage.records import LOSS_NAMES

if TYPE_CHECKING:  # harness.reports.stats pulls in scipy (~2 s): imported only once a command runs, not to build the parser
    from harness.reports import stats

# METHOD's defaults, as harness.reports.stats.RESAMPLES / PERMUTATIONS hold them (a test keeps the two equal)
DEFAULT_RESAMPLES, DEFAULT_PERMUTATIONS = RESAMPLES, PERMUTATIONS  # METHOD's (harness.api.method)


def add_format_argument(parser: argparse.ArgumentParser, formats=("rich", *FILE_FORMATS)) -> None:
    parser.add_argument("--format", default="rich", choices=list(formats),
                        help="rich: terminal table (default); md, csv, json, latex: text to stdout (csv and json keep "
                             "full precision)")


def add_wide_argument(parser: argparse.ArgumentParser) -> None:
    """``--wide``: the terminal view with every column, however wide; without it, tables fit the console and the
    columns left out are named in a note (:func:`harness.render.tables.print_fitted`)."""
    parser.add_argument("--wide", action="store_true",
                        help="terminal view with every column, however wide (md/csv/json/latex always hold every "
                             "column); without it, columns that do not fit the console are left out and named")


def add_cell_arguments(parser: argparse.ArgumentParser, *, teacher_help: str,
                       task_help: str = "task name (opd list tasks)") -> None:
    """The required ``--task`` and ``--student`` and the repeatable ``--teacher`` of the commands that evaluate one
    (task, student) cell with its teachers (``opd accuracy``, ``opd validate``); ``teacher_help`` says what no teacher
    means for the command."""
    parser.add_argument("--task", required=True, help=task_help)
    parser.add_argument("--student", required=True, help="student model spec (opd list models)")
    parser.add_argument("--teacher", action="append", dest="teachers", default=[], metavar="SPEC",
                        help=f"teacher spec, repeatable (opd list teachers); {teacher_help}")


def add_stats_arguments(parser: argparse.ArgumentParser) -> None:
    """``--seed``, ``--resamples``, ``--permutations`` (None: :mod:`harness.reports.stats`'s defaults)."""
    parser.add_argument("--seed", type=int, default=0, help="seed of the permutation tests and bootstrap resamples")
    parser.add_argument("--resamples", type=int, default=None, metavar="N",
                        help=f"question-level bootstrap resamples (default: {DEFAULT_RESAMPLES})")
    parser.add_argument("--permutations", type=int, default=None, metavar="N",
                        help=f"sign-flip draws of tests and intervals (default: {DEFAULT_PERMUTATIONS}; all "
                             "2^questions when fewer)")


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """What every command that prints statistical report tables takes: ``--format``, ``--wide`` and the statistics
    flags (:func:`add_stats_arguments`)."""
    add_format_argument(parser)
    add_wide_argument(parser)
    add_stats_arguments(parser)


def check_options(*, seed: int = 0, resamples: int | None = None,
                  permutations: int | None = None) -> "stats.Options":
    """``--seed``/``--resamples``/``--permutations`` checked, as :class:`harness.reports.stats.Options`.

    ``None`` means the default (:data:`harness.reports.stats.RESAMPLES`, :data:`harness.reports.stats.PERMUTATIONS`). A bad value
    raises :class:`harness.workflows.runner.ConfigError` naming every bad flag, before any record is read.
    """
    from harness.reports import stats

    settings = {"seed": seed, "resamples": stats.RESAMPLES if resamples is None else resamples,
                "permutations": stats.PERMUTATIONS if permutations is None else permutations}
    problems = [f"--{name} must be a positive integer (got {settings[name]})"
                for name in ("resamples", "permutations") if settings[name] < 1]
    if seed < 0:  # numpy seeds are non-negative
        problems.append(f"--seed must be 0 or more (got {seed})")
    if problems:
        from harness.api.errors import ConfigError

        raise ConfigError("Invalid statistics options: " + "; ".join(problems) + ".")
    return stats.Options(**settings)


def options_from(args: argparse.Namespace) -> "stats.Options":
    """The checked :class:`harness.reports.stats.Options` of a command built with :func:`add_stats_arguments`."""
    return check_options(seed=args.seed, resamples=args.resamples, permutations=args.permutations)


def check_losses(names: Sequence[str], allowed: Sequence[str] = LOSS_NAMES,
                 reason: str = "run records hold alignments only for the built-in losses") -> tuple[str, ...]:
    """``--loss`` names checked against the loss registry (:data:`harness.diagnostic.losses.LOSSES`), duplicates dropped.

    An unknown name raises the registry's :class:`~harness.api.registry.RegistryError`, with its "did you mean"; so does
    a registered loss outside ``allowed`` (e.g. a plugin loss, which no run record carries), with ``reason``.
    """
    from harness.api.registry import RegistryError
    from harness.diagnostic.losses import resolve_loss

    checked: list[str] = []
    for name in names:
        resolve_loss(name)
        if name not in allowed:
            raise RegistryError(f"Loss {name!r} cannot be used here: {reason}. Choose --loss among "
                                f"{', '.join(allowed)}.")
        if name not in checked:
            checked.append(name)
    return tuple(checked)



SUMMARY_TEACHER = "self:summary"


def with_summarizer(teachers: Sequence[str], summarizer: str | None) -> tuple[str, ...]:
    """Teacher specs with ``--summarizer MODEL`` applied: it is short for naming the writer in the spec, so
    ``self:summary`` becomes ``self:summary:MODEL`` and ``model:X+summary`` becomes ``model:X+self:summary:MODEL``
    (a spec that names its own writer keeps it). The writer then reaches the teacher's factory as its argument, and
    the teacher's name in every table says who wrote the summaries.

    An ``idp:`` pool holding the summary teacher cannot be rewritten without renaming the pool: it is refused, with
    the explicit spelling to use instead.
    """
    if not summarizer:
        return tuple(teachers)
    written = f"{SUMMARY_TEACHER}:{summarizer}"
    rewritten = []
    for spec in teachers:
        head, plus, context = spec.rpartition("+") if spec.startswith("model:") else ("", "", spec)
        if context in (SUMMARY_TEACHER, SUMMARY_TEACHER.removeprefix("self:")):
            spec = f"{head}{plus}{written}"
        elif spec.startswith("idp:"):
            from harness.api.errors import ConfigError

            raise ConfigError(f"--summarizer cannot reach inside the pool of --teacher {spec}: list the pool's "
                              f"contexts with the summary's writer in the spec instead, e.g. --teacher "
                              f"idp:correct-demo,self-demo,summary:{summarizer} (and drop --summarizer).")
        rewritten.append(spec)
    return tuple(rewritten)


def include_paths_from(paths: Sequence[str]) -> tuple[str, ...]:
    """``--include-path`` directories as absolute paths, in the order given (a run's records name them)."""
    return tuple(str(Path(path).resolve()) for path in paths)


def add_global_arguments(parser: argparse.ArgumentParser, top_level: bool) -> None:
    """``--debug`` and ``--include``, before or after the subcommand (``opd --include p.py run`` and ``opd run
    --include p.py``). A subcommand's flags use their own dests, as argparse copies every subparser default over
    the top-level value; :func:`includes_of` and :func:`debug_of` join the two."""
    suffix = "" if top_level else "_after"
    parser.add_argument("--debug", action="store_true", dest=f"debug{suffix}", help="show full tracebacks on errors")
    parser.add_argument("--include", action="append", default=[], metavar="FILE.py", dest=f"include{suffix}",
                        help="import a plugin file that registers tasks/teachers/models/losses (repeatable)")


def includes_of(args: argparse.Namespace) -> list[str]:
    return [*args.include, *getattr(args, "include_after", [])]


def debug_of(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False) or getattr(args, "debug_after", False))


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="reuse cache of rollouts, continuations and teacher rows (default: $OPD_WORK_CACHE_DIR or "
                             "~/.cache/opd-harness/work; see `opd cache`)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the reuse cache")


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads (default: $OMP_NUM_THREADS, else the CPU cores this process may use; "
                             "on CPU the count is part of the run's fingerprint, as it changes the sampled tokens)")


def cache_from(args: argparse.Namespace):
    """The reuse cache the flags ask for (None with --no-cache)."""
    from harness.storage.cache import WorkCache

    return None if args.no_cache else WorkCache(args.cache_dir)


def quiet_libraries() -> None:
    """Before a command loads models: no tokenizer fork warnings, no transformers progress bars or info logs."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
