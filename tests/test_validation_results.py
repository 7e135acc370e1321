"""The committed `opd validate` results (``results/validation/*/*/``) agree with their own per-run files.

Each ``validation.json`` is recomputed here from the raw evaluations it was built from (``before.json`` and every
``runs/<condition>/seed-<n>/result.json``), by plain means and by scipy / an enumeration of permutations instead of the
harness's report code: the pass rates, parse rates and gains of every row, and the rank correlation of the sampled
gain with walign across the scored teachers. A result whose per-run files were never committed (they were once
caught by the ``runs/`` ignore rule) fails here, on a clean clone, instead of being found missing a session later.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from harness.workflows.validate import RESULT_FILE, run_dir

ROOT = Path(__file__).resolve().parents[1] / "results" / "validation"
VALIDATIONS = sorted(p.parent for p in ROOT.glob("*/*/validation.json"))


def read(path: Path):
    return json.loads(path.read_text())


def result_path(directory: Path, condition: str, seed: int) -> Path:
    """Where the harness keeps one (condition, seed) run's result (its layout; the numbers are recomputed here)."""
    return run_dir(directory, condition, seed) / RESULT_FILE


def sampled_gain(directory: Path, condition: str, seed: int, sampled_before: np.ndarray) -> float:
    """One run's mean sampled pass-rate gain over the evaluation questions."""
    return float(np.mean(pass_rates(read(result_path(directory, condition, seed))["after"])[1] - sampled_before))


def pass_rates(evaluation: dict) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Per question: greedy correct (0/1), sampled pass rate; overall greedy and sampled parse rates."""
    greedy = np.asarray(evaluation["greedy_correct"], float)
    sampled = np.asarray([np.mean(k) for k in evaluation["sampled_correct"]])
    parsed_greedy = float(np.mean(evaluation["greedy_parsed"]))
    parsed_sampled = float(np.mean([x for k in evaluation["sampled_parsed"] for x in k]))
    return greedy, sampled, parsed_greedy, parsed_sampled


def exact_spearman_p(x, y) -> float:
    """Two-sided permutation p of Spearman's rho over every ordering of y (teachers are few)."""
    observed = abs(stats.spearmanr(x, y).statistic)
    values = [abs(stats.spearmanr(x, perm).statistic) for perm in itertools.permutations(y)]
    return float(np.mean([v >= observed - 1e-12 for v in values]))


def test_there_are_committed_validations():
    assert VALIDATIONS, f"no validation.json under {ROOT}"


@pytest.mark.parametrize("directory", VALIDATIONS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_rows_recomputed_from_the_per_run_files(directory: Path):
    report = read(directory / "validation.json")
    before = read(directory / "before.json")
    greedy_before, sampled_before, parsed_greedy_before, parsed_sampled_before = pass_rates(before)
    for row in report["rows"]:
        if not row["seeds"]:
            continue
        assert row["greedy_before"] == pytest.approx(greedy_before.mean())
        assert row["sampled_before"] == pytest.approx(sampled_before.mean())
        assert row["parsed_sampled_before"] == pytest.approx(parsed_sampled_before)
        assert row["parsed_greedy_before"] == pytest.approx(parsed_greedy_before)
        greedy_gains, sampled_gains, parsed_after = [], [], []
        for seed in row["seeds"]:
            path = result_path(directory, row["condition"], seed)
            assert path.is_file(), f"{path} is not committed: the row {row['condition']} seed {seed} rests on it"
            result = read(path)
            assert result["after"]["question_ids"] == before["question_ids"]
            greedy_after, sampled_after, _, parsed_sampled_after = pass_rates(result["after"])
            greedy_gains.append(greedy_after - greedy_before)
            sampled_gains.append(sampled_after - sampled_before)
            parsed_after.append(parsed_sampled_after)
        assert row["questions"] == len(before["question_ids"])
        if "sampled_gain_by_seed" in row:  # reports rendered before the column existed lack it
            assert row["sampled_gain_by_seed"] == pytest.approx(
                {str(seed): float(np.mean(g)) for seed, g in zip(row["seeds"], sampled_gains)})
        assert row["gain_greedy"]["estimate"] == pytest.approx(np.mean(greedy_gains))
        assert row["gain_sampled"]["estimate"] == pytest.approx(np.mean(sampled_gains))
        assert row["sampled_after"] - row["sampled_before"] == pytest.approx(np.mean(sampled_gains))
        assert row["parsed_sampled_after"] == pytest.approx(np.mean(parsed_after))
        if row["condition"] == "control":  # common random numbers: unchanged weights answer exactly as before
            assert np.all(np.asarray(sampled_gains) == 0)


@pytest.mark.parametrize("directory", VALIDATIONS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_walign_correlation_recomputed(directory: Path):
    report = read(directory / "validation.json")
    rows = {row["condition"]: row for row in report["rows"]}
    scored = [t for t in report["teachers_scored"] if rows[t]["seeds"] and rows[t].get("walign")]
    correlation = next((c for c in report["correlations"] if c["predictor"] == "walign"), None)
    if correlation is None:  # a pilot without a diagnostic to compare with
        assert not report["protocol"]["config"]["diagnostic"] and not scored
        return
    assert correlation["teachers"] == len(scored)
    if len(scored) < 3:
        return
    walign = [rows[t]["walign"]["estimate"] for t in scored]
    # the gain over the seeds every scored teacher has finished
    common = sorted(set.intersection(*(set(rows[t]["seeds"]) for t in scored)))
    assert report["correlation_seeds"] == common
    before = pass_rates(read(directory / "before.json"))[1]
    gain = [np.mean([sampled_gain(directory, t, s, before) for s in common]) for t in scored]
    assert correlation["spearman"] == pytest.approx(stats.spearmanr(walign, gain).statistic)
    assert correlation["kendall"] == pytest.approx(stats.kendalltau(walign, gain).statistic)
    assert correlation["spearman_p"] == pytest.approx(exact_spearman_p(walign, gain))
    for seed in common:  # the same correlation on each training seed alone
        alone = [sampled_gain(directory, t, seed, before) for t in scored]
        assert correlation["spearman_by_seed"][str(seed)] == pytest.approx(stats.spearmanr(walign, alone).statistic)


@pytest.mark.parametrize("directory", VALIDATIONS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_markdown_shows_the_json(directory: Path):
    report = read(directory / "validation.json")
    markdown = (directory / "validation.md").read_text()
    for row in report["rows"]:
        if row["seeds"]:
            assert f"{row['gain_sampled']['estimate']:+.3f}" in markdown, row["condition"]
