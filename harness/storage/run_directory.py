"""A run's output directory on disk: its lock, one pair of part files per committed question, the merged record
files, and the identity (fingerprints, teachers) that decides whether a run may resume, grow or add teachers there.

``harness.workflows.runner`` opens one per ``opd run`` and commits each question as it finishes; ``opd rebuild``
opens one without an identity to merge the parts again.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from harness.api.errors import ConfigError
from harness.storage.records import (
    NODE_SCHEMA,
    PARTS_DIR,
    QUESTION_SCHEMA,
    READ_ERRORS,
    RecordWriteError,
    fsync_directory,
    make_directory,
    read_table,
    rows_to_table,
    write_table,
)
from harness.storage.run_meta import RunMeta

DAMAGED_DIR = "damaged"  # RUN/parts/damaged/: part files that could not be read, kept for inspection


@dataclass(frozen=True)
class RunIdentity:
    """What a run directory's records depend on, as run.json stores it."""

    fingerprint: str  # the whole configuration
    sampling: str  # the configuration without its teachers
    teachers: tuple[str, ...]
    fewer_questions: tuple[int, str] | None = None  # (limit, fingerprint) of this configuration at a smaller limit
    smaller_range: tuple[tuple[int, int], str] | None = None  # (--questions, fingerprint) at a range within this one


