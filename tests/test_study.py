"""results/STUDY.md cannot drift from its data: the write-up is recomputed from results/study/'s compact files, and
its headline numbers are checked against independent pandas arithmetic on the same files."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDY_DIR = ROOT / "results" / "study"

pytestmark = pytest.mark.skipif(not (STUDY_DIR / "nodes.parquet").is_file(), reason="no study data committed")


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("study_build", STUDY_DIR / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(study):
    return study.load(STUDY_DIR)


@pytest.fixture(scope="module")
def numbers(study, data):
    return study.compute(*data)


def test_write_up_is_what_the_compact_files_give(study, numbers):
    figures = study.figure_names(STUDY_DIR)
    assert (ROOT / "results" / "STUDY.md").read_text() == study.render(numbers, figures), (
        "results/STUDY.md differs from what results/study/ gives: run `python results/study/build.py write`")
    for name in figures:
        assert (STUDY_DIR / name).is_file()


def _defined(nodes, row):
    """The node rows of a leaderboard row whose alignment is defined (informative, context built, finite logits,
    finite alignment), with that alignment as column ``a``."""
    cell = nodes[(nodes.task == row.task) & (nodes.student == row.student) & (nodes.teacher == row.teacher)]
    align = cell[f"align_{row.loss}"].astype(float)
    defined = (cell.informative.astype(bool) & cell.context_ok.astype(bool) & ~cell.logits_finite.eq(False)
               & np.isfinite(align))
    return cell[defined].assign(a=align[defined])


def test_walign_of_every_leaderboard_row_by_hand(data, numbers):
    """walign = sum(||g*|| align) / sum(||g*||) over the nodes with a defined alignment (METHOD), by plain pandas;
    teacher rows (the grpo reference row has no teacher)."""
    nodes = data[0]
    board = numbers["board"]
    checked = 0
    for row in board[board["walign"].notna() & board["teacher"].isin(nodes.teacher)].itertuples():
        frame = _defined(nodes, row)
        expected = float((frame.ideal_norm * frame.a).sum() / frame.ideal_norm.sum())
        assert row.walign == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert row.align_questions == frame.question_id.nunique()
        checked += 1
    assert checked > 0


def test_ok_minus_bad_by_hand(data, numbers):
    """ok_minus_bad: per question, mean alignment on correct paths minus on incorrect ones, averaged over questions
    that have both (METHOD)."""
    nodes = data[0]
    board = numbers["board"]
    checked = 0
    for row in board[board["ok_minus_bad"].notna() & board["teacher"].isin(nodes.teacher)].itertuples():
        frame = _defined(nodes, row)
        frame = frame[frame.rollout_correct.notna()]
        means = frame.groupby(["question_id", "rollout_correct"])["a"].mean().unstack().dropna()
        assert row.ok_minus_bad == pytest.approx(float((means[True] - means[False]).mean()), rel=1e-9, abs=1e-12)
        assert row.ok_bad_questions == len(means)
        checked += 1
    assert checked > 0


def test_answer_mix_by_counting(data, numbers):
    """The share of the student's own answers extracting to each answer, and of questions with that gold, counted
    one by one from the reports."""
    accuracy = data[2]
    if not accuracy:
        pytest.skip("no accuracy reports")
    mix = numbers["answer_mix"]
    for name, report in accuracy.items():
        alone = [entry for entry in report["questions"] if entry["condition"] == "student"]
        answers = [a["extracted"] or "unparsed" for entry in alone for a in entry["answers"] if a is not None]
        rows = mix[mix.report == name]
        assert sorted(rows.answer) == sorted(set(answers))
        for row in rows.itertuples():
            assert row.share == pytest.approx(answers.count(row.answer) / len(answers), abs=1e-12)
            golds = sum(entry["gold"] == row.answer for entry in alone)
            assert row.gold_share == pytest.approx(golds / len(alone), abs=1e-12)


def test_accuracy_rows_from_the_answers(data, numbers):
    """Each context's accuracy is the mean over questions of its pass rate, from the graded answers kept in the
    reports; its delta the mean paired difference from the student's own."""
    accuracy = data[2]
    if not accuracy:
        pytest.skip("no accuracy reports")
    table = numbers["accuracy"]
    for name, report in accuracy.items():
        rates: dict[str, dict[str, float]] = {}
        for entry in report["questions"]:
            answers = [a for a in entry["answers"] if a is not None]
            if answers:
                rates.setdefault(entry["condition"], {})[entry["question_id"]] = (
                    sum(bool(a["correct"]) for a in answers) / len(answers))
        for row in table[table.report == name].itertuples():
            per_question = rates.get(row.condition, {})
            if not per_question:
                assert row.accuracy is None or math.isnan(row.accuracy)
                continue
            assert row.accuracy == pytest.approx(np.mean(list(per_question.values())), abs=1e-12)
            assert row.questions == len(per_question)
