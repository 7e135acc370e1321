"""The flags the report commands share (``--seed``, ``--resamples``, ``--permutations``, ``--loss``): one place that
adds them to a command and checks them, raising one clear error naming every bad flag before any record is read.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from typing import TYPE_CHECKING

from harness.api.method import PERMUTATIONS, RESAMPLES
from harness.storage.records import LOSS_NAMES

if TYPE_CHECKING:  # harness.reports.stats pulls in scipy (~2 s): imported only once a command runs, not to build the parser
    from harness.reports import stats

FILE_FORMATS = ("md", "csv", "json", "latex")
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
    from harness.diagnostic.losses import resolve_loss
    from harness.api.registry import RegistryError

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
    from pathlib import Path

    return tuple(str(Path(path).resolve()) for path in paths)


def device_problem(device: str | None) -> str | None:
    """What is wrong with a ``--device`` value (None: nothing), checked before any model loads: torch's own parser
    would otherwise stop the run with a traceback."""
    if device in (None, "auto"):
        return None
    import torch

    try:
        torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        return f"--device must be auto, cpu, cuda or cuda:<n> (got {device!r})"
    return None
