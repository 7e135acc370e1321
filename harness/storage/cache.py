"""On-disk cache of the diagnostic's expensive work, so that adding a teacher re-runs only that teacher.

Two kinds of entries, both parquet files named by the SHA-256 of a *key*, a JSON object listing everything the work
depends on:

* **sampled**: one question's teacher-independent work: its rollouts (the ``questions.parquet`` rows) and its
  node plans (positions, windows, supports, forced-continuation successes, hence ``S_hat``). The key holds the
  question's content, the task, the student's weights fingerprint, device and dtype, the sampling knobs
  (G, T, B, K, M, priority, max new tokens), the seed, the harness's source code and library versions. Under
  ``--priority disagreement`` node selection uses the teachers, so their identities join the key.
* **teacher rows**: one teacher's ``nodes.parquet`` rows for one question. The key holds the sampled entry's key
  digest, the teacher's spec and variant, its model's fingerprint, the JSD beta and the loss list.

A key change, however small (one weight, one line of harness code, a different ``--top-k``), gives a different
file name, so stale work is never reused; the full key is also stored in the file and compared on load. Files
are written atomically with page checksums (not fsynced); an entry that cannot be read or fails its checksums is
recomputed, and a write that fails (a full or read-only disk) never stops the run: it goes on without caching (one
warning, ``WorkCache.write_error``, shown by ``opd run``). Default location ``$OPD_WORK_CACHE_DIR``, else ``$OPD_CACHE_DIR/work``
(``~/.cache/opd-harness/work``); ``opd run --cache-dir DIR`` moves it and ``--no-cache`` turns it off; ``opd cache``
shows its size and clears it.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from harness.storage.records import READ_ERRORS, read_table, write_table

if TYPE_CHECKING:
    from harness.api.task import Question

CACHE_FORMAT = 3  # bump when the layout of an entry changes
_KEY_METADATA = b"opd_cache_key"
_PACKAGES = ("torch", "transformers", "math-verify", "lm-eval")

_i32 = pa.int32()
PLAN_SCHEMA = pa.schema([
    ("rollout_id", _i32),
    ("position", _i32),
    ("window", _i32),
    ("priority", pa.float64()),
    ("support_token_ids", pa.list_(_i32)),
    ("succ_correct", pa.list_(_i32)),
    ("succ_trials", pa.list_(_i32)),
    ("halves", pa.list_(pa.list_(_i32))),  # correct and trials of each half of the continuations
    ("screen", pa.list_(pa.list_(_i32))),  # the screened selection's screening correct and trials (empty otherwise)
])


def cache_dir() -> Path:
    """Where the harness keeps what it computes once (dequantised weights, the reuse cache): ``$OPD_CACHE_DIR`` or
    ``~/.cache/opd-harness``."""
    return Path(os.environ.get("OPD_CACHE_DIR", Path.home() / ".cache" / "opd-harness"))


def default_cache_dir() -> Path:
    """``$OPD_WORK_CACHE_DIR``, else ``work/`` beside the dequantised weights (``$OPD_CACHE_DIR``)."""
    return Path(os.environ["OPD_WORK_CACHE_DIR"]) if os.environ.get("OPD_WORK_CACHE_DIR") else cache_dir() / "work"


def digest(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical(key).encode()).hexdigest()[:40]


def _canonical(key: Mapping[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, default=str, separators=(",", ":"))


@dataclass
class CacheCounts:
    """What a run found in the cache (written to run.json)."""

    sampled_hits: int = 0
    sampled_misses: int = 0
    teacher_hits: dict[str, int] = field(default_factory=dict)
    teacher_misses: dict[str, int] = field(default_factory=dict)


class WorkCache:
    """A directory of cache entries; safe for concurrent runs (atomic writes, content-addressed names)."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.counts = CacheCounts()
        self.write_error: str | None = None  # the first failed write (full disk...): later entries are not tried

    # ------------------------------------------------------------------ sampled work of one question
    def load_sampled(self, key: Mapping[str, Any]) -> tuple[list[dict], list[dict]] | None:
        """(question rows, plan rows) or None. The questions file is written last, so its presence commits both."""
        name = digest(key)
        questions = self._read(self.root / "sampled" / f"{name}.questions.parquet", key)
        plans = self._read(self.root / "sampled" / f"{name}.plan.parquet", key) if questions is not None else None
        if questions is None or plans is None:
            self.counts.sampled_misses += 1
            return None
        self.counts.sampled_hits += 1
        return questions, plans

    def has_sampled(self, key: Mapping[str, Any]) -> bool:
        """Whether an entry for ``key`` is there (not read: a damaged one is found out, and recomputed, on loading)."""
        return (self.root / "sampled" / f"{digest(key)}.questions.parquet").is_file()

    def save_sampled(self, key: Mapping[str, Any], question_rows: Sequence[Mapping], plan_rows: Sequence[Mapping],
                     question_schema: pa.Schema) -> None:
        name = digest(key)
        self._write(self.root / "sampled" / f"{name}.plan.parquet", key, plan_rows, PLAN_SCHEMA)
        self._write(self.root / "sampled" / f"{name}.questions.parquet", key, question_rows, question_schema)

    # ------------------------------------------------------------------ one teacher's node rows of one question
    def load_rows(self, key: Mapping[str, Any], teacher: str) -> list[dict] | None:
        rows = self._read(self.root / "teacher" / f"{digest(key)}.parquet", key)
        counter = self.counts.teacher_misses if rows is None else self.counts.teacher_hits
        counter[teacher] = counter.get(teacher, 0) + 1
        return rows

    def save_rows(self, key: Mapping[str, Any], rows: Sequence[Mapping], schema: pa.Schema) -> None:
        self._write(self.root / "teacher" / f"{digest(key)}.parquet", key, rows, schema)

    # ------------------------------------------------------------------ housekeeping
    def entries(self) -> Iterable[Path]:
        return sorted(self.root.glob("*/*.parquet")) if self.root.is_dir() else []

    def size_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.entries())

    def clear(self) -> int:
        removed = 0
        for path in self.entries():
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def _read(self, path: Path, key: Mapping[str, Any]) -> list[dict] | None:
        try:
            table = read_table(path)  # page checksums verified: a torn or flipped entry is recomputed
            stored = (table.schema.metadata or {}).get(_KEY_METADATA)
            if stored is None or stored.decode() != _canonical(key):
                return None  # a digest collision or a foreign file: never reuse it
            return table.to_pylist()
        except READ_ERRORS:  # absent, or unreadable (truncated, emptied, bad bytes): recompute
            return None

    def _write(self, path: Path, key: Mapping[str, Any], rows: Sequence[Mapping], schema: pa.Schema) -> None:
        from harness.storage.records import rows_to_table

        if self.write_error is not None:
            return  # the disk was full (or read-only) a moment ago: do not fill it further, nor warn per entry
        table = rows_to_table(rows, schema)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _KEY_METADATA: _canonical(key)})
        try:
            # not fsynced: an entry a power loss cuts short or garbles fails its footer or page checksums on
            # reading and is recomputed, so the fsyncs (a few ms each, per entry) would buy nothing
            write_table(table, path, durable=False)
        except OSError as error:  # a full or read-only cache must not stop the run: the records are written anyway
            import warnings

            self.write_error = f"could not write {path} ({error.strerror})"
            warnings.warn(f"opd cache: {self.write_error}; this run goes on without caching its work", stacklevel=2)


# ---------------------------------------------------------------------------------------------- fingerprints


@lru_cache(maxsize=None)
def code_fingerprint(*extra_files: str) -> str:
    """The source of the harness, tasks and teachers packages (and of plugin files): any edit invalidates."""
    root = Path(__file__).resolve().parents[2]  # harness/storage/cache.py: the repository
    files = set(extra_files)
    for package in ("harness", "tasks", "teachers"):
        files.update(str(p) for p in (root / package).rglob("*.py"))
    h = hashlib.sha256()
    for name in sorted(files):
        try:
            h.update(Path(name).read_bytes())
        except OSError:
            h.update(name.encode())
    return h.hexdigest()[:32]


@lru_cache(maxsize=None)
def library_versions() -> dict[str, str]:
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "-"
    return versions


def source_file(obj: object) -> str:
    """The file defining ``obj`` (a task instance, a context builder): plugins outside the repo count too."""
    import inspect
    import sys

    module = sys.modules.get(getattr(obj, "__module__", None) or type(obj).__module__)
    if module is None:
        return ""
    try:
        return inspect.getsourcefile(module) or ""
    except TypeError:  # a built-in module
        return ""


def question_fingerprint(question: Question) -> str:
    return digest(asdict(question))
