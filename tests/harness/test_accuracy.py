"""Tests for ``opd accuracy`` (harness.accuracy): statistics against statsmodels, output formats, the breakdown,
and the CLI. Only the ``test-parity`` fake task and ``tiny-random`` models: no data files, no network."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, replace

import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from harness.accuracy import (
    STUDENT_CONDITION,
    AccuracyConfig,
    AccuracyError,
    Answer,
    Condition,
    evaluate,
    format_report,
    paired_counts,
    print_rich,
    summarise,
    year_range,
)
from harness.cli import main
from harness.task import TASKS, register_task, resolve_task
from harness.teacher import TEACHERS, Teacher, register_teacher

ODD_ONLY_TEACHER = "test-odd-only-context"
META_TASK = "test-parity-meta"


def odd_only_context(inputs):
    """A context builder that cannot serve even-numbered questions, like one that needs rollouts."""
    index = int(inputs.question.id.rsplit("-", 1)[1])
    return None if index % 2 == 0 else f"Think carefully.\n\n{inputs.question.prompt}"


@dataclass(frozen=True)
class ParityWithMeta:
    """test-parity with MMLU-style groups and AIME-style years in the question meta."""

    name: str = META_TASK
    description: str = "test fake: test-parity with group and year meta"
    max_new_tokens: int = 8

    def load(self, data_dir, limit=None):
        base = resolve_task("test-parity").load(data_dir, limit)
        groups, years = ["STEM", "humanities"], [1990, 2005, 2015, 2024, 2024]
        return [replace(q, meta={"group": groups[i % 2], "year": years[i]}) for i, q in enumerate(base)]

    def grade(self, question, response):
        return resolve_task("test-parity").grade(question, response)

    def answer_is_final(self, response):
        return False


@pytest.fixture(scope="module", autouse=True)
def fakes():
    register_teacher(ODD_ONLY_TEACHER, "test fake: context for odd questions only")(
        lambda: Teacher(name=ODD_ONLY_TEACHER, description="", model=None, context=odd_only_context))
    register_task(META_TASK)(ParityWithMeta)
    yield
    TEACHERS.remove(ODD_ONLY_TEACHER)
    TASKS.remove(META_TASK)


@pytest.fixture(scope="module")
def sampled_report():
    config = AccuracyConfig(task=META_TASK, student="tiny-random",
                            teachers=("self:correct-demo", "model:tiny-random:1", ODD_ONLY_TEACHER, "self"),
                            samples=3, device="cpu")
    return evaluate(config)


def rows_by_name(report):
    return {row["condition"]: row for row in report.rows}


def answers_of(report, condition):
    return {q["question_id"]: q["answers"] for q in report.questions if q["condition"] == condition}


def test_rows_match_statsmodels(sampled_report):
    rows = rows_by_name(sampled_report)
    assert list(rows) == [STUDENT_CONDITION, "self:correct-demo", "model:tiny-random:1", ODD_ONLY_TEACHER, "self"]
    for name, row in rows.items():
        answered = [a for a in answers_of(sampled_report, name).values() if a is not None]
        successes = sum(sum(x["correct"] for x in a) / len(a) for a in answered)
        assert row["n"] == len(answered)
        assert row["accuracy"] == pytest.approx(successes / len(answered))
        low, high = proportion_confint(successes, len(answered), alpha=0.05, method="wilson")
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
        if name == STUDENT_CONDITION:
            assert row["mcnemar_p"] is None
            continue
        # the paired 2x2 table rebuilt by hand from the per-question answers, then McNemar straight from statsmodels
        student = answers_of(sampled_report, STUDENT_CONDITION)
        table = [[0, 0], [0, 0]]
        for qid, other in answers_of(sampled_report, name).items():
            for a, b in zip(student[qid], other or []):
                table[0 if a["correct"] else 1][0 if b["correct"] else 1] += 1
        assert (row["only_student_right"], row["only_teacher_right"]) == (table[0][1], table[1][0])
        if table[0][1] + table[1][0]:
            expected = mcnemar(table, exact=True, correction=True).pvalue  # few discordant pairs: exact test
            assert row["mcnemar_test"] == "exact"
            assert row["mcnemar_p"] == pytest.approx(expected)
        else:
            assert row["mcnemar_p"] == 1.0


def test_self_teacher_reuses_student_answers(sampled_report):
    rows = rows_by_name(sampled_report)
    assert answers_of(sampled_report, "self") == answers_of(sampled_report, STUDENT_CONDITION)
    assert rows["self"]["delta"] == 0.0 and rows["self"]["mcnemar_p"] == 1.0


def test_unavailable_context_is_counted_and_reported(sampled_report):
    row = rows_by_name(sampled_report)[ODD_ONLY_TEACHER]
    assert (row["n"], row["unavailable"]) == (2, 3)  # parity-1 and parity-3 only
    assert any(ODD_ONLY_TEACHER in note and "unavailable for 3 of 5" in note for note in sampled_report.notes)


def test_breakdown_by_group_year_and_pass_rate(sampled_report):
    dims = {}
    for entry in sampled_report.breakdown:
        dims.setdefault(entry["dimension"], []).append(entry["bin"])
        assert set(rows_by_name(sampled_report)) <= set(entry)
    assert dims["group"] == ["STEM", "humanities"]
    assert dims["year"] == ["1983-1999", "2000-2009", "2010-2019", "2020+"]
    assert dims["student pass rate"]  # 3 samples: bins exist
    year_n = {e["bin"]: e["n"] for e in sampled_report.breakdown if e["dimension"] == "year"}
    assert year_n["2020+"] == 2
    for entry in sampled_report.breakdown:
        if entry["dimension"] == "student pass rate":
            rate = entry[STUDENT_CONDITION]
            assert {"0 (never)": rate == 0, "1 (always)": rate == 1}.get(entry["bin"], 0 < rate < 1)


def test_year_ranges():
    assert [year_range(y) for y in (1983, 1999, 2000, 2019, 2020, "2025")] == [
        "1983-1999", "1983-1999", "2000-2009", "2010-2019", "2020+", "2020+"]


def test_output_formats_parse(sampled_report, capsys):
    data = json.loads(format_report(sampled_report, "json"))
    assert {"config", "rows", "breakdown", "notes"} <= set(data) and "questions" not in data
    assert data["config"]["decoding"] == "3 samples at T=1"

    blocks = [b for b in format_report(sampled_report, "csv").split("\n\n") if b.strip()]
    rows = list(csv.DictReader(io.StringIO(blocks[0])))
    assert [r["condition"] for r in rows] == [row["condition"] for row in sampled_report.rows]
    assert float(rows[0]["accuracy"]) == pytest.approx(sampled_report.rows[0]["accuracy"], abs=1e-3)
    breakdown = [line for line in blocks[1].splitlines() if not line.startswith("#")]
    assert next(csv.reader(breakdown))[:3] == ["dimension", "bin", "n"]

    md = format_report(sampled_report, "md")
    header = md.splitlines()[0]
    assert header.startswith("| condition") and "accuracy" in header and "mcnemar_p" in header
    assert "| dimension" in md and "nan" not in md

    from rich.console import Console

    print_rich(sampled_report, Console(width=200))
    out = capsys.readouterr().out
    assert "accuracy by difficulty" in out and "McNemar p" in out


def test_greedy_says_pass_rate_bins_need_samples():
    questions = resolve_task("test-parity").load(None, 2)
    outcomes = {STUDENT_CONDITION: {q.id: [Answer("ab", "2", True, "eos")] for q in questions}}
    report = summarise(questions, [Condition(STUDENT_CONDITION, "m")], outcomes, samples=1)
    assert report.breakdown == []
    assert any("--samples >= 2" in note for note in report.notes)


def test_paired_counts_skip_unavailable():
    right, wrong = Answer("", None, True, "eos"), Answer("", None, False, "eos")
    base = {"a": [right], "b": [wrong], "c": [right]}
    other = {"a": [wrong], "b": [right], "c": None}
    assert paired_counts(base, other) == [[0, 1], [1, 0]]


def test_invalid_settings_fail_early():
    with pytest.raises(AccuracyError, match="--samples"):
        evaluate(AccuracyConfig(task="test-parity", student="tiny-random", samples=0))
    with pytest.raises(AccuracyError, match="listed twice"):
        evaluate(AccuracyConfig(task="test-parity", student="tiny-random", teachers=("self", "self")))


def test_cli_json_and_out_file(tmp_path, capsys):
    out = tmp_path / "acc.json"
    code = main(["accuracy", "--task", "test-parity", "--student", "tiny-random", "--teacher", "self:correct-demo",
                 "--limit", "3", "--format", "json", "--device", "cpu", "--out", str(out)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["condition"] for r in printed["rows"]] == [STUDENT_CONDITION, "self:correct-demo"]
    assert printed["rows"][0]["n"] == 3 and printed["config"]["decoding"] == "greedy"
    saved = json.loads(out.read_text())
    assert len(saved["questions"]) == 6 and all(len(q["answers"]) == 1 for q in saved["questions"])


def test_cli_rich_default_and_errors(capsys):
    assert main(["accuracy", "--task", "test-parity", "--student", "tiny-random", "--limit", "2"]) == 0
    assert "accuracy · test-parity" in capsys.readouterr().out
    assert main(["accuracy", "--task", "test-parity", "--student", "tiny-random", "--samples", "0"]) == 2
    assert "--samples must be at least 1" in capsys.readouterr().out
    assert main(["accuracy", "--task", "test-parity", "--student", "tiny-random", "--teacher", "no-such"]) == 2
    assert "Unknown teacher" in capsys.readouterr().out
