"""Shared fixtures; the test fakes (tasks, models) live in fakes.py and load like a user's --include plugin."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `opd` does before torch loads (harness.sampling.threads)

from harness.workflows.plugins import load_all  # noqa: E402

FAKES = Path(__file__).resolve().parent / "fakes.py"
load_all(include=[FAKES])

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    path = Path(os.environ.get("OPD_DATA_DIR", SHARED_DATA))
    if not (path / "boolq").is_dir():
        pytest.skip(f"real data not found at {path} (set OPD_DATA_DIR)")
    return path


@pytest.fixture(autouse=True)
def private_reuse_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own empty reuse cache (subprocesses inherit it), so no test reads another's work."""
    monkeypatch.setenv("OPD_WORK_CACHE_DIR", str(tmp_path_factory.mktemp("reuse-cache")))
