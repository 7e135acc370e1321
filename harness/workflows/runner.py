"""``opd run``: resolve everything up front, diagnose question by question, write records as work completes.

Every plugin name, model and tokenizer is checked before the first rollout, so a typo or a tokenizer mismatch
fails in seconds. Records are rewritten atomically after each question, so an interruption keeps finished work.
A full disk stops the run with one paragraph saying what was saved and how to resume (:class:`RunStoppedError`); a
damaged part file found on resuming is moved aside and its question redone; :func:`rebuild_records` rewrites the
merged records from the parts without any model.
"""
from __future__ import annotations

import contextlib
import difflib
import errno
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch

from harness.api.data import resolve_data_dir
from harness.api.errors import ConfigError, OpdError
from harness.api.method import DEFAULT_DEPTH_WINDOWS, DEFAULT_SELECTION
from harness.api.progress import NoProgress, Progress
from harness.api.task import Question, Task, resolve_task
from harness.diagnostic.losses import resolve_loss
from harness.diagnostic.question import (
    SAMPLING_SCHEME,
    Cost,
    Participants,
    QuestionResult,
    Settings,
    cpu_threads,
    diagnose_question,
    sampling_key,
)
from harness.diagnostic.selection import DEPTH_WINDOWS, PRIORITIES, SELECTIONS
from harness.reports.depth import depth_summary
from harness.sampling.backends import BACKENDS, resolve_backend
from harness.sampling.lockstep import run_lockstep
from harness.sampling.models import check_same_tokenizer, device_problem
from harness.sampling.teacher import RunState, Teacher, resolve_teacher
from harness.sampling.threads import ThreadPlan, apply_threads, threads_problem
from harness.storage.cache import WorkCache, code_fingerprint
from harness.storage.chunks import check_within, chunk_meta, wave_span
from harness.storage.records import (
    LOSS_NAMES,
    PARTS_DIR,
    RecordWriteError,
    write_json,
)
from harness.storage.run_directory import RunDirectory, RunIdentity
from harness.storage.run_meta import RunMeta


class RunStoppedError(OpdError, RuntimeError):
    """The run stopped on a fault outside the harness (a full disk, a read-only or failing file system).

    Every finished question is saved; the message says what happened and where, and that the same command resumes
    (the CLI appends that command)."""


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
    trust_remote_code: bool = False  # only ever True when the user passes --trust-remote-code
    backend: str = "transformers"  # who generates rollouts and continuations (harness.sampling.backends)
    threads: int | None = None  # torch CPU threads (None: the CPUs this process may use; harness.sampling.threads)
    include_paths: tuple[str, ...] = ()  # lm-eval task YAML directories for lm_eval:<name> (--include-path)
    questions: tuple[int, int] | None = None  # --questions A:B: a chunk of the task's order (harness.storage.chunks)


@dataclass(frozen=True)
class PreparedRun:
    """What :func:`run` resolves before it touches the output directory, and every question of the run then
    reads: the configuration, the task's selected questions (all of them up to ``--limit``, a chunk included),
    the participants with their models loaded, the data root (None: the hub), the thread plan, and when the run
    began (``time.perf_counter()``, so that setup time is counted)."""

    config: RunConfig
    questions: Sequence[Question]
    who: Participants
    data_dir: Path | None
    threads: ThreadPlan
    started: float


