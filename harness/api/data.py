"""Where task data comes from: a local directory with the layout of ``shared/data``, or the public hub.

Resolution order (:func:`resolve_data_dir`): an explicit ``--data-dir`` flag, then the ``OPD_DATA_DIR``
environment variable, then a local directory found next to the working directory or the repository, and
finally None, meaning "download from the public hub". Tasks read local files with :func:`local_file` and
:func:`read_jsonl`, which fail with a :class:`DataError` that says which file, which line, and what to do.
"""
from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.api.errors import OpdError

__all__ = [
    "DATA_DIR_ENV",
    "DataError",
    "LAYOUT_DIRS",
    "load_hub",
    "local_file",
    "read_jsonl",
    "resolve_data_dir",
]

DATA_DIR_ENV = "OPD_DATA_DIR"
# A directory counts as a data root only if it has at least one task's folder; a stray ./data of some other
# project must not silently shadow the hub.
LAYOUT_DIRS = ("boolq", "mmlu", "aime", "gsm8k")
_LAYOUT_HINT = "boolq/validation.jsonl, mmlu/test.jsonl, aime/aime_2024.jsonl, gsm8k/test.jsonl, ..."
_REPO_ROOT = Path(__file__).resolve().parent.parent
# byte-order marks of the encodings exports use (UTF-32 before UTF-16: its little-endian mark starts with UTF-16's)
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


class DataError(OpdError, ValueError):
    """Task data that is missing or malformed; the message is one paragraph saying where and how to fix it."""


def _has_layout(directory: Path) -> bool:
    return directory.is_dir() and any((directory / name).is_dir() for name in LAYOUT_DIRS)


def _candidate_dirs() -> list[Path]:
    cwd = Path.cwd()
    return [cwd / "data", cwd.parent / "shared" / "data", _REPO_ROOT.parent / "shared" / "data"]


def _existing_dir(path: Path, source: str) -> Path:
    if not path.exists():
        raise DataError(
            f"The data directory {str(path)!r} given by {source} does not exist. Point {source} at a directory "
            f"with the layout of shared/data ({_LAYOUT_HINT}), or leave --data-dir and {DATA_DIR_ENV} unset to "
            f"use a local copy found automatically or, failing that, the public hub."
        )
    if not path.is_dir():
        raise DataError(
            f"The data directory {str(path)!r} given by {source} is a file, not a directory. Point {source} at "
            f"a directory with the layout of shared/data ({_LAYOUT_HINT})."
        )
    return path.resolve()


def resolve_data_dir(explicit: str | Path | None) -> Path | None:
    """The local data root to read from, or None for the public hub.

    ``explicit`` (the ``--data-dir`` flag) wins and must exist; then ``$OPD_DATA_DIR`` (also must exist, since a
    typo there should not silently switch to downloading); then the first of ``./data``, ``../shared/data`` and
    ``<repo>/../shared/data`` that contains a ``boolq/``, ``mmlu/``, ``aime/`` or ``gsm8k/`` folder.
    """
    if explicit is not None and str(explicit) != "":
        return _existing_dir(Path(explicit).expanduser(), "--data-dir")
    from_env = os.environ.get(DATA_DIR_ENV, "").strip()
    if from_env:
        return _existing_dir(Path(from_env).expanduser(), f"the {DATA_DIR_ENV} environment variable")
    for candidate in _candidate_dirs():
        if _has_layout(candidate):
            return candidate.resolve()
    return None


def local_file(data_dir: Path, relpath: str, task_name: str) -> Path:
    """``data_dir / relpath``, or a :class:`DataError` saying where it looked and how to point at real data."""
    path = Path(data_dir) / relpath
    if path.is_file():
        return path
    raise DataError(
        f"The {task_name} task needs {relpath} in the data directory, but {str(path)!r} does not exist. "
        f"Point --data-dir (or the {DATA_DIR_ENV} environment variable) at a directory with the layout of "
        f"shared/data ({_LAYOUT_HINT}), or leave both unset with no local copy present to load the public hub "
        f"dataset instead."
    )


