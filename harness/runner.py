"""``opd run``: resolve everything up front, diagnose question by question, write records as work completes.

Every plugin name, model and tokenizer is checked before the first rollout, so a typo or a tokenizer mismatch
fails in seconds. Records are rewritten atomically after each question, so an interruption keeps finished work.
"""
from __future__ import annotations

import platform
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from harness.data import resolve_data_dir
from harness.diagnostic import NoProgress, Participants, Progress, QuestionResult, Settings, diagnose_question
from harness.losses import resolve_loss
from harness.models import check_same_tokenizer, load_model
from harness.records import LOSS_NAMES, NODE_SCHEMA, QUESTION_SCHEMA, rows_to_table, write_json, write_table
from harness.selection import PRIORITIES
from harness.task import resolve_task
from harness.teacher import resolve_teacher


class ConfigError(ValueError):
    """Invalid run configuration; the message says what to change."""


@dataclass(frozen=True)
class RunConfig:
    task: str = "boolq"
    student: str = "smollm2-135m"
    teachers: tuple[str, ...] = ("self:correct-demo", "self")
    limit: int | None = 3
    data_dir: str | None = None
    seed: int = 0
    settings: Settings = field(default_factory=Settings)
    device: str | None = None


def validate(config: RunConfig) -> None:
    s = config.settings
    problems = []
    if s.rollouts < 1:
        problems.append(f"--rollouts must be at least 1 (got {s.rollouts})")
    if s.continuations < 1:
        problems.append(f"--continuations must be at least 1 (got {s.continuations})")
    if s.nodes_per_window < 1:
        problems.append(f"--nodes-per-window must be at least 1 (got {s.nodes_per_window})")
    if s.top_k < 0:
        problems.append(f"--top-k must be 0 or more (got {s.top_k})")
    if not s.temperature > 0:
        problems.append(f"--temperature must be > 0 (got {s.temperature})")
    if not 0 < s.jsd_beta < 1:
        problems.append(f"--jsd-beta must be strictly between 0 and 1 (got {s.jsd_beta})")
    if s.priority not in PRIORITIES:
        problems.append(f"--priority must be one of {', '.join(PRIORITIES)} (got {s.priority!r})")
    if config.limit is not None and config.limit < 1:
        problems.append(f"--limit must be a positive number of questions (got {config.limit})")
    if s.max_new_tokens is not None and s.max_new_tokens < 1:
        problems.append(f"--max-new-tokens must be at least 1 (got {s.max_new_tokens})")
    if not config.teachers:
        problems.append("give at least one --teacher (see `opd list teachers`)")
    if len(set(config.teachers)) != len(config.teachers):
        problems.append("a teacher is listed twice")
    if problems:
        raise ConfigError("Invalid run configuration: " + "; ".join(problems) + ".")


def default_out_dir(config: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{config.task}_{config.student}").strip("-")
    return Path("runs") / f"{slug}_{stamp}"


def prepare_out_dir(out: Path, overwrite: bool) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory: choose another --out.")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(
            f"--out {out} already holds files from another run. Use a new --out, or --overwrite to replace them."
        )
    if out.exists() and overwrite:
        for name in ("nodes.parquet", "questions.parquet", "run.json"):
            (out / name).unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"Cannot write to --out {out} ({error.strerror}): choose a writable directory.") from None
    return out


def resolve_participants(config: RunConfig, student_model=None) -> Participants:
    """Resolve task, teachers and losses, and load the models; fails before any generation work."""
    task = resolve_task(config.task)
    teachers = [resolve_teacher(spec) for spec in config.teachers]
    losses = [resolve_loss(name, beta=config.settings.jsd_beta) if name == "jsd" else resolve_loss(name)
              for name in LOSS_NAMES]
    student = student_model or load_model(config.student, config.device)
    placed = []
    for teacher in teachers:
        model = student if teacher.model is None else load_model(teacher.model, config.device)
        if model is not student:
            check_same_tokenizer(student, model)
        placed.append((teacher, model))
    return Participants(task, student, config.student, placed, losses, config.seed)


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("opd-harness", "torch", "transformers", "datasets", "numpy", "pyarrow"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run(config: RunConfig, out: Path, progress: Progress | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Run the diagnostic and write ``nodes.parquet``, ``questions.parquet`` and ``run.json`` under ``out``."""
    validate(config)
    started = time.perf_counter()
    progress = progress or NoProgress()
    # names, data and models are all checked before the output directory is touched or any sampling starts
    for spec in config.teachers:
        resolve_teacher(spec)
    data_dir = resolve_data_dir(config.data_dir)
    task = resolve_task(config.task)
    questions = list(task.load(data_dir, config.limit))
    if not questions:
        raise ConfigError(f"No questions selected for task {config.task!r}: check --limit and the data.")
    who = resolve_participants(config)
    out = prepare_out_dir(out, overwrite)
    setup_s = time.perf_counter() - started

    meta = {
        "config": asdict(config),
        "data_source": str(data_dir) if data_dir else "hub",
        "device": str(who.student.device),
        "dtype": str(who.student.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "versions": package_versions(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "status": "running",
    }
    write_json(meta, out / "run.json")
    progress.add_total("questions", len(questions))
    progress.add_total("rollouts", len(questions) * config.settings.rollouts)
    progress.add_total("teacher passes", len(questions) * config.settings.rollouts * len(config.teachers))
    node_rows: list[dict[str, Any]] = []
    question_rows: list[dict[str, Any]] = []
    generated = 0
    for question in questions:
        result: QuestionResult = diagnose_question(question, who, config.settings, progress)
        node_rows += result.node_rows
        question_rows += result.question_rows
        generated += result.generated_tokens
        _write_records(out, node_rows, question_rows)  # after every question: an interruption keeps finished work
        progress.advance("questions")

    elapsed = time.perf_counter() - started
    informative = sum(1 for row in node_rows if row["informative"]) // max(len(config.teachers), 1)
    diagnosed = len(node_rows) // max(len(config.teachers), 1)
    meta.update(
        status="complete",
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        counts={"questions": len(questions), "rollouts": len(question_rows), "nodes": diagnosed,
                "informative_nodes": informative, "generated_tokens": generated},
        timings={"setup_s": round(setup_s, 2), "total_s": round(elapsed, 2),
                 "nodes_per_minute": round(60 * diagnosed / max(elapsed - setup_s, 1e-9), 2)},
    )
    write_json(meta, out / "run.json")
    return meta


def _write_records(out: Path, node_rows: Sequence[dict], question_rows: Sequence[dict]) -> None:
    write_table(rows_to_table(node_rows, NODE_SCHEMA), out / "nodes.parquet")
    write_table(rows_to_table(question_rows, QUESTION_SCHEMA), out / "questions.parquet")