class RunDirectory:
    """The output directory of one run: lock, per-question parts, merged records.

    A question is committed when its ``.questions.parquet`` part exists (written after its nodes part, each
    atomically and durably). An exclusive ``flock`` on ``.lock`` refuses a second writer; the kernel drops it if we
    are killed. On entering, every committed part is read back: one that cannot be (truncated or emptied by a power
    loss or a partial copy) is moved to ``parts/damaged/`` with its sibling, and its question counts as not done.
    ``identity=None`` opens an existing run directory for :func:`rebuild_records` (no configuration check).
    """

    def __init__(self, path: Path, identity: RunIdentity | None, overwrite: bool) -> None:
        self.path, self.identity, self.overwrite = path, identity, overwrite
        self.done: set[str] = set()
        self.set_aside: list[Path] = []  # damaged part files moved to parts/damaged/ on entering
        self.added_teachers: tuple[str, ...] = ()
        self.grown_from: int | None = None  # the smaller --limit this run had before, when it grows
        self.grown_range: tuple[int, int] | None = None  # the smaller --questions range it had before, when it grows
        self._lock = None

    def __enter__(self) -> "RunDirectory":
        path = self.path
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--out {path} is a file, not a directory: choose another --out.")
        extending = self._check_identity() if self.identity is not None else False
        self._acquire_lock()
        if self.overwrite or extending:
            for name in ("nodes.parquet", "questions.parquet", "run.json"):
                (path / name).unlink(missing_ok=True)
            shutil.rmtree(path / PARTS_DIR, ignore_errors=True)
        try:
            make_directory(path / PARTS_DIR)  # durably, like the parts it will hold
        except OSError as error:
            self.__exit__()
            raise RecordWriteError(error.errno, error.strerror or str(error), str(path / PARTS_DIR)) from error
        self.done = self._readable_parts()
        return self

    def _check_identity(self) -> bool:
        """Refuse mixing with other work; True when this run extends the one there with more teachers."""
        path, identity = self.path, self.identity
        previous = _read_identity(path / "run.json")
        has_files = path.is_dir() and any(p.name != ".lock" for p in path.iterdir())
        if not has_files or self.overwrite or (previous is not None and previous.fingerprint == identity.fingerprint):
            return False
        if previous is not None and identity.fewer_questions and previous.fingerprint == identity.fewer_questions[1]:
            self.grown_from = identity.fewer_questions[0]  # the same run with a larger --limit: it grows in place
            return False
        if previous is not None and identity.smaller_range and previous.fingerprint == identity.smaller_range[1]:
            self.grown_range = identity.smaller_range[0]  # the same chunk with a wider range: it grows in place
            return False
        # the same run with teachers added: its records are rebuilt, the old teachers' rows and all sampling
        # coming back from the reuse cache (or recomputed identically without one)
        if (previous is not None and previous.sampling == identity.sampling
                and set(previous.teachers) < set(identity.teachers)):
            self.added_teachers = tuple(t for t in identity.teachers if t not in previous.teachers)
            return True
        if previous is None and (path / "run.json").is_file():
            what = ("a run.json that cannot be read (damaged, or not from opd run), so whether its records match "
                    "this configuration cannot be checked")
            fix = "Restore run.json from a copy of the run, use a new --out, or --overwrite to replace the records."
        else:
            what = ("a run with a different configuration" if previous else "files that are not from opd run") + \
                "; its records must not be mixed with this one"
            fix = "Use a new --out, or --overwrite to replace them."
        raise ConfigError(f"--out {path} holds {what}. {fix}")

    def _acquire_lock(self) -> None:
        path = self.path
        try:
            make_directory(path)  # durably: a power loss must not take the new run directory's entry with it
            self._lock = open(path / ".lock", "a+")
        except OSError as error:
            blocker = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
            why = f"{blocker} is a file, not a directory" if blocker else error.strerror
            raise ConfigError(f"Cannot create or write --out {path} ({why}): choose a writable directory, e.g. "
                              f"runs/<name>.") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise ConfigError(f"Another `opd run` is writing to {path} right now; wait for it, or use another --out.") from None

    def _readable_parts(self) -> set[str]:
        """Keys of the committed questions whose two parts read back; damaged ones are moved aside (not deleted)."""
        parts = self.path / PARTS_DIR
        done = set()
        for key in sorted(p.name[: -len(".questions.parquet")] for p in parts.glob("*.questions.parquet")):
            files = [(parts / f"{key}.{kind}.parquet", schema) for kind, schema in (("nodes", NODE_SCHEMA),
                                                                                    ("questions", QUESTION_SCHEMA))]
            if all(_reads_back(file, schema) for file, schema in files):
                done.add(key)
                continue
            for file, _ in files:
                if file.exists():
                    self.set_aside.append(_move_aside(file, parts / DAMAGED_DIR))
        if self.set_aside:
            fsync_directory(parts)
        return done

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    @staticmethod
    def part_key(index: int, question_id: str) -> str:
        # ids come from data files: keep them out of path syntax so a run name can never escape the directory
        return f"{index:06d}-" + re.sub(r"[^A-Za-z0-9._-]+", "_", question_id)[:80]

    def forget_from(self, first_index: int) -> int:
        """Delete the committed questions numbered ``first_index`` and up, to be run again; how many."""
        keys = [key for key in self.done if int(key.split("-", 1)[0]) >= first_index]
        for key in keys:
            for kind in ("questions", "nodes"):  # the questions part marks a commit: it goes first
                (self.path / PARTS_DIR / f"{key}.{kind}.parquet").unlink(missing_ok=True)
            self.done.discard(key)
        if keys:
            fsync_directory(self.path / PARTS_DIR)
        return len(keys)

    def commit(self, index: int, question_id: str, node_rows: Sequence[Mapping[str, Any]],
               question_rows: Sequence[Mapping[str, Any]]) -> None:
        """Write one question's records as its two parts, the questions part last: then it counts as done."""
        key = self.part_key(index, question_id)
        parts = self.path / PARTS_DIR
        write_table(rows_to_table(node_rows, NODE_SCHEMA), parts / f"{key}.nodes.parquet")
        write_table(rows_to_table(question_rows, QUESTION_SCHEMA), parts / f"{key}.questions.parquet")
        self.done.add(key)

    def merge(self, durable: bool = True) -> None:
        """Concatenate the committed parts, in question order, into the run's two record files."""
        parts = self.path / PARTS_DIR
        keys = sorted(self.done)
        for kind, schema in (("nodes", NODE_SCHEMA), ("questions", QUESTION_SCHEMA)):
            tables = [read_table(parts / f"{key}.{kind}.parquet", schema=schema) for key in keys]
            merged = pa.concat_tables(tables) if tables else schema.empty_table()
            write_table(merged, self.path / f"{kind}.parquet", durable=durable)


def _reads_back(path: Path, schema: pa.Schema) -> bool:
    """Whether a part file reads as ``merge`` will read it (footer, every page and its checksum, the schema)."""
    try:
        read_table(path, schema=schema)
    except READ_ERRORS:
        return False
    return True


def _move_aside(path: Path, folder: Path) -> Path:
    """Move ``path`` into ``folder`` under a name not used there yet (a part damaged twice keeps both copies)."""
    folder.mkdir(exist_ok=True)
    target, copy = folder / path.name, 1
    while target.exists():
        copy += 1
        target = folder / f"{path.name.removesuffix('.parquet')}.{copy}.parquet"
    os.replace(path, target)
    return target


def _read_identity(path: Path) -> RunIdentity | None:
    meta = RunMeta.read(path)
    if meta is None or meta.provenance.fingerprint is None:
        return None
    return RunIdentity(meta.provenance.fingerprint, meta.provenance.sampling_fingerprint, meta.teachers)
