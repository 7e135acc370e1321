"""Where the nodes are (harness.reports.depth): the spread of informative nodes over depth, on hand-built records whose
answer is worked out by hand, and as a run states it in run.json, its summary and the leaderboard's footer."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from harness.cli.main import main
from harness.diagnostic.question import Settings
from harness.render.tables import depth_text
from harness.reports.depth import DepthSummary, depth_shares, depth_summaries, depth_summary, summarize
from harness.workflows.runner import RunConfig, run


def frame(rows, teachers=("self", "self:correct-demo")):
    """Node records, one row per (node, teacher): ``rows`` are (question, rollout, position, length, informative)."""
    records = [{"task": "t", "student": "s", "teacher": teacher, "question_id": q, "rollout_id": r, "position": p,
                "depth_norm": p / n, "informative": informative}
               for teacher in teachers for q, r, p, n, informative in rows]
    return pd.DataFrame.from_records(records)


def test_share_and_quartiles_by_hand():
    # informative depth_norm, sorted: 0, 0, 0.1, 0.3, 0.7 -> linear quantiles at h = (5 - 1) p: h = 1, 2, 3
    rows = [("q1", 0, 0, 10, True), ("q1", 1, 0, 5, True), ("q1", 1, 1, 10, False), ("q2", 0, 1, 10, True),
            ("q2", 0, 3, 10, True), ("q2", 1, 7, 10, True), ("q2", 1, 9, 10, False)]
    summary = depth_summary(frame(rows))
    assert (summary.nodes, summary.first_token, summary.selected) == (5, 2, 7)  # each node once, not per teacher
    assert summary.first_token_share == pytest.approx(0.4)
    assert summary.quartiles == pytest.approx((0.0, 0.1, 0.3))
    assert not summary.mostly_first_token
    every = depth_summary(frame(rows), informative_only=False)  # 0, 0, .1, .1, .3, .7, .9 at h = 1.5, 3, 4.5
    assert (every.nodes, every.first_token) == (7, 2)
    assert every.quartiles == pytest.approx((0.05, 0.1, 0.5))


def test_quartiles_interpolate_between_order_statistics():
    # 0, .1, .3, .7 at h = 3p: .75 -> 0 + .75 * .1; 1.5 -> .1 + .5 * .2; 2.25 -> .3 + .25 * .4
    summary = summarize(np.array([3, 0, 7, 1]), np.array([0.3, 0.0, 0.7, 0.1]))
    assert summary.quartiles == pytest.approx((0.075, 0.2, 0.4))
    assert summary.first_token == 1 and summary.selected is None


def test_mostly_first_token_means_more_than_half():
    half = summarize(np.array([0, 0, 3, 4]), np.array([0.0, 0.0, 0.5, 0.9]))
    more = summarize(np.array([0, 0, 0, 4]), np.array([0.0, 0.0, 0.0, 0.8]))
    assert not half.mostly_first_token and more.mostly_first_token
    assert "answer prior" in depth_text(more) and "answer prior" not in depth_text(half)
    assert depth_text(half) == ("Where the nodes are: 4 informative nodes, 50% at the first response token; "
                                "depth_norm quartiles 0.00 / 0.25 / 0.60.")


def test_no_informative_node_and_its_json():
    summary = depth_summary(frame([("q1", 0, 0, 4, False), ("q1", 0, 2, 4, False)]))
    assert (summary.nodes, summary.selected, summary.quartiles, summary.first_token_share) == (0, 2, None, None)
    text = json.dumps(summary.as_json(), allow_nan=False)  # valid JSON: no NaN
    assert json.loads(text) == {"informative_nodes": 0, "selected_nodes": 2, "first_token_nodes": 0,
                                "first_token_share": None, "depth_norm_quartiles": None, "mostly_first_token": False}
    assert depth_text(summary) == ("Where the nodes are: no informative node (of 2 selected), so no spread over "
                                   "depth to state.")


def test_one_summary_per_task_and_student():
    first = frame([("q1", 0, 0, 4, True), ("q1", 0, 2, 4, True)])
    second = frame([("q1", 0, 0, 4, True)]).assign(student="other")  # same ids, another student: other nodes
    summaries = depth_summaries(pd.concat([first, second]))
    assert list(summaries) == [("t", "s"), ("t", "other")]
    assert (summaries[("t", "s")].nodes, summaries[("t", "s")].first_token) == (2, 1)
    assert (summaries[("t", "other")].nodes, summaries[("t", "other")].first_token) == (1, 1)
    assert summaries[("t", "s")].quartiles == pytest.approx((0.125, 0.25, 0.375))


def linear_quantile(values, p):
    """Type-7 quantile by hand: the order statistics at h = (n - 1) p, linearly interpolated."""
    ordered = sorted(values)
    h = (len(ordered) - 1) * p
    low = int(h)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (h - low) * (ordered[high] - ordered[low])


@pytest.fixture(scope="module")
def parity_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("depth-run")
    config = RunConfig(task="test-parity", student="tiny-random", teachers=("self", "self:correct-demo"), limit=2,
                       settings=Settings(rollouts=3, continuations=2, max_new_tokens=10), device="cpu")
    return out, run(config, out)


def test_run_json_states_the_spread_of_its_informative_nodes(parity_run):
    out, meta = parity_run
    nodes = pq.read_table(out / "nodes.parquet").to_pandas()
    one = nodes[nodes.teacher == "self"]
    informative = one[one.informative]
    assert len(informative) > 0
    saved = json.loads((out / "run.json").read_text())["depth"]
    assert saved == meta["depth"]
    assert saved["informative_nodes"] == len(informative) == meta["counts"]["informative_nodes"]
    assert saved["selected_nodes"] == len(one) == meta["counts"]["nodes"]
    assert saved["first_token_nodes"] == int((informative.position == 0).sum())
    assert saved["first_token_share"] == pytest.approx((informative.position == 0).mean())
    depth = list(informative.position / informative.rollout_len)
    assert saved["depth_norm_quartiles"] == pytest.approx([linear_quantile(depth, p) for p in (0.25, 0.5, 0.75)])


def test_run_summary_and_leaderboard_footer_say_where_the_nodes_are(parity_run, tmp_path, capsys):
    out, meta = parity_run
    expected = depth_text(DepthSummary(meta["depth"]["informative_nodes"], meta["depth"]["first_token_nodes"],
                                       tuple(meta["depth"]["depth_norm_quartiles"]), meta["depth"]["selected_nodes"]))
    assert main(["leaderboard", str(out)]) == 0
    assert expected in capsys.readouterr().out.replace("\n", " ")
    assert main(["leaderboard", str(out), "--format", "json"]) == 0
    json.loads(capsys.readouterr().out)  # machine-readable output carries no footer
    again = tmp_path / "cli"
    assert main(["run", "--task", "test-parity", "--student", "tiny-random", "--teacher", "self", "--limit", "1",
                 "--rollouts", "3", "--max-new-tokens", "8", "--out", str(again), "--quiet", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.replace("\n", " ")
    saved = json.loads((again / "run.json").read_text())["depth"]
    assert f"Where the nodes are: {saved['informative_nodes']} informative nodes (of {saved['selected_nodes']} " \
           f"selected)" in printed


def test_depth_shares_by_hand():
    # bins [0, .25) [.25, .5) [.5, .75) [.75, 1): 0, .1 | .25 | - | .8, .99
    assert depth_shares(np.array([0.0, 0.1, 0.25, 0.8, 0.99])) == pytest.approx([0.4, 0.2, 0.0, 0.4])
    assert depth_shares(np.array([0.0, 0.5]), bins=2) == pytest.approx([0.5, 0.5])
    assert all(np.isnan(depth_shares(np.array([]))))


def test_footer_labels_each_task_and_student_when_there_are_several():
    from rich.console import Console

    from harness.render.tables import print_depth

    first = frame([("q1", 0, 0, 4, True), ("q1", 0, 2, 4, True)])
    console = Console(record=True, width=300)
    print_depth(depth_summaries(pd.concat([first, first.assign(student="other")])), console)
    lines = console.export_text().splitlines()
    assert lines == [f"Where the nodes are (t · {student}): 2 informative nodes (of 2 selected), 50% at the first "
                     f"response token; depth_norm quartiles 0.12 / 0.25 / 0.38." for student in ("s", "other")]
    console = Console(record=True, width=300)
    print_depth(depth_summaries(first), console)
    assert console.export_text().startswith("Where the nodes are: 2 informative")