def validate(config: RunConfig) -> None:
    s = config.settings
    problems = []
    if s.rollouts < 1:
        problems.append(f"--rollouts must be at least 1 (got {s.rollouts})")
    if s.continuations < 1:
        problems.append(f"--continuations must be at least 1 (got {s.continuations})")
    if s.nodes_per_window < 1:
        problems.append(f"--nodes-per-window must be at least 1 (got {s.nodes_per_window})")
    if s.top_k < 1:  # K = 0 leaves the sampled token alone in most supports: g* = 0, nothing is diagnosed
        problems.append(f"--top-k must be at least 1 (got {s.top_k}; with no top-K token the support is the sampled "
                        f"token alone and no node is informative)")
    if not s.temperature > 0:
        problems.append(f"--temperature must be > 0 (got {s.temperature})")
    if not 0 < s.jsd_beta < 1:
        problems.append(f"--jsd-beta must be strictly between 0 and 1 (got {s.jsd_beta})")
    if s.priority not in PRIORITIES:
        problems.append(f"--priority must be one of {', '.join(PRIORITIES)} (got {s.priority!r})")
    if s.selection not in SELECTIONS:
        close = difflib.get_close_matches(str(s.selection), SELECTIONS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.append(f"--selection must be one of {', '.join(SELECTIONS)} (got {s.selection!r}){hint}")
    if s.depth_windows not in DEPTH_WINDOWS:
        close = difflib.get_close_matches(str(s.depth_windows), DEPTH_WINDOWS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.append(f"--depth-windows must be one of {', '.join(DEPTH_WINDOWS)} (got {s.depth_windows!r}){hint}")
    if threads_problem(config.threads):
        problems.append(threads_problem(config.threads))
    if device_problem(config.device):
        problems.append(device_problem(config.device))
    if config.limit is not None and config.limit < 1:
        problems.append(f"--limit must be a positive number of questions (got {config.limit})")
    if config.questions is not None:
        start, end = config.questions
        if not 0 <= start < end:
            problems.append(f"--questions {start}:{end} must have 0 <= A < B (A:B holds questions A to B-1)")
        if config.limit is not None:  # a chunk's waves are the whole task's: a --limit would change its last one
            problems.append(f"--limit and --questions cannot go together: --questions A:B already chooses the "
                            f"questions (--questions 0:{config.limit} for the first {config.limit}); drop --limit")
    if s.max_new_tokens is not None and s.max_new_tokens < 1:
        problems.append(f"--max-new-tokens must be at least 1 (got {s.max_new_tokens})")
    if not config.teachers:
        problems.append("give at least one --teacher (see `opd list teachers`)")
    if len(set(config.teachers)) != len(config.teachers):
        problems.append("a teacher is listed twice")
    if problems:
        raise ConfigError("Invalid run configuration: " + "; ".join(problems) + ".")
    BACKENDS.get(config.backend)  # unknown backend: RegistryError with a suggestion


def default_out_dir(config: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{config.task}_{config.student}").strip("-")
    return Path("runs") / f"{slug}_{stamp}"


def resolve_participants(config: RunConfig, task: Task, teachers: Sequence[Teacher],
                         state: RunState | None = None) -> Participants:
    """Resolve the losses and load the models (tokenizers checked) into the run's ``state`` (a new one when None);
    fails before any generation work."""
    state = state if state is not None else RunState()
    losses = [resolve_loss(name, beta=config.settings.jsd_beta) if name == "jsd" else resolve_loss(name)
              for name in LOSS_NAMES]
    student = state.models.load(config.student, config.device, config.trust_remote_code)
    placed = []
    for teacher in teachers:
        model = student if teacher.model is None else state.models.load(teacher.model, config.device,
                                                                        config.trust_remote_code)
        if model is not student:
            check_same_tokenizer(student, model)
        placed.append((teacher, model))
    backend = None if config.backend == "transformers" else resolve_backend(config.backend, student)
    return Participants(task, student, config.student, placed, losses, config.seed, backend, state)


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("opd-harness", "torch", "transformers", "datasets", "numpy", "pyarrow"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def config_fingerprint(config: RunConfig, teachers: Sequence[Teacher] = (), threads: int | None = None) -> str:
    """What the records depend on: a re-run with the same fingerprint may resume, a different one may not mix in.

    ``teachers`` (resolved) add their variants, e.g. the summariser an environment variable chose. ``threads``: the
    torch thread count the run uses on CPU (None on an accelerator), which changes the sampled tokens."""
    return _short_hash({**_record_relevant(config, threads), "variants": [teacher.variant for teacher in teachers]})


def sampling_fingerprint(config: RunConfig, threads: int | None = None) -> str:
    """The configuration without its teachers: two runs that agree here share all teacher-independent work
    (under ``--priority disagreement`` the teachers choose the nodes, so they stay in)."""
    if config.settings.priority == "disagreement":
        return config_fingerprint(config, threads=threads)
    content = _record_relevant(config, threads)
    content.pop("teachers")
    content["settings"].pop("jsd_beta")
    return _short_hash(content)


def _record_relevant(config: RunConfig, threads: int | None) -> dict[str, Any]:
    """The configuration as the records depend on it: the thread count actually used rather than the one asked
    for (``--threads 2`` and the default on a 2-core machine give the same records), the random-stream layout,
    and the selection and depth windows only when they are not METHOD's (so METHOD runs keep one fingerprint)."""
    content = asdict(config)
    content.pop("threads")
    if not content["include_paths"]:  # runs without --include-path keep the fingerprint they always had
        content.pop("include_paths")
    if content["questions"] is None:  # so do runs without --questions
        content.pop("questions")
    if content["settings"]["selection"] == DEFAULT_SELECTION:
        content["settings"].pop("selection")
    if content["settings"]["depth_windows"] == DEFAULT_DEPTH_WINDOWS:
        content["settings"].pop("depth_windows")
    content["cpu_threads"] = threads
    content["sampling_scheme"] = SAMPLING_SCHEME
    in_flight = in_flight_override()
    if in_flight is not None:  # the default is a function of the configuration itself
        content["questions_in_flight"] = in_flight
    return content


def _short_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run(config: RunConfig, out: Path, progress: Progress | None = None, overwrite: bool = False,
        cache: WorkCache | None = None, state: RunState | None = None) -> dict[str, Any]:
    """Run the diagnostic and write ``nodes.parquet``, ``questions.parquet`` and ``run.json`` under ``out``.

    Work is committed per question (``out/parts/``, atomic writes). Re-running the same command on the same ``out``
    resumes after the last committed question and yields the same records as an uninterrupted run, because every
    random stream is seeded from (seed, question id, rollout, ...), not from what ran before.

    With a ``cache`` (``harness.storage.cache.WorkCache``; the CLI passes one unless ``--no-cache``), teacher-independent
    work and each teacher's rows are read back when everything they depend on matches: adding a teacher to a
    finished run (same ``out`` with more ``--teacher``s, or a new ``out``) runs only the new teacher's passes.

    ``state`` (``harness.sampling.teacher.RunState``) holds the run's models and context memo; None (the usual case): a new
    one, so nothing carries over from an earlier run in the same process. Pass one only to share loaded models on
    purpose (e.g. a benchmark that loads the student outside its timings).
    """
    validate(config)
    started = time.perf_counter()
    progress = progress or NoProgress()
    # names, data and models are all checked before the output directory is touched or any sampling starts
    teachers = [resolve_teacher(spec) for spec in config.teachers]
    data_dir = resolve_data_dir(config.data_dir)
    task = resolve_task(config.task, config.include_paths)
    questions = list(task.load(data_dir, config.limit))
    if not questions:
        raise ConfigError(f"No questions selected for task {config.task!r}: check --limit and the data.")
    if config.questions is not None:  # a chunk: past the task's end is refused before any model loads
        check_within(config.questions, len(questions), config.task)
    threads = apply_threads(config.threads)
    who = resolve_participants(config, task, teachers, state)
    used = cpu_threads(who.student)
    identity = RunIdentity(config_fingerprint(config, teachers, used), sampling_fingerprint(config, used),
                           config.teachers, _fewer_questions(Path(out), config, teachers, used),
                           _smaller_range(Path(out), config, teachers, used))
    try:
        with RunDirectory(Path(out), identity, overwrite) as run_dir:
            prepared = PreparedRun(config, questions, who, data_dir, threads, started)
            return _run_questions(prepared, run_dir, progress, cache)
    except RecordWriteError as error:
        total = len(questions) if config.questions is None else config.questions[1] - config.questions[0]
        raise RunStoppedError(write_failure_message(error, Path(out), total, cache)) from error


def _fewer_questions(out: Path, config: RunConfig, teachers: Sequence[Teacher], threads: int | None
                     ) -> tuple[int, str] | None:
    """``(limit, fingerprint)`` of this configuration at the smaller ``--limit`` of the run in ``out``, if its
    run.json has one: a run there with that fingerprint is this run on its first questions, and grows in place."""
    meta = RunMeta.read(out / "run.json")
    earlier = meta.limit if meta is not None else None
    if earlier is None or (config.limit is not None and earlier >= config.limit) or config.questions:
        return None
    return earlier, config_fingerprint(replace(config, limit=earlier), teachers, threads)


def _smaller_range(out: Path, config: RunConfig, teachers: Sequence[Teacher], threads: int | None
                   ) -> tuple[tuple[int, int], str] | None:
    """``(range, fingerprint)`` of this configuration at the ``--questions`` range of the chunk run in ``out``, when
    that range lies within this one's: a run there with that fingerprint is this chunk on fewer questions, and
    grows in place (its saved questions are kept: a chunk's waves are the whole task's, whatever its ends)."""
    if config.questions is None:
        return None
    meta = RunMeta.read(out / "run.json")
    earlier = meta.questions if meta is not None else None
    if (earlier is None or earlier == tuple(config.questions)
            or not config.questions[0] <= earlier[0] < earlier[1] <= config.questions[1]):
        return None
    return earlier, config_fingerprint(replace(config, questions=earlier), teachers, threads)


def write_failure_message(error: RecordWriteError, out: Path, total: int, cache: WorkCache | None) -> str:
    """What happened, where, what is kept and what to do: one paragraph (the CLI adds the command that resumes)."""
    failed = Path(error.filename or out)
    saved = len(list((out / PARTS_DIR).glob("*.questions.parquet"))) if (out / PARTS_DIR).is_dir() else 0
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        free = _free_bytes(failed.parent)
        space = f" ({free / 2**20:.1f} MiB free)" if free is not None else ""
        cause = f"the disk (or quota) holding {failed.parent} is full{space}"
        fix = "Free some space there"
        if cache is not None:
            fix += f" (the reuse cache in {cache.root} is emptied by `opd cache --clear`; --no-cache turns it off)"
    elif error.errno == errno.EROFS:
        cause, fix = f"{failed.parent} is on a read-only file system", "Make it writable again"
    else:
        cause, fix = f"the file system holding {failed.parent} refused the write", "Fix the cause"
    return (f"Could not write {failed}: {error.strerror} (errno {error.errno}); {cause}. The run stopped there: "
            f"{saved} of {total} question(s) are saved in {out / PARTS_DIR}, so nothing finished is lost. {fix}, then run "
            f"the same command again: it resumes after the last saved question and ends with the same records as an "
            f"uninterrupted run.")


def _free_bytes(directory: Path) -> int | None:
    existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
    try:
        return shutil.disk_usage(existing).free if existing is not None else None
    except OSError:
        return None


# positions of student KV cache the questions in flight may hold together (their prompts and rollouts, which
# every branch starts from): about 1.5 GB for a 135M model in float32 on CPU
IN_FLIGHT_POSITIONS = {"cpu": 1 << 15, "cuda": 1 << 18}
MAX_QUESTIONS_IN_FLIGHT = 8
IN_FLIGHT_VARIABLE = "OPD_QUESTIONS_IN_FLIGHT"


def in_flight_override() -> int | None:
    """``$OPD_QUESTIONS_IN_FLIGHT`` (e.g. 1 for the least memory), None when unset; it changes which rows share a
    batch, so it is part of the run's fingerprint."""
    value = os.environ.get(IN_FLIGHT_VARIABLE, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"${IN_FLIGHT_VARIABLE} must be a whole number of questions, at least 1 (got {value!r}); "
                          f"unset it to let opd choose from the memory the questions' caches need.")
    return int(value)


def questions_in_flight(who: Participants, settings: Settings) -> int:
    """How many questions run side by side, their generation calls merged (``harness.sampling.lockstep``): as many as
    keep their G rollouts' caches (with a 512-token prompt allowance) within ``IN_FLIGHT_POSITIONS``, at most
    ``MAX_QUESTIONS_IN_FLIGHT``, unless ``$OPD_QUESTIONS_IN_FLIGHT`` says; 1 for a backend that cannot merge
    calls."""
    if not who.sampler.merges_calls:
        return 1
    override = in_flight_override()
    if override is not None:
        return override
    budget = IN_FLIGHT_POSITIONS.get(who.student.device.type, IN_FLIGHT_POSITIONS["cpu"])
    return max(1, min(MAX_QUESTIONS_IN_FLIGHT, budget // (settings.rollouts * (settings.new_tokens(who.task) + 512))))


def _wave(block, pending: set[int], who: Participants, settings: Settings, cache: WorkCache | None):
    """Which questions of ``block`` (consecutive ``(index, question)``, one wave of an uninterrupted run) to run
    together, and with which cache. Generated rows keep their own seeds, but the batch a row decodes in shifts
    its logits in the last float bits, which can flip a sampled token; so whenever any question of the block
    has to sample, the whole block samples afresh, as the uninterrupted run did (questions saved before are
    redone and dropped, sampled cache entries unread), and a resumed or cache-assisted run gives the same records.
    When the block's pending questions all have sampled entries, nothing is generated: they alone run."""
    wanted = [(index, question) for index, question in block if index in pending]
    if not wanted or len(block) == 1:
        return wanted, cache
    if cache is not None:
        max_new = settings.new_tokens(who.task)
        if all(cache.has_sampled(sampling_key(question, who, settings, max_new)) for _, question in wanted):
            return wanted, cache
    return block, (None if cache is None else _SamplingAnew(cache))


class _SamplingAnew:
    """A reuse cache that reads back no sampled entry (so its question samples again; teacher rows then follow
    from the new plans), everything else, writes included, passed through."""

    def __init__(self, cache: WorkCache) -> None:
        self._cache = cache

    def load_sampled(self, key):
        return None

    def __getattr__(self, name: str):
        return getattr(self._cache, name)


def _diagnose_wave(wave, who: Participants, settings: Settings, progress, cache: WorkCache | None
                   ) -> Iterator[tuple[int, Any]]:
    """``(slot, QuestionResult or the exception raised)`` for each question of the wave, as each finishes."""
    if len(wave) == 1:  # nothing to merge with: no worker thread (plain tracebacks, plain debugging)
        try:
            yield 0, diagnose_question(wave[0][1], who, settings, progress, cache)
        except Exception as error:  # noqa: BLE001  (raised by the caller, after the wave)
            yield 0, error
        return

    def job(question):
        return lambda sampler: diagnose_question(question, replace(who, backend=sampler), settings, progress, cache)

    yield from run_lockstep([job(question) for _, question in wave], who.sampler)


def rebuild_records(path: Path) -> tuple[int, list[Path]]:
    """Rewrite ``path/nodes.parquet`` and ``questions.parquet`` from ``path/parts/`` (no model, no data needed).

    Damaged parts are moved to ``parts/damaged/`` first, as on resuming. Returns (questions merged, files set aside);
    the questions of set-aside parts are redone by running the command that made the run again.
    """
    path = Path(path)
    if not (path / PARTS_DIR).is_dir():
        raise ConfigError(f"{path} has no {PARTS_DIR}/ folder to rebuild its records from: only a directory written "
                          f"by `opd run --out` keeps one.")
    try:
        with RunDirectory(path, identity=None, overwrite=False) as run_dir:
            run_dir.merge()
            return len(run_dir.done), list(run_dir.set_aside)
    except RecordWriteError as error:
        raise RunStoppedError(f"{error} Nothing was lost: the parts in {path / PARTS_DIR} are untouched; fix the "
                              f"cause and rebuild again.") from error


def _run_questions(prepared: PreparedRun, run_dir: RunDirectory, progress: Progress,
                   cache: WorkCache | None) -> dict[str, Any]:
    """Diagnose the questions of ``prepared`` not yet committed in ``run_dir`` and return run.json's content, as
    written.

    Questions run in waves of :func:`questions_in_flight` (their generation merged, ``harness.sampling.lockstep``); each
    finished question is committed as its own part and the merged parquet files are rewritten, so an interrupted
    run loses at most the wave in flight (run.json then says ``interrupted``). A chunk (``config.questions``)
    runs its questions in the waves of the whole task; a run grown to a larger ``--limit`` redoes its last wave.
    When nothing is left to do and the earlier session completed with the same fingerprint, the earlier run.json
    is returned unchanged. Each question's :class:`QuestionResult` brings its cost; the session's is their sum."""
    config, questions, who, started = prepared.config, list(prepared.questions), prepared.who, prepared.started
    data_dir, threads = prepared.data_dir, prepared.threads
    setup_s = time.perf_counter() - started
    in_flight = questions_in_flight(who, config.settings)
    numbered = list(enumerate(questions))
    first, end = 0, len(questions)
    if config.questions is not None:  # a chunk: its own questions, in the waves of the whole task (harness.storage.chunks)
        first, end = wave_span(config.questions, in_flight, len(questions))
        questions = questions[config.questions[0]:config.questions[1]]
    selected = numbered[config.questions[0]:config.questions[1]] if config.questions is not None else numbered
    if run_dir.grown_from is not None:
        numbered_keys = {run_dir.part_key(index, q.id) for index, q in selected}
        if not run_dir.done <= numbered_keys:
            raise ConfigError(f"--out {run_dir.path} holds this run on its first {run_dir.grown_from} questions, but "
                              f"task {config.task!r} selects other questions first at --limit {config.limit}, so it "
                              f"cannot grow in place: use a new --out.")
        # the last wave of the smaller run held fewer questions than it does now, and a row's samples depend on
        # the batch it decodes in: its questions run again with the new ones, as a run this size from the start
        run_dir.forget_from(run_dir.grown_from - run_dir.grown_from % in_flight)
    todo = [(index, q) for index, q in selected if run_dir.part_key(index, q.id) not in run_dir.done]
    earlier = _earlier_meta(run_dir)
    if (not todo and earlier is not None and earlier.complete
            and earlier.provenance.fingerprint == run_dir.identity.fingerprint and not run_dir.set_aside):
        # nothing to do: keep the record of the session that did the work (its cost and timings), returned as the
        # file holds it
        run_dir.merge()
        return json.loads((run_dir.path / "run.json").read_text())
    code = code_fingerprint()
    meta = {
        "config": asdict(config),
        "fingerprint": run_dir.identity.fingerprint,
        "sampling_fingerprint": run_dir.identity.sampling,
        "seeds": {"base": config.seed, "streams": "sha256(seed, question id, rollout, purpose): order-independent"},
        "data_source": str(data_dir) if data_dir else "hub",
        "device": str(who.student.device),
        "dtype": str(who.student.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "threads_source": threads.source,  # --threads, OMP_NUM_THREADS or the CPUs available
        "omp_wait_policy": threads.wait_policy or "unset (OpenMP default: spinning)",
        "versions": package_versions(),
        "code": code,  # this session's harness/tasks/teachers sources; earlier sessions' when the run resumed or grew
        "code_earlier": [c for c in dict.fromkeys([*earlier.provenance.code_earlier,
                                                   earlier.provenance.code or "not recorded"] if earlier else [])
                         if c and c != code],
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "resumed_questions": len(questions) - len(todo),
        "added_teachers": list(run_dir.added_teachers),
        "grown_from_limit": run_dir.grown_from,
        **({"grown_from_questions": list(run_dir.grown_range)} if run_dir.grown_range is not None else {}),
        **({"chunk": chunk_meta(config.questions, in_flight, len(numbered))} if config.questions is not None else {}),
        "cache": str(cache.root) if cache is not None else None,
        "set_aside_parts": [str(p.relative_to(run_dir.path)) for p in run_dir.set_aside],
        "status": "running",
        # kept through a session that is killed before it finishes
        "sessions": [dict(session) for session in earlier.sessions] if earlier is not None else [],
    }
    write_json(meta, run_dir.path / "run.json")
    progress.add_total("questions", len(todo))
    progress.add_total("rollouts", len(todo) * config.settings.rollouts)
    progress.add_total("teacher passes", len(todo) * config.settings.rollouts * len(config.teachers))
    diagnosed = 0
    spent = Cost()  # this session's, summed over the questions it diagnosed
    meta["questions_in_flight"] = in_flight
    pending = {index for index, _ in todo}
    try:
        for start in range(first, end, in_flight):
            block = numbered[start:min(start + in_flight, end)]
            wave, wave_cache = _wave(block, pending, who, config.settings, cache)
            redone = len(wave) - sum(index in pending for index, _ in wave)
            if redone:  # questions saved before, batched again only so that the rest samples as it first would
                progress.add_total("rollouts", redone * config.settings.rollouts)
                progress.add_total("teacher passes", redone * config.settings.rollouts * len(config.teachers))
            failure: BaseException | None = None
            for slot, outcome in _diagnose_wave(wave, who, config.settings, progress, wave_cache):
                index, question = wave[slot]
                if isinstance(outcome, BaseException):
                    failure = failure or outcome  # the wave's other questions still finish and are saved
                    continue
                if index not in pending:
                    continue
                result: QuestionResult = outcome
                run_dir.commit(index, question.id, result.node_rows, result.question_rows)
                # the merged files stay current for readers; not fsynced here: the parts are the durable commit,
                # and resuming or `opd rebuild` rewrites these from them (fsyncing a growing file per question
                # would not stay negligible on a long run)
                run_dir.merge(durable=False)
                spent += result.cost
                # throughput counts nodes sampled in this session, not those read back from the cache
                diagnosed += len(result.node_rows) // len(config.teachers) if result.sampled_now else 0
                progress.advance("questions")
            if failure is not None:
                raise failure
    except BaseException:
        meta.update(status="interrupted", committed_questions=len(run_dir.done))
        with contextlib.suppress(RecordWriteError):  # on a full disk the parts are what matters, and they are saved
            write_json(meta, run_dir.path / "run.json")
        raise
    run_dir.merge()
    nodes = pq.read_table(run_dir.path / "nodes.parquet", columns=["informative", "teacher", "logits_finite", "task",
                                                                   "student", "question_id", "rollout_id", "position",
                                                                   "depth_norm"])
    teachers = max(len(config.teachers), 1)
    elapsed = time.perf_counter() - started
    meta.update(
        status="complete",
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        counts={"questions": len(questions), "rollouts": len(questions) * config.settings.rollouts,
                "nodes": nodes.num_rows // teachers,
                "informative_nodes": int(sum(nodes.column("informative").to_pylist())) // teachers,
                "generated_tokens_this_session": spent.generated_tokens,
                "teacher_passes_this_session": spent.teacher_passes,
                # screened selection, this session: candidates screened and kept, tokens the screening generated
                "screening_this_session": asdict(spent.screening),
                "nonfinite_teacher_rows": int(nodes.column("logits_finite").to_pandas().eq(False).sum())},
        # where the informative nodes are (METHOD): share at the first response token, quartiles of depth_norm
        depth=depth_summary(nodes.to_pandas()).as_json(),
        timings={"setup_s": round(setup_s, 2), "total_s": round(elapsed, 2),
                 "nodes_per_minute": round(60 * diagnosed / max(elapsed - setup_s, 1e-9), 2) if diagnosed else None},
    )
    # every finished session's cost, so that a run grown or resumed over several sessions states what it all took
    meta["sessions"] = [*meta["sessions"], {
        "finished_at": meta["finished_at"], "questions_sampled": len(todo), "generated_tokens": spent.generated_tokens,
        "total_s": round(elapsed, 2), "device": meta["device"], "threads": meta["threads"], "code": code}]
    if cache is not None:
        meta["cache_hits"] = asdict(cache.counts)
        if cache.write_error:
            meta["cache_write_error"] = cache.write_error
    write_json(meta, run_dir.path / "run.json")
    return meta


def _earlier_meta(run_dir: RunDirectory) -> RunMeta | None:
    """The run.json of the run whose committed questions this one resumes or grows from, else None."""
    meta = RunMeta.read(run_dir.path / "run.json")
    accepted = {run_dir.identity.fingerprint}
    if run_dir.grown_from is not None:
        accepted.add(run_dir.identity.fewer_questions[1])
    if run_dir.grown_range is not None:
        accepted.add(run_dir.identity.smaller_range[1])
    return meta if meta is not None and meta.provenance.fingerprint in accepted else None
