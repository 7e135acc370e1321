"""The sha256 of a fixed tiny run's records: run it before and after a change that must change no number.

Two runs on the tiny random models of tests/fakes.py (METHOD's windows and the screened selection, three teachers,
two questions); each digest hashes the content of ``nodes.parquet`` and ``questions.parquet``: the columns in
sorted order, every value by its exact ``repr`` (floats round-trip), rows in the order written. The same code on the
same machine gives the same digests; another CPU kind may differ in the last float bits, which is why this is a
script to compare two checkouts side by side, not a golden test.

    nice -n 19 env PYTHONPATH=$PWD python benchmarks/record_digest.py
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
TEACHERS = ("self", "self:correct-demo", "model:tiny-random:1")


def _imports():
    """The harness's entry points at either layout (flat modules before the sub-packages, their new homes after)."""
    try:
        from harness.method import Settings
        from harness.plugins import load_all
        from harness.runner import RunConfig, run
    except ImportError:
        from harness.api.method import Settings
        from harness.workflows.plugins import load_all
        from harness.workflows.runner import RunConfig, run
    return Settings, load_all, RunConfig, run


def table_digest(path: Path) -> str:
    table = pq.read_table(path)
    digest = hashlib.sha256()
    for name in sorted(table.column_names):
        digest.update(name.encode())
        for value in table.column(name).to_pylist():
            digest.update(repr(value).encode())
            digest.update(b"\0")
    return digest.hexdigest()


def main() -> int:
    Settings, load_all, RunConfig, run = _imports()
    load_all(include=[ROOT / "tests" / "fakes.py"])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["OPD_WORK_CACHE_DIR"] = str(work / "reuse-cache")  # no reuse of an earlier run's sampling
        for selection in ("windows", "screened"):
            settings = Settings(rollouts=4, continuations=3, max_new_tokens=10, selection=selection)
            out = work / selection
            run(RunConfig(task="test-parity", student="tiny-random", teachers=TEACHERS, limit=2,
                          settings=settings, device="cpu"), out)
            for name in ("nodes.parquet", "questions.parquet"):
                print(f"{selection:9s} {name:18s} {table_digest(out / name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
