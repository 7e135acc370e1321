"""``opd suite SUITE.toml``: a grid of tasks x students (x teachers x losses) run as ordinary resumable runs.

Each cell is ``run(RunConfig)`` into ``<out>/<task>/<student>/``, so an interrupted suite resumes cell by cell and
question by question. After the grid, every cell gets its leaderboard (``leaderboard.md``/``.json``) and every task
with two or more students a cross-student comparison (``<out>/<task>/compare.md``). With ``--ray`` the cells run as
Ray tasks (one CPU each by default, one GPU each when the cluster has GPUs) and results are merged in grid order,
so the files are the same whichever worker finished first. (Records are bit-identical to a sequential run on
the same number of torch threads: a Ray task with ``num_cpus=1`` runs one thread, and float sums depend on that.)
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from harness.diagnostic.question import Settings
from harness.workflows.runner import ConfigError, RunConfig, validate

_SETTING_NAMES = {f.name for f in fields(Settings)}
_RUN_KEYS = {"limit", "data_dir", "device", "threads", "questions"}


@dataclass(frozen=True)
class Cell:
    task: str
    student: str
    config: RunConfig
    out: Path
    losses: tuple[str, ...]  # the leaderboard rows to keep (every loss is always computed)


@dataclass(frozen=True)
class Suite:
    name: str
    out: Path
    cells: tuple[Cell, ...]
    losses: tuple[str, ...]


def slug(text: str) -> str:
    """A directory name for a spec: never a path separator, so cells cannot escape the suite directory."""
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", text).strip("._") or "_"


def load_suite(path: Path, out: Path | None = None, threads: int | None = None) -> Suite:
    """The grid of a suite file; ``threads`` (``opd suite --threads``) overrides every cell's thread count."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"Suite file {path} not found.") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"Suite file {path} is not valid TOML: {error}.") from None
    head = data.get("suite", {})
    students, teachers = head.get("students", []), head.get("teachers", [])
    tasks = data.get("tasks", {})
    if not students or not teachers or not tasks:
        raise ConfigError(f"Suite {path} needs [suite] students = [...], teachers = [...] and at least one "
                          f"[tasks.<name>] table (see suites/example.toml).")
    from harness.storage.records import LOSS_NAMES

    losses = tuple(head.get("losses", LOSS_NAMES))
    unknown = set(losses) - set(LOSS_NAMES)
    if unknown:
        raise ConfigError(f"Suite {path}: unknown losses {sorted(unknown)}; known: {', '.join(LOSS_NAMES)}.")
    extra = head.get("student_teachers", {})  # student -> teachers that only its cells get
    if not isinstance(extra, dict) or set(extra) - set(students):
        raise ConfigError(f"Suite {path}: [suite.student_teachers] maps students of the suite to extra teachers; "
                          f"{sorted(set(extra) - set(students)) if isinstance(extra, dict) else extra!r} is not "
                          f"one of the students {students}.")
    root = Path(out or head.get("out", f"runs/suite-{slug(head.get('name', path.stem))}"))
    cells = []
    for task, task_options in tasks.items():
        options = {**data.get("defaults", {}), **(task_options or {})}
        bad = set(options) - _SETTING_NAMES - _RUN_KEYS
        if bad:
            raise ConfigError(f"Suite {path}, task {task}: unknown options {sorted(bad)}; use opd run option names "
                              f"with underscores ({', '.join(sorted(_SETTING_NAMES | _RUN_KEYS))}).")
        settings = Settings(**{k: v for k, v in options.items() if k in _SETTING_NAMES})
        chunks = _chunk_ranges(path, task, options.get("questions"), students)
        for student in students:
            own = tuple(dict.fromkeys([*teachers, *extra.get(student, ())]))
            questions = chunks.get(student)
            config = RunConfig(task=task, student=student, teachers=own, limit=options.get("limit"),
                               questions=questions,
                               data_dir=options.get("data_dir", head.get("data_dir")), seed=head.get("seed", 0),
                               settings=settings, device=options.get("device"),
                               threads=threads if threads is not None else options.get("threads"))
            validate(config)  # every cell's options are checked before the first cell runs
            cell_dir = root / slug(task) / slug(student)
            if questions is not None:  # each chunk its own run beside the cell's others (harness.storage.chunks)
                cell_dir = cell_dir / chunk_dir_name(questions)
            cells.append(Cell(task, student, config, cell_dir, losses))
    return Suite(head.get("name", path.stem), root, tuple(cells), losses)


