"""``benchmarks/report.py --update``: re-measured rows replace their own lines of docs/benchmarks.md, nothing else."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _report():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DOCUMENT = """# Benchmarks

| benchmark | ratio / value | aim | measured (UTC) | details |
|---|---|---|---|---|
| commit_with_fsync_vs_without | 3.13 | (report) | 2026-11-23 13:43 | plain_ms_per_question=50.68 |
| qwen_teacher_beside_student_peak_memory | not measured yet | fits 24 GiB |  |  |

Prose that stays | with a bar in it.
"""


def test_update_replaces_only_the_measured_row(tmp_path):
    report = _report()
    compact = tmp_path / "new.json"  # the compact shape of docs/measurements/*.json
    compact.write_text(json.dumps({"datetime": "2026-12-03T15:40:00+00:00", "benchmarks": {
        "test_qwen_teacher_beside_student_peak_memory": {"peak_rss_gib": 12.5, "threads": 2}}}))
    new = report.update(DOCUMENT, [str(compact)]).splitlines()
    old = DOCUMENT.splitlines()
    changed = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
    assert len(new) == len(old) and changed == [5]
    assert new[5] == ("| qwen_teacher_beside_student_peak_memory | 12.5 | fits 24 GiB | 2026-12-03 15:40 | "
                      "peak_rss_gib=12.5, threads=2 |")


def test_update_refuses_a_benchmark_without_a_row(tmp_path):
    report = _report()
    compact = tmp_path / "new.json"
    compact.write_text(json.dumps({"datetime": "2026-12-03T15:40:00+00:00",
                                   "benchmarks": {"test_something_new": {"x": 1}}}))
    with pytest.raises(SystemExit, match="something_new: no row"):
        report.update(DOCUMENT, [str(compact)])
