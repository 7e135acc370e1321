"""Tests for ``opd accuracy`` (harness.workflows.accuracy): statistics against statsmodels and exact enumeration, every context
teacher in accuracy mode, the split-sample breakdown (no regression to the mean), output formats and the CLI. Only
the ``test-parity`` fake task and ``tiny-random`` models: no data files, no network."""
from __future__ import annotations

import csv
import io
import itertools
import json
import os
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np
import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from harness.api.task import TASKS, register_task, resolve_task
from harness.cli.main import main
from harness.render.tables import format_accuracy, print_accuracy
from harness.sampling.teacher import TEACHERS, Teacher, register_teacher
from harness.workflows.accuracy import (
    PASS_RATE_DIMENSION,
    STUDENT_CONDITION,
    AccuracyConfig,
    AccuracyError,
    Answer,
    Condition,
    evaluate,
    paired_difference,
    paired_differences,
    summarise,
    year_range,
)
from teachers import summary

ODD_ONLY_TEACHER = "test-odd-only-context"
RECORDER_TEACHER = "test-recording-context"
META_TASK = "test-parity-meta"
SAMPLES = 4
SEEN = []  # every ContextInputs the recording teacher was given


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


def recording_context(inputs):
    """Records what a builder is given; a different prompt per scored answer k."""
    SEEN.append(inputs)
    return f"You are answer {inputs.rollout_id}.\n\n{inputs.question.prompt}"


@pytest.fixture(scope="module", autouse=True)
def fakes():
    register_teacher(ODD_ONLY_TEACHER, "test fake: context for odd questions only")(
        lambda: Teacher(name=ODD_ONLY_TEACHER, description="", model=None, context=odd_only_context))
    register_teacher(RECORDER_TEACHER, "test fake: records its inputs")(
        lambda: Teacher(name=RECORDER_TEACHER, description="", model=None, context=recording_context,
                        needs=("rollouts",), choice=lambda inputs: f"k={inputs.rollout_id}"))
    register_task(META_TASK)(ParityWithMeta)
    yield
    TEACHERS.remove(ODD_ONLY_TEACHER)
    TEACHERS.remove(RECORDER_TEACHER)
    TASKS.remove(META_TASK)



