"""harness.reports.plan / `opd plan`: questions needed per headline comparison, scaled to the questions that count, and the
cost at the pilot's rate (closed forms on hand-made pilots)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from harness.cli.main import main
from harness.reports import stats
from harness.reports.plan import Rate, plan
from harness.storage.records import NODE_SCHEMA, QUESTION_SCHEMA, rows_to_table, write_json, write_table
from harness.storage.run_meta import RunMeta
from tests.helpers import node_row

RUN_JSON = {"counts": {"questions": 20, "generated_tokens_this_session": 30_000}, "resumed_questions": 4,
            "cache_hits": {"sampled_hits": 6}, "timings": {"total_s": 130.0, "setup_s": 30.0}, "device": "cpu",
            "threads": 2}


def pilot(seed=0, questions=20):
    """Two teachers; only even questions have both correct and incorrect rollouts (half count for ok_minus_bad)."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(questions):
        for r in range(2):
            correct = bool(r) if q % 2 == 0 else True
            for pos in range(3):
                base = rng.normal(0.2, 0.3)
                for teacher, shift in (("A", 0.1), ("B", 0.0)):
                    rows.append(node_row("boolq", "s", teacher, f"q{q}", r, pos, rollout_correct=correct,
                                         **{f"align_{loss}": base + shift + rng.normal(0, 0.1)
                                            for loss in ("rkl", "fkl", "jsd", "sampled", "grpo")}))
    return pd.DataFrame(rows)


def test_rate_counts_only_newly_sampled_questions():
    rate = Rate.of(RunMeta.of(RUN_JSON))
    assert rate.tokens_per_question == pytest.approx(30_000 / (20 - 4 - 6))
    assert rate.seconds_per_question == pytest.approx(100.0 / 10)
    assert "cpu" in rate.where
    assert math.isnan(Rate.of(RunMeta.of({"counts": {"questions": 3}, "resumed_questions": 3})).tokens_per_question)


def test_questions_needed_scaled_by_the_share_that_counts():
    tables = plan(pilot(), RunMeta.of(RUN_JSON), effect=0.1, options=stats.Options(permutations=500))
    rows = tables["comparisons"]
    ok_bad = rows[(rows.comparison == "ok_minus_bad") & (rows.teacher == "A") & (rows.loss == "rkl")].iloc[0]
    assert ok_bad.questions == 10 and ok_bad.counted_share == pytest.approx(0.5)
    # normal-approximation closed form for the questions needed, from the observed spread
    normal = ((scipy.stats.norm.ppf(0.975) + scipy.stats.norm.ppf(0.8)) * ok_bad.spread / 0.1) ** 2
    assert max(normal, 10) <= ok_bad.questions_needed <= max(normal, 10) + 4
    assert ok_bad.questions_to_run == math.ceil(ok_bad.questions_needed / 0.5)
    assert ok_bad.tokens == pytest.approx(ok_bad.questions_to_run * 3000)
    assert ok_bad.hours == pytest.approx(ok_bad.questions_to_run * 10 / 3600)
    pair = rows[(rows.comparison == "pair") & (rows.loss == "rkl")].iloc[0]
    assert (pair.teacher, pair.other) == ("A", "B") and pair.counted_share == 1.0
    normal_mde = (scipy.stats.norm.ppf(0.975) + scipy.stats.norm.ppf(0.8)) * pair.spread / math.sqrt(20)
    assert normal_mde <= pair.mde <= 1.1 * normal_mde  # t with 19 df asks a little more than the normal
    summary = tables["summary"].iloc[0]
    assert summary.questions_for_all == rows.questions_to_run.max() and summary.pilot_questions == 20


def test_questions_without_nodes_count_as_run():
    """A pilot that diagnosed 40 questions of which only the 20 in its records kept nodes: every comparison could
    use at most half the questions run, so it needs twice the questions run (to_run = needed / (used / 40))."""
    run_json = {**RUN_JSON, "config": {"task": "boolq", "student": "s"},
                "counts": {**RUN_JSON["counts"], "questions": 40}}
    options = stats.Options(permutations=500)
    rows = plan(pilot(), RunMeta.of(run_json), effect=0.1, options=options)["comparisons"]
    ok_bad = rows[(rows.comparison == "ok_minus_bad") & (rows.teacher == "A") & (rows.loss == "rkl")].iloc[0]
    assert ok_bad.questions == 10 and ok_bad.counted_share == pytest.approx(10 / 40)
    assert ok_bad.questions_to_run == math.ceil(ok_bad.questions_needed * 4)
    pair = rows[(rows.comparison == "pair") & (rows.loss == "rkl")].iloc[0]
    assert pair.counted_share == pytest.approx(20 / 40)
    assert plan(pilot(), RunMeta.of(run_json), effect=0.1, options=options)["summary"].iloc[0].pilot_questions == 40
    # a run.json of another cell says nothing about this one's questions
    other = {**run_json, "config": {"task": "boolq", "student": "other"}}
    assert plan(pilot(), RunMeta.of(other), effect=0.1, options=options)["summary"].iloc[0].pilot_questions == 20


def test_opd_plan_cli(tmp_path, capsys):
    nodes = pilot()
    write_table(rows_to_table(nodes.to_dict("records"), NODE_SCHEMA), tmp_path / "nodes.parquet")
    write_table(rows_to_table([], QUESTION_SCHEMA), tmp_path / "questions.parquet")
    write_json(RUN_JSON, tmp_path / "run.json")
    assert main(["plan", str(tmp_path), "--effect", "0.2", "--format", "json", "--permutations", "200"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"comparisons", "summary", "notes"} and out["summary"][0]["effect"] == 0.2
    assert main(["plan", str(tmp_path), "--effect", "0"]) == 2
    assert "--effect must be a positive" in capsys.readouterr().out