def read_jsonl(
    path: str | Path,
    required: Sequence[str],
    *,
    types: Mapping[str, type | tuple[type, ...]] | None = None,
) -> list[dict[str, Any]]:
    """All rows of a JSON Lines file, each an object with the ``required`` fields (blank lines are skipped).

    ``types`` optionally maps a field to the type(s) its value must have, so that e.g. ``"answer": "false"``
    (a truthy string) is caught here instead of silently grading every question wrong.
    A malformed row raises :class:`DataError` naming the file, the 1-based line and the problem. Spreadsheet and
    editor exports read like any other file: a UTF-8 byte-order mark, UTF-16 with one, CRLF or CR line ends.
    """
    path = Path(path)
    rows: list[dict[str, Any]] = []
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"Cannot read data file {str(path)!r}: {error.strerror or error}.") from error
    for line_no, line in enumerate(_text_lines(raw, path), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {line_no}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(
                f"Malformed data file: {where} is not valid JSON ({error.msg} at column {error.colno}). "
                f"Each line must be one JSON object; fix or regenerate the file."
            ) from None
        if not isinstance(row, dict):
            raise DataError(
                f"Malformed data file: {where} is a JSON {type(row).__name__}, not an object. "
                f"Each line must be one JSON object with the fields {', '.join(required)}."
            )
        missing = [name for name in required if name not in row]
        if missing:
            raise DataError(
                f"Malformed data file: {where} lacks the required field(s) {', '.join(missing)} "
                f"(it has: {', '.join(row) or 'no fields'}). Each row needs {', '.join(required)}."
            )
        for name, expected in (types or {}).items():
            if name in row and not isinstance(row[name], expected):
                wanted = (
                    " or ".join(t.__name__ for t in expected) if isinstance(expected, tuple) else expected.__name__
                )
                raise DataError(
                    f"Malformed data file: {where} has field {name!r} = {row[name]!r} of type "
                    f"{type(row[name]).__name__}, expected {wanted}."
                )
        rows.append(row)
    return rows


def _text_lines(raw: bytes, path: Path) -> list[str]:
    """The lines of a text file as spreadsheet and editor exports write it: UTF-8 with or without a byte-order
    mark, or UTF-16/32 with one; LF, CRLF or CR line ends. Split on those three only: a JSON string may hold U+2028."""
    bom, encoding = next(((bom, name) for bom, name in _BOMS if raw.startswith(bom)), (b"", "utf-8"))
    body = raw[len(bom):]
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError as error:
        line = body[: error.start].decode(encoding, errors="replace").count("\n") + 1
        raise DataError(
            f"Malformed data file: {path}, line {line} is not {encoding.upper()} text (byte "
            f"{body[error.start]:#04x}). Save the file as UTF-8 (with or without a byte-order mark), e.g. "
            f"\"CSV UTF-8\" in a spreadsheet or encoding UTF-8 in an editor."
        ) from None
    return re.split(r"\r\n|\r|\n", text)


def load_hub(path: str, name: str | None, split: str) -> Any:
    """``datasets.load_dataset(path, name, split=split)``; needs internet (or the hub cache), never used in tests.

    ``datasets`` is imported here, not at module level, because it is slow to import and only hub users need it.
    """
    try:
        import datasets
    except ImportError as error:
        raise DataError(
            f"Loading {path} from the public hub needs the 'datasets' package ({error}). Install it, or point "
            f"--data-dir (or {DATA_DIR_ENV}) at a directory with the layout of shared/data ({_LAYOUT_HINT})."
        ) from error
    try:
        return datasets.load_dataset(path, name, split=split)
    except Exception as error:  # network, auth and cache failures all surface as varied exception types
        raise DataError(
            f"Could not load the hub dataset {path}" + (f" ({name})" if name else "") + f", split {split!r}: "
            f"{type(error).__name__}: {error}. Without internet access, point --data-dir (or {DATA_DIR_ENV}) at a "
            f"directory with the layout of shared/data ({_LAYOUT_HINT})."
        ) from error