class CountingProgress:
    """The progress protocol, recording every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    def add_total(self, kind: str, amount: int) -> None:
        self.calls.append(("total", kind, amount))

    def advance(self, kind: str, amount: int = 1) -> None:
        self.calls.append(("advance", kind, amount))


SAMPLED_PROGRESS = CountingProgress()


@pytest.fixture(scope="module")
def sampled_report():
    config = AccuracyConfig(task=META_TASK, student="tiny-random",
                            teachers=("self:correct-demo", "model:tiny-random:1", ODD_ONLY_TEACHER, "self"),
                            samples=SAMPLES, device="cpu")
    return evaluate(config, SAMPLED_PROGRESS)


def test_progress_counts_one_answer_per_question_and_condition(sampled_report):
    questions = sampled_report.config["questions"]
    conditions = 5  # the student and its four teachers
    assert SAMPLED_PROGRESS.calls == [("total", "answers", conditions * questions),
                                      *[("advance", "answers", questions)] * conditions]


def rows_by_name(report):
    return {row["condition"]: row for row in report.rows}


def answers_of(report, condition):
    return {q["question_id"]: q["answers"] for q in report.questions if q["condition"] == condition}


def exact_sign_flip_p(differences):
    """Two-sided p of the sign-flip test by enumerating every sign assignment (an independent computation)."""
    observed = abs(sum(differences))
    flips = list(itertools.product((1, -1), repeat=len(differences)))
    extreme = sum(abs(sum(s * d for s, d in zip(signs, differences))) >= observed - 1e-12 for signs in flips)
    return extreme / len(flips)


def test_rows_match_statsmodels_and_an_exact_sign_flip(sampled_report):
    rows = rows_by_name(sampled_report)
    assert list(rows) == [STUDENT_CONDITION, "self:correct-demo", "model:tiny-random:1", ODD_ONLY_TEACHER, "self"]
    student = answers_of(sampled_report, STUDENT_CONDITION)
    for name, row in rows.items():
        per_question = answers_of(sampled_report, name)
        rates = [sum(a["correct"] for a in answers if a) / sum(1 for a in answers if a)
                 for answers in per_question.values() if any(answers)]
        assert (row["questions"], row["answers"]) == (len(rates), sum(a is not None for v in per_question.values()
                                                                       for a in v))
        assert row["accuracy"] == pytest.approx(sum(rates) / len(rates))
        low, high = proportion_confint(sum(rates), len(rates), alpha=0.05, method="wilson")
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
        if name == STUDENT_CONDITION:
            assert row["p_sign_flip"] is None and row["delta"] is None
            continue
        # per question, over the answers k both conditions have: teacher pass rate - student pass rate
        differences, student_rates = [], []
        for qid, answers in per_question.items():
            pairs = [(s, t) for s, t in zip(student[qid], answers) if t is not None]
            if pairs:
                student_rates.append(np.mean([s["correct"] for s, _ in pairs]))
                differences.append(np.mean([t["correct"] for _, t in pairs]) - student_rates[-1])
        assert row["delta"] == pytest.approx(np.mean(differences))
        assert row["student_same"] == pytest.approx(np.mean(student_rates))
        assert row["accuracy"] - row["student_same"] == pytest.approx(row["delta"])
        better, worse = sum(d > 1e-12 for d in differences), sum(d < -1e-12 for d in differences)
        assert (row["better"], row["worse"]) == (better, worse)
        assert row["p_sign_flip"] == pytest.approx(exact_sign_flip_p(differences))


def test_with_one_answer_per_question_the_sign_flip_test_is_mcnemars_exact_test():
    questions = [replace(q, id=f"q{i}") for i, q in enumerate(resolve_task("test-parity").load(None, 1) * 12)]
    right, wrong = Answer("", None, True, "eos"), Answer("", None, False, "eos")
    # 12 questions: 3 both right, 2 both wrong, 1 only the student right, 6 only the teacher right
    student = [right] * 3 + [wrong] * 2 + [right] + [wrong] * 6
    teacher = [right] * 3 + [wrong] * 2 + [wrong] + [right] * 6
    outcomes = {STUDENT_CONDITION: {q.id: [a] for q, a in zip(questions, student)},
                "t": {q.id: [a] for q, a in zip(questions, teacher)}}
    report = summarise(questions, [Condition(STUDENT_CONDITION, "m"), Condition("t", "m")], outcomes, samples=1)
    row = rows_by_name(report)["t"]
    expected = mcnemar([[3, 1], [6, 2]], exact=True).pvalue
    assert row["p_sign_flip"] == pytest.approx(expected) and (row["better"], row["worse"]) == (6, 1)
    assert any("McNemar's exact test" in note for note in report.notes)


def test_self_teacher_reuses_student_answers(sampled_report):
    rows = rows_by_name(sampled_report)
    assert answers_of(sampled_report, "self") == answers_of(sampled_report, STUDENT_CONDITION)
    assert rows["self"]["delta"] == 0.0 and rows["self"]["p_sign_flip"] == 1.0


def test_unavailable_context_is_counted_and_reported(sampled_report):
    row = rows_by_name(sampled_report)[ODD_ONLY_TEACHER]
    assert (row["questions"], row["unavailable"], row["answers"]) == (2, 3, 2 * SAMPLES)  # parity-1, parity-3 only
    assert any(ODD_ONLY_TEACHER in note and f"unavailable for {3 * SAMPLES} of {5 * SAMPLES} answers" in note
               and "3 of 5 questions" in note for note in sampled_report.notes)


def test_breakdown_bins_on_half_the_samples_and_measures_on_the_other_half(sampled_report):
    dims = {}
    for entry in sampled_report.breakdown:
        dims.setdefault(entry["dimension"], []).append(entry["bin"])
        assert set(rows_by_name(sampled_report)) <= set(entry)
    assert dims["group"] == ["STEM", "humanities"]
    assert dims["year"] == ["1983-1999", "2000-2009", "2010-2019", "2020+"]
    year_n = {e["bin"]: e["n"] for e in sampled_report.breakdown if e["dimension"] == "year"}
    assert year_n["2020+"] == 2
    # rebuilt by hand: the bin from the student's samples 1-2, every condition's accuracy from samples 3-4
    student = answers_of(sampled_report, STUDENT_CONDITION)
    labels = {0.0: "0 (never)", 0.5: "[0.5, 1)", 1.0: "1 (always)"}
    members = {}
    for qid, answers in student.items():
        members.setdefault(labels[np.mean([a["correct"] for a in answers[:2]])], []).append(qid)
    entries = {e["bin"]: e for e in sampled_report.breakdown if e["dimension"] == PASS_RATE_DIMENSION}
    assert set(entries) == set(members)
    for label, ids in members.items():
        assert entries[label]["n"] == len(ids)
        for name in rows_by_name(sampled_report):
            answers = answers_of(sampled_report, name)
            rates = [np.mean([a["correct"] for a in answers[i][2:] if a]) for i in ids if any(answers[i][2:])]
            assert entries[label][name] == (pytest.approx(np.mean(rates)) if rates else None)


def _simulated_gains(seed, questions, samples, naive=False):
    """Per pass-rate bin, teacher minus student accuracy when the teacher's answers are drawn from exactly the
    student's distribution (each question solved with its own probability p_q by both). ``naive``: the old rule,
    binning and measuring on the same samples, computed here by hand."""
    rng = np.random.default_rng(seed)
    solve = rng.uniform(size=questions)
    student = rng.random((questions, samples)) < solve[:, None]
    teacher = rng.random((questions, samples)) < solve[:, None]
    if naive:
        rates = student.mean(axis=1)
        return {"0 (never)": (teacher[rates == 0].mean() - student[rates == 0].mean()) if (rates == 0).any() else None,
                "1 (always)": (teacher[rates == 1].mean() - student[rates == 1].mean()) if (rates == 1).any() else None}
    base = resolve_task("test-parity").load(None, 1)[0]
    qs = [replace(base, id=f"q{i}") for i in range(questions)]

    def as_answers(row):
        return [Answer("", None, bool(c), "eos") for c in row]

    outcomes = {STUDENT_CONDITION: {q.id: as_answers(r) for q, r in zip(qs, student)},
                "teacher": {q.id: as_answers(r) for q, r in zip(qs, teacher)}}
    report = summarise(qs, [Condition(STUDENT_CONDITION, "m"), Condition("teacher", "m")], outcomes, samples)
    return {e["bin"]: e["teacher"] - e["student"] for e in report.breakdown if e["dimension"] == PASS_RATE_DIMENSION}


def test_a_teacher_as_good_as_the_student_gains_nothing_in_any_pass_rate_bin():
    seeds, questions, samples = 150, 40, 8
    gains = {}
    for seed in range(seeds):
        for label, gain in _simulated_gains(seed, questions, samples).items():
            gains.setdefault(label, []).append(gain)
    assert set(gains) == {"0 (never)", "(0, 0.5)", "[0.5, 1)", "1 (always)"}
    for label, values in gains.items():
        # each mean rests on ~150 seeds x ~8 questions: its standard error is below 0.01
        assert abs(np.mean(values)) < 0.03, (label, np.mean(values))
    # the same simulation binned and measured on the same samples shows the artefact the split removes
    naive = {"0 (never)": [], "1 (always)": []}
    for seed in range(seeds):
        for label, gain in _simulated_gains(seed, questions, samples, naive=True).items():
            if gain is not None:
                naive[label].append(gain)
    assert np.mean(naive["0 (never)"]) > 0.05 and np.mean(naive["1 (always)"]) < -0.05


def test_year_ranges():
    assert [year_range(y) for y in (1983, 1999, 2000, 2019, 2020, "2025")] == [
        "1983-1999", "1983-1999", "2000-2009", "2010-2019", "2020+", "2020+"]


def test_output_formats_parse(sampled_report, capsys):
    data = json.loads(format_accuracy(sampled_report, "json"))
    assert {"config", "rows", "breakdown", "notes"} <= set(data) and "questions" not in data
    assert data["config"]["decoding"] == f"{SAMPLES} samples at T=1"

    blocks = [b for b in format_accuracy(sampled_report, "csv").split("\n\n") if b.strip()]
    rows = list(csv.DictReader(io.StringIO(blocks[0])))
    assert [r["condition"] for r in rows] == [row["condition"] for row in sampled_report.rows]
    assert float(rows[0]["accuracy"]) == pytest.approx(sampled_report.rows[0]["accuracy"], abs=1e-3)
    breakdown = [line for line in blocks[1].splitlines() if not line.startswith("#")]
    assert next(csv.reader(breakdown))[:3] == ["dimension", "bin", "n"]

    md = format_accuracy(sampled_report, "md")
    header = md.splitlines()[0]
    assert header.startswith("| condition") and "accuracy" in header and "p_sign_flip" in header
    assert "student_same" in header and "| dimension" in md and "nan" not in md

    from rich.console import Console

    print_accuracy(sampled_report, Console(width=220))
    out = capsys.readouterr().out
    assert "accuracy by difficulty" in out and "p (sign-flip)" in out and "student, same answers" in out


def test_greedy_says_pass_rate_bins_need_samples():
    questions = resolve_task("test-parity").load(None, 2)
    outcomes = {STUDENT_CONDITION: {q.id: [Answer("ab", "2", True, "eos")] for q in questions}}
    report = summarise(questions, [Condition(STUDENT_CONDITION, "m")], outcomes, samples=1)
    assert report.breakdown == []
    assert any("--samples >= 2" in note for note in report.notes)


def test_unparsed_answers_are_counted_apart_from_wrong_answers(capsys):
    """Hand-counted: an answer with no parseable answer (None or "") is not correct and lands in ``unparsed``,
    never among the wrong answers; the shares are per question, over the questions that have answers."""
    from rich.console import Console

    questions = resolve_task("test-parity").load(None, 2)
    a, b = questions[0].id, questions[1].id
    right, wrong = Answer("r", "2", True, "eos"), Answer("w", "3", False, "eos")
    no_answer, empty = Answer("n", None, False, "length"), Answer("e", "", False, "eos")
    outcomes = {STUDENT_CONDITION: {a: [right, no_answer, wrong, empty], b: [wrong, wrong, wrong, no_answer]},
                "teacher": {a: [None, None, None, None], b: [no_answer, right, None, wrong]}}
    conditions = [Condition(STUDENT_CONDITION, "m"), Condition("teacher", "m")]
    rows = {row["condition"]: row for row in summarise(questions, conditions, outcomes, samples=4).rows}
    # student: a = 1 right, 2 unparsed, 1 wrong; b = 3 wrong, 1 unparsed
    assert rows[STUDENT_CONDITION]["accuracy"] == pytest.approx((1 / 4 + 0) / 2)
    assert rows[STUDENT_CONDITION]["unparsed"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    # teacher: only b has answers (3 of them): 1 right, 1 unparsed, 1 wrong
    assert rows["teacher"]["questions"] == 1
    assert rows["teacher"]["unparsed"] == pytest.approx(1 / 3) and rows["teacher"]["accuracy"] == pytest.approx(1 / 3)

    report = summarise(questions, conditions, outcomes, samples=4)
    print_accuracy(report, Console(width=220))
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "condition" in line and "accuracy" in line)
    assert "unparsed" in header
    student_line = next(line for line in out.splitlines() if line.lstrip("│┃ ").startswith(STUDENT_CONDITION))
    assert "0.375" in student_line and "0.125" in student_line  # unparsed beside accuracy
    assert any("unparsed" in note for note in report.notes)
    csv_rows = list(csv.DictReader(io.StringIO(format_accuracy(report, "csv").split("\n\n")[0])))
    assert float(csv_rows[0]["unparsed"]) == pytest.approx(0.375)


def test_paired_differences_use_only_the_answers_both_conditions_have():
    right, wrong = Answer("", None, True, "eos"), Answer("", None, False, "eos")
    base = {"a": [right, wrong], "b": [wrong, wrong], "c": [right, right]}
    other = {"a": [None, right], "b": [right, None], "c": [None, None]}
    differences, base_rates = paired_differences(base, other, ["a", "b", "c"])
    assert differences == [1, 1] and base_rates == [0, 0]  # "a": k=1 only, "b": k=0 only, "c": no pair


def test_invalid_settings_fail_early():
    with pytest.raises(AccuracyError, match="--samples"):
        evaluate(AccuracyConfig(task="test-parity", student="tiny-random", samples=0))
    with pytest.raises(AccuracyError, match="listed twice"):
        evaluate(AccuracyConfig(task="test-parity", student="tiny-random", teachers=("self", "self")))


@pytest.mark.parametrize("spec", ["self:self-demo", "self:correct-wrong", "idp:default",
                                  "model:tiny-random:1+self:self-demo"])
def test_contexts_from_other_answers_need_samples_and_say_so_before_any_work(spec):
    # an unknown student would fail at loading: the samples check comes first
    for samples in (None, 1):
        with pytest.raises(AccuracyError, match=r"--samples K with K >= [23]") as error:
            evaluate(AccuracyConfig(task="test-parity", student="no-such-model", teachers=(spec,), samples=samples))
        assert spec in str(error.value) and "other" in str(error.value)


def test_correct_wrong_needs_three_answers_because_the_paired_one_is_never_shown():
    """With K = 2 the only other answer cannot be both correct and incorrect: the context could never be built."""
    with pytest.raises(AccuracyError, match=r"K >= 3") as error:
        evaluate(AccuracyConfig(task="test-parity", student="no-such-model", teachers=("self:correct-wrong",),
                                samples=2))
    assert "correct and an incorrect" in str(error.value)
    with pytest.raises(Exception) as loading:  # K = 3 passes the check and fails only later, at the unknown model
        evaluate(AccuracyConfig(task="test-parity", student="no-such-model", teachers=("self:correct-wrong",),
                                samples=3))
    assert "K >= 3" not in str(loading.value)


# ---------------------------------------------------------------- every context teacher in accuracy mode

CONTEXT_TEACHERS = ("self:self-demo", "self:correct-wrong", "self:summary", "self:larger-demo:tiny-random:2",
                    "idp:self-demo,correct-demo", "model:tiny-random:1+self:self-demo", RECORDER_TEACHER)


@pytest.fixture(scope="module")
def context_report():
    """One evaluation with every context teacher; summaries written by the --summarizer model (spied on)."""
    writers = []
    real_generate = summary.generate_texts

    def spy(lm, *args, **kwargs):
        writers.append(lm.spec)
        return real_generate(lm, *args, **kwargs)

    SEEN.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPD_SUMMARIZER", "tiny-random:3")
        patch.setattr(summary, "generate_texts", spy)
        report = evaluate(AccuracyConfig(task="test-parity", student="tiny-random", teachers=CONTEXT_TEACHERS,
                                         samples=SAMPLES, seed=3, device="cpu"))
    return report, writers, list(SEEN)


def _other_correct(student_answers, k):
    return [j for j, a in enumerate(student_answers) if j != k and a["correct"]]


def test_builders_see_the_students_answers_as_the_rollouts_of_opd_run(context_report):
    report, _, seen = context_report
    student = answers_of(report, STUDENT_CONDITION)
    assert len(seen) == len(student) * SAMPLES
    assert {id(inputs.state) for inputs in seen} == {id(seen[0].state)}  # one state for the whole evaluation
    for qid, answers in student.items():
        calls = [inputs for inputs in seen if inputs.question.id == qid]
        assert [inputs.rollout_id for inputs in calls] == list(range(SAMPLES))
        for inputs in calls:
            assert [(v.rollout_id, v.response, v.correct) for v in inputs.rollouts] == [
                (j, a["response"], a["correct"]) for j, a in enumerate(answers)]
            assert inputs.student.spec == "tiny-random" and inputs.seed == 3 and inputs.task.name == "test-parity"
    # the teacher's answer k is the one made with the context of student answer k
    for qid, answers in answers_of(report, RECORDER_TEACHER).items():
        assert [a["context_choice"] for a in answers] == [f"k={k}" for k in range(SAMPLES)]


def test_self_demo_and_correct_wrong_are_built_from_the_other_answers(context_report):
    report, _, _ = context_report
    student = answers_of(report, STUDENT_CONDITION)
    for name in ("self:self-demo", "model:tiny-random:1+self:self-demo", "self:correct-wrong"):
        made = 0
        for qid, answers in answers_of(report, name).items():
            for k, answer in enumerate(answers):
                others = [a for j, a in enumerate(student[qid]) if j != k]
                buildable = any(a["correct"] for a in others)
                if name == "self:correct-wrong":
                    buildable = buildable and any(not a["correct"] for a in others)
                assert (answer is not None) == buildable, (name, qid, k)
                made += answer is not None
        assert 0 < made < len(student) * SAMPLES  # both cases occur: the check above is not vacuous
    assert rows_by_name(report)["model:tiny-random:1+self:self-demo"]["model"] == "tiny-random:1"


def test_summary_is_written_once_per_question_by_the_summariser(context_report):
    report, writers, _ = context_report
    assert writers == ["tiny-random:3"] * 5  # once per question, not per sample, by the --summarizer model
    assert report.config["variants"]["self:summary"] == "summarizer=tiny-random:3"
    for answers in answers_of(report, "self:summary").values():
        assert len({a is None for a in answers}) == 1  # one summary per question: all answers or none


def test_larger_demo_and_idp_in_accuracy_mode(context_report):
    report, _, _ = context_report
    student = answers_of(report, STUDENT_CONDITION)
    for answers in answers_of(report, "self:larger-demo:tiny-random:2").values():
        assert len({a is None for a in answers}) == 1  # one demonstration per question
    for qid, answers in answers_of(report, "idp:self-demo,correct-demo").items():
        assert all(a is not None for a in answers)  # correct-demo can always be built on test-parity
        choices = [a["context_choice"] for a in answers]
        assert set(choices) <= {"self:self-demo", "self:correct-demo"}
        for k, choice in enumerate(choices):
            if choice == "self:self-demo":
                assert _other_correct(student[qid], k)
        # one ranking per question: where self-demo can be built, every answer gets the same (top) choice
        assert len({c for k, c in enumerate(choices) if _other_correct(student[qid], k)}) <= 1


def test_cli_json_and_out_file(tmp_path, capsys):
    out = tmp_path / "acc.json"
    code = main(["accuracy", "--task", "test-parity", "--student", "tiny-random", "--teacher", "self:correct-demo",
                 "--limit", "3", "--format", "json", "--device", "cpu", "--out", str(out)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["condition"] for r in printed["rows"]] == [STUDENT_CONDITION, "self:correct-demo"]
    assert printed["rows"][0]["questions"] == 3 and printed["config"]["decoding"] == "greedy"
    saved = json.loads(out.read_text())
    assert len(saved["questions"]) == 6 and all(len(q["answers"]) == 1 for q in saved["questions"])


def test_cli_summarizer_flag(monkeypatch, capsys):
    monkeypatch.delenv("OPD_SUMMARIZER", raising=False)
    code = main(["accuracy", "--task", "test-parity", "--student", "tiny-random", "--teacher", "self:summary",
                 "--summarizer", "tiny-random:3", "--limit", "1", "--format", "json", "--device", "cpu"])
    assert code == 0
    # --summarizer names the writer in the spec: the row says who wrote the summaries
    assert json.loads(capsys.readouterr().out)["config"]["variants"] == {
        "self:summary:tiny-random:3": "summarizer=tiny-random:3"}
    assert "OPD_SUMMARIZER" not in os.environ


def test_cli_rich_default_and_errors(capsys):
    assert main(["accuracy", "--task", "test-parity", "--student", "tiny-random", "--limit", "2"]) == 0
    assert "accuracy · test-parity" in capsys.readouterr().out
    assert main(["accuracy", "--task", "test-parity", "--student", "tiny-random", "--samples", "0"]) == 2
    assert "--samples must be at least 1" in capsys.readouterr().out
    assert main(["accuracy", "--task", "test-parity", "--student", "tiny-random", "--teacher", "no-such"]) == 2
    assert "Unknown teacher" in capsys.readouterr().out
    assert main(["accuracy", "--task", "test-parity", "--student", "tiny-random", "--teacher", "self:self-demo"]) == 2
    assert "--samples K with K >= 2" in capsys.readouterr().out


def test_paired_difference_of_one_question_counts_only_answers_both_have():
    def graded(*correct):
        return [None if c is None else Answer("", None, c, "stop") for c in correct]

    # answers 0 and 1 are in both: student right once, condition never -> (-1/2, 1/2); 2 and 3 are unpaired
    assert paired_difference(graded(True, False, None, True), graded(False, False, True, None)) == (Fraction(-1, 2),
                                                                                                   Fraction(1, 2))
    assert paired_difference(graded(True, None), graded(None, False)) is None
