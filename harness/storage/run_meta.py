"""``run.json`` as its readers see it: one typed, frozen :class:`RunMeta`, read through :meth:`RunMeta.of` (a dict)
or :meth:`RunMeta.read` (a file).

``harness.workflows.runner`` writes run.json (``_run_questions``) and :func:`harness.storage.records.load_run` reads the file; a
reader takes what it needs from ``RunMeta.of(run_json)`` instead of walking the dict with ``.get(...) or {}``: the
run directory's identity check, the runner's resume, the chunk checks, ``opd compare``'s combine and the reports.
A field that a run.json lacks (an older run, or a missing run.json, which reads as ``{}``) takes the default
below, and the knobs read as METHOD's where the run did not record them (:class:`harness.api.method.Settings`).
Light on purpose: no pandas, no torch.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.api.method import Settings

_SETTING_NAMES = frozenset(f.name for f in fields(Settings))


@dataclass(frozen=True)
class SessionNotes:
    """What the last session did besides diagnosing, for the summary ``opd run`` prints: the teachers it added to
    the run, the damaged part files it set aside, the reuse cache it read (where, and each teacher's rows found
    there) and the first write to that cache that failed."""

    added_teachers: tuple[str, ...] = ()
    set_aside_parts: tuple[str, ...] = ()
    cache: str | None = None  # the reuse cache's directory; None: --no-cache
    teacher_hits: Mapping[str, int] = field(default_factory=dict)  # teacher -> questions whose rows were reused
    cache_write_error: str | None = None


@dataclass(frozen=True)
class Provenance:
    """What identifies a run's records, as run.json states it: the fingerprints (the whole configuration; the
    configuration without its teachers), the recorded configuration itself, how far the run got, the code of every
    session, and the two fields outside the configuration that the sampled tokens depend on."""

    fingerprint: str | None = None
    sampling_fingerprint: str = ""
    config: Mapping[str, Any] | None = None  # run.json "config" (RunConfig's fields); None: not recorded
    status: str | None = None  # "running", "interrupted", "complete" ("stopped": merged chunks, one not complete)
    code: str | None = None  # the last session's sources (harness, tasks, teachers) fingerprint
    code_earlier: tuple[str, ...] = ()  # earlier sessions' when the run resumed or grew
    dtype: str | None = None
    questions_in_flight: int | None = None


@dataclass(frozen=True)
class RunMeta:
    """What the readers of run.json use: what identifies the records (the cell, the configuration, the
    fingerprints), METHOD's knobs as run, the counts and timings of the last session and every finished session's
    cost, where it ran, and how much of it was reused rather than sampled anew."""

    provenance: Provenance = field(default_factory=Provenance)
    settings: Settings = field(default_factory=Settings)
    counts: Mapping[str, Any] = field(default_factory=dict)  # run.json "counts": questions, nodes, tokens...
    timings: Mapping[str, Any] = field(default_factory=dict)  # run.json "timings": setup_s, total_s, ...
    sessions: tuple[Mapping[str, Any], ...] = ()  # every finished session: questions sampled, tokens, seconds...
    machine: tuple[str | None, int | None] = (None, None)  # (device, torch threads) of the last session
    reused_questions: tuple[int, int] = (0, 0)  # (resumed from the run's parts, sampling read from the cache)
    session: SessionNotes = field(default_factory=SessionNotes)

    @classmethod
    def of(cls, run_json: Mapping[str, Any]) -> RunMeta:
        """The typed view of a run.json's content (a dict as ``harness.storage.records.load_run`` returns it)."""
        config = run_json.get("config")
        config = config if isinstance(config, Mapping) else None
        settings = _mapping((config or {}).get("settings"))
        hits = _mapping(run_json.get("cache_hits"))
        counts, timings = _mapping(run_json.get("counts")), _mapping(run_json.get("timings"))
        return cls(
            provenance=Provenance(
                fingerprint=run_json.get("fingerprint"), sampling_fingerprint=run_json.get("sampling_fingerprint", ""),
                config=config, status=run_json.get("status"), code=run_json.get("code"),
                code_earlier=tuple(run_json.get("code_earlier") or ()),
                dtype=run_json.get("dtype"), questions_in_flight=run_json.get("questions_in_flight")),
            settings=Settings(**{name: value for name, value in settings.items() if name in _SETTING_NAMES}),
            counts=counts, timings=timings, sessions=_sessions(run_json, counts, timings),
            machine=(run_json.get("device"), run_json.get("threads")),
            reused_questions=(int(run_json.get("resumed_questions") or 0),
                              int(hits.get("sampled_hits") or 0)),
            session=SessionNotes(
                added_teachers=tuple(run_json.get("added_teachers") or ()),
                set_aside_parts=tuple(run_json.get("set_aside_parts") or ()),
                cache=run_json.get("cache"), teacher_hits=_mapping(hits.get("teacher_hits")),
                cache_write_error=run_json.get("cache_write_error")),
        )

    @classmethod
    def read(cls, path: Path) -> RunMeta | None:
        """The run.json at ``path``; None when there is none, or it cannot be read as one JSON object."""
        try:
            content = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return None
        return cls.of(content) if isinstance(content, Mapping) else None

    def _config(self, name: str) -> Any:
        return (self.provenance.config or {}).get(name)

    @property
    def task(self) -> str | None:
        return self._config("task")

    @property
    def student(self) -> str | None:
        """The student spec as given on the command line."""
        return self._config("student")

    @property
    def teachers(self) -> tuple[str, ...]:
        return tuple(self._config("teachers") or ())

    @property
    def limit(self) -> int | None:
        """``--limit`` as recorded (None: every question, or not recorded)."""
        limit = self._config("limit")
        return limit if isinstance(limit, int) and not isinstance(limit, bool) else None

    @property
    def questions(self) -> tuple[int, int] | None:
        """The ``--questions A:B`` range of a chunk run; None for a run over the task's first questions."""
        questions = self._config("questions")
        if not isinstance(questions, Sequence) or isinstance(questions, str) or len(questions) != 2:
            return None
        return int(questions[0]), int(questions[1])

    @property
    def complete(self) -> bool:
        return self.provenance.status == "complete"

    def configuration(self, names: Sequence[str]) -> dict[str, Any] | None:
        """The recorded configuration's fields ``names`` plus the machine's device and dtype: what two runs must
        share for their records to be combined; None when run.json recorded no configuration."""
        if self.provenance.config is None:
            return None
        return {**{name: self._config(name) for name in names}, "device": self.machine[0],
                "dtype": self.provenance.dtype}

    def configuration_apart_from(self, free: Sequence[str]) -> dict[str, Any]:
        """Everything the records depend on except the configuration fields ``free``: the rest of the configuration,
        the device, dtype and wave size, the thread count on CPU (it changes the sampled tokens there) and the code
        of every session."""
        identity = {f"config.{name}": value for name, value in (self.provenance.config or {}).items()
                    if name not in free}
        device = self.machine[0]
        identity.update(device=device, dtype=self.provenance.dtype,
                        questions_in_flight=self.provenance.questions_in_flight)
        if str(device or "").startswith("cpu"):
            identity["threads"] = self.machine[1]
        identity["code"] = sorted({self.provenance.code, *self.provenance.code_earlier} - {None})
        return identity

    @property
    def where(self) -> str:
        """``cpu, 2 threads``: where the last session ran (``?`` for what run.json does not say)."""
        device, threads = self.machine
        return f"{'?' if device is None else device}, {'?' if threads is None else threads} threads"


def _sessions(run_json: Mapping[str, Any], counts: Mapping[str, Any], timings: Mapping[str, Any]
              ) -> tuple[Mapping[str, Any], ...]:
    """The sessions run.json lists; one written before run.json listed them stands for its last session (the only one
    it recorded), and an unfinished one (killed: no counts) for none."""
    if "sessions" in run_json:
        return tuple(run_json["sessions"] or ())
    if run_json.get("status") != "complete" or "total_s" not in timings:
        return ()
    return ({"finished_at": run_json.get("finished_at"),
             "questions_sampled": int(counts.get("questions", 0)) - int(run_json.get("resumed_questions") or 0),
             "generated_tokens": counts.get("generated_tokens_this_session"), "total_s": timings["total_s"],
             "device": run_json.get("device"), "threads": run_json.get("threads"), "code": run_json.get("code")},)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
