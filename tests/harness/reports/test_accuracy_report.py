"""harness.reports.accuracy_report: the one accuracy.json schema. A report written by ``opd accuracy --out`` is read back by
``opd leaderboard``; a file in another shape or version is refused in one paragraph; reports written before the
schema was versioned read as version 1."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.reports.accuracy_report import SCHEMA, VERSION, AccuracyReportError, read_report, report_from_dict
from tests.helpers import ROOT

STUDY_REPORT = ROOT / "results" / "study" / "accuracy" / "boolq-smollm2-135m.json"
TEACHERS = ["--teacher", "self:correct-demo", "--teacher", "self"]


@pytest.fixture(scope="module")
def run_with_report(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("accuracy") / "run"
    assert main(["run", "--task", "test-parity", "--student", "tiny-random", *TEACHERS, "--limit", "3",
                 "--rollouts", "3", "--max-new-tokens", "6", "--quiet", "--no-cache", "--out", str(run)]) == 0
    assert main(["accuracy", "--task", "test-parity", "--student", "tiny-random", "--teacher", "self:correct-demo",
                 "--samples", "2", "--limit", "3", "--format", "json", "--out", str(run / "accuracy.json")]) == 0
    return run


def test_report_written_by_opd_accuracy_is_read_back_by_opd_leaderboard(run_with_report, capsys):
    capsys.readouterr()
    saved = json.loads((run_with_report / "accuracy.json").read_text())
    assert saved["schema"] == SCHEMA and saved["version"] == VERSION
    # the expected value straight from the file's JSON, not through the reader under test
    expected = next(row["accuracy"] for row in saved["rows"] if row["condition"] == "self:correct-demo")
    assert main(["leaderboard", str(run_with_report), "--format", "json", "--permutations", "100"]) == 0
    board = json.loads(capsys.readouterr().out)
    demo = [row["accuracy"] for row in board if row["teacher"] == "self:correct-demo"]
    assert demo and all(value == pytest.approx(expected) for value in demo)
    assert all(row["accuracy"] is None for row in board if row["teacher"] in ("self", "-"))  # not in the report
    assert main(["leaderboard", str(run_with_report), "--wide", "--permutations", "100"]) == 0
    assert "acc" in capsys.readouterr().out  # the terminal column appears once a report is there


@pytest.mark.parametrize("content", [
    {"self:correct-demo": 0.75},                                  # the old hand-made shapes are no longer guessed at
    [{"teacher": "self:correct-demo", "accuracy": 0.5}],
    {"schema": SCHEMA, "version": VERSION + 1, "config": {"task": "t", "student": "s"},
     "rows": [{"condition": "student", "accuracy": 0.5}]},
    {"config": {"task": "t", "student": "s"}, "rows": [{"condition": "student", "accuracy": "high"}]},
])
def test_a_file_in_another_shape_is_refused_in_one_paragraph(content, run_with_report, capsys, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("nodes.parquet", "questions.parquet", "run.json"):
        (run / name).write_bytes((run_with_report / name).read_bytes())
    (run / "accuracy.json").write_text(json.dumps(content))
    capsys.readouterr()
    assert main(["leaderboard", str(run), "--permutations", "100"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("error:") and "accuracy.json is not an `opd accuracy` report" in out
    assert "--out" in out and "Traceback" not in out


def test_reports_from_before_the_version_field_read_as_version_one():
    raw = json.loads(STUDY_REPORT.read_text())
    assert "version" not in raw  # written by the code before this schema
    report = read_report(STUDY_REPORT)
    config = raw["config"]
    for row in raw["rows"]:
        value = report.accuracy_of(config["task_name"], config["student"], row["condition"])
        assert (math.isnan(value) and row["accuracy"] is None) or value == row["accuracy"]
    assert math.isnan(report.accuracy_of("mmlu", config["student"], "student"))  # another task's leaderboard
    assert report_from_dict(report.to_dict()).rows == report.rows  # written and read again: the same


def test_unreadable_json_is_one_paragraph(tmp_path):
    path = tmp_path / "accuracy.json"
    path.write_text("{not json")
    with pytest.raises(AccuracyReportError, match="cannot be read as JSON"):
        read_report(path)


def _hand_unparsed(raw: dict, condition: str) -> float:
    """Mean over questions of the share of present answers with no extracted answer, by plain Python."""
    shares = []
    for entry in raw["questions"]:
        present = [a for a in entry["answers"] if a is not None]
        if entry["condition"] == condition and present:
            shares.append(sum(not a["correct"] and a["extracted"] in (None, "") for a in present) / len(present))
    return sum(shares) / len(shares)


def test_a_report_written_before_the_unparsed_field_reads_with_it_recomputed_from_its_answers():
    raw = json.loads(STUDY_REPORT.read_text())
    assert all("unparsed" not in row for row in raw["rows"])  # written before version 2
    report = read_report(STUDY_REPORT)
    for row in report.rows:
        assert row["unparsed"] == pytest.approx(_hand_unparsed(raw, row["condition"]))
    assert 0 < report.rows[0]["unparsed"] < 1  # the study's student leaves some answers unparsed
    again = report_from_dict(json.loads(json.dumps(report.to_dict())))  # written as version 2, read again
    assert again.to_dict()["version"] == VERSION == 2 and again.rows == report.rows


def test_a_version_one_report_without_answers_reads_with_unparsed_not_recorded():
    old = {"schema": SCHEMA, "version": 1, "config": {"task": "boolq", "student": "s"},
           "rows": [{"condition": "student", "accuracy": 0.5}]}
    report = report_from_dict(old)
    assert report.rows[0]["unparsed"] is None and report.rows[0]["accuracy"] == 0.5


def test_a_version_two_row_with_a_non_numeric_unparsed_share_is_refused():
    bad = {"schema": SCHEMA, "version": VERSION, "config": {"task": "boolq", "student": "s"},
           "rows": [{"condition": "student", "accuracy": 0.5, "unparsed": "half"}]}
    with pytest.raises(AccuracyReportError, match="unparsed share"):
        report_from_dict(bad)