def chunk_dir_name(questions: tuple[int, int]) -> str:
    """``questions-000008-000016``: a chunk's directory inside its cell's, sorting in question order."""
    return f"questions-{questions[0]:06d}-{questions[1]:06d}"


def _chunk_ranges(path: Path, task: str, value: Any, students: list[str]) -> dict[str, tuple[int, int]]:
    """A task's ``questions`` key: ``"A:B"`` for every student, or a table giving each student of the suite its
    own range (``questions = { "student-a" = "0:40", "student-b" = "0:16" }``); {} when absent."""
    from harness.storage.chunks import parse_range

    if value is None:
        return {}
    flag = f"Suite {path}, task {task}: questions"
    if isinstance(value, str):
        return {student: parse_range(value, flag) for student in students}
    if not isinstance(value, dict) or set(value) != set(students):
        named = sorted(value) if isinstance(value, dict) else value
        raise ConfigError(f"{flag} is either one range \"A:B\" for every student or a table naming each student "
                          f"of the suite once ({students}) with its range; got {named!r}.")
    return {student: parse_range(text, f"{flag} of {student}") for student, text in value.items()}


def run_cell(cell: Cell, include: tuple[str, ...] = (), cache_dir: str | None = None) -> dict[str, Any]:
    """One grid cell: a resumable run plus its leaderboard files (also the unit a Ray worker executes).

    ``include``: plugin files to import first; a Ray worker is a fresh process that must register them again.
    ``cache_dir``: the reuse cache (None: none); cells that share a task and student share its sampled work.
    """
    from harness.render.tables import format_table
    from harness.reports.leaderboard import build, select_losses
    from harness.storage.cache import WorkCache
    from harness.storage.records import load_run
    from harness.storage.run_meta import RunMeta
    from harness.workflows.plugins import load_all
    from harness.workflows.runner import run

    load_all(include)
    meta = run(cell.config, cell.out, cache=WorkCache(cache_dir) if cache_dir else None)
    nodes, _, _ = load_run(cell.out)
    board = build(nodes)
    for name, table in (("leaderboard", board.table), ("pairs", board.pairs)):
        table = select_losses(table, cell.losses)
        (cell.out / f"{name}.md").write_text(format_table(table, "md") + "\n")
        (cell.out / f"{name}.json").write_text(format_table(table, "json") + "\n")
    return {"task": cell.task, "student": cell.student, "out": str(cell.out), "counts": dict(RunMeta.of(meta).counts)}


def run_suite(suite: Suite, ray_address: str | None = None, use_ray: bool = False, console=None,
              include: tuple[str, ...] = (), cache_dir: str | None = None) -> list[dict]:
    include = tuple(str(Path(path).resolve()) for path in include)
    if use_ray:
        results = _run_with_ray(suite, ray_address, include, cache_dir)
    else:
        results = []
        for index, cell in enumerate(suite.cells, 1):
            if console:
                console.print(f"[bold]cell {index}/{len(suite.cells)}[/]: {cell.task} x {cell.student} -> {cell.out}")
            results.append(run_cell(cell, include, cache_dir))
    _write_comparisons(suite)
    return results


def _run_with_ray(suite: Suite, address: str | None, include: tuple[str, ...], cache_dir: str | None) -> list[dict]:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'ray[default]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        # a cell asks Ray for as many CPUs as it runs threads (one unless the suite sets threads)
        remote = ray.remote(num_cpus=max(cell.config.threads or 1 for cell in suite.cells), num_gpus=gpus)(run_cell)
        # ray.get keeps grid order, whatever order workers finish in: merged outputs are deterministic
        return ray.get([remote.remote(cell, include, cache_dir) for cell in suite.cells])
    finally:
        if started_here:
            ray.shutdown()


def _write_comparisons(suite: Suite) -> None:
    from harness.render.tables import format_sections
    from harness.reports.compare import compare, load_runs

    by_task: dict[str, list[Cell]] = {}
    for cell in suite.cells:
        by_task.setdefault(cell.task, []).append(cell)
    for task, cells in by_task.items():
        if len(cells) < 2:
            continue
        runs = load_runs([cell.out for cell in cells])
        tables = compare(runs.nodes)
        (suite.out / slug(task) / "compare.md").write_text(format_sections(tables, "md", None, notes=runs.notes)
                                                          + "\n")
