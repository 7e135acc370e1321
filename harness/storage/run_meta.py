"""``run.json`` as its readers see it: one typed, frozen :class:`RunMeta`, read through :meth:`RunMeta.of`.

``harness.workflows.runner`` writes run.json (``_run_questions``) and :func:`harness.storage.records.load_run` reads the file; a
reader takes what it needs from ``RunMeta.of(run_json)`` instead of walking the dict with ``.get(...) or {}``.
A field that a run.json lacks (an older run, or a missing run.json, which reads as ``{}``) takes the default
below, and the knobs read as METHOD's where the run did not record them (:class:`harness.api.method.Settings`).
Light on purpose: no pandas, no torch.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
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
class RunMeta:
    """What the readers of run.json use: the cell (task, student), METHOD's knobs as run, the counts and timings of
    the last session, where it ran, and how much of it was reused rather than sampled anew."""

    task: str | None = None
    student: str | None = None  # the student spec as given on the command line
    settings: Settings = field(default_factory=Settings)
    counts: Mapping[str, Any] = field(default_factory=dict)  # run.json "counts": questions, nodes, tokens...
    timings: Mapping[str, Any] = field(default_factory=dict)  # run.json "timings": setup_s, total_s, ...
    machine: tuple[str | None, int | None] = (None, None)  # (device, torch threads) of the last session
    reused_questions: tuple[int, int] = (0, 0)  # (resumed from the run's parts, sampling read from the cache)
    session: SessionNotes = field(default_factory=SessionNotes)

    @classmethod
    def of(cls, run_json: Mapping[str, Any]) -> RunMeta:
        """The typed view of a run.json's content (a dict as ``harness.storage.records.load_run`` returns it)."""
        config = _mapping(run_json.get("config"))
        settings = _mapping(config.get("settings"))
        hits = _mapping(run_json.get("cache_hits"))
        return cls(
            task=config.get("task"), student=config.get("student"),
            settings=Settings(**{name: value for name, value in settings.items() if name in _SETTING_NAMES}),
            counts=_mapping(run_json.get("counts")), timings=_mapping(run_json.get("timings")),
            machine=(run_json.get("device"), run_json.get("threads")),
            reused_questions=(int(run_json.get("resumed_questions") or 0),
                              int(hits.get("sampled_hits") or 0)),
            session=SessionNotes(
                added_teachers=tuple(run_json.get("added_teachers") or ()),
                set_aside_parts=tuple(run_json.get("set_aside_parts") or ()),
                cache=run_json.get("cache"), teacher_hits=_mapping(hits.get("teacher_hits")),
                cache_write_error=run_json.get("cache_write_error")),
        )

    @property
    def where(self) -> str:
        """``cpu, 2 threads``: where the last session ran (``?`` for what run.json does not say)."""
        device, threads = self.machine
        return f"{'?' if device is None else device}, {'?' if threads is None else threads} threads"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
