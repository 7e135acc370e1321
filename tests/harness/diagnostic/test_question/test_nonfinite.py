"""Non-finite logits (issue: reliability): the node is marked in the records and excluded, and the run continues.

``test-nan`` (tests/fakes.py) is tiny-random with NaN logits after every even token id, so about half of all
positions are poisoned, as a broken checkpoint or an overflowing low-precision kernel would do.
"""
from __future__ import annotations

import math

import pyarrow.parquet as pq

from harness.diagnostic.question import Settings
from harness.reports.leaderboard import leaderboard
from harness.workflows.runner import RunConfig, run

SETTINGS = Settings(rollouts=4, continuations=2, max_new_tokens=10)


def test_a_teacher_with_non_finite_logits_is_marked_and_excluded(tmp_path):
    config = RunConfig(task="test-parity", student="tiny-random", teachers=("self:correct-demo", "model:test-nan"),
                       limit=2, settings=SETTINGS, device="cpu")
    meta = run(config, tmp_path)
    assert meta["status"] == "complete"
    nodes = pq.read_table(tmp_path / "nodes.parquet").to_pandas()
    bad = nodes[nodes.teacher == "model:test-nan"]
    marked = bad[bad.logits_finite.eq(False)]
    assert 0 < len(marked) < len(bad), "the poisoned teacher should be non-finite at some nodes, finite at others"
    assert meta["counts"]["nonfinite_teacher_rows"] == len(marked)
    for row in marked.itertuples():
        assert row.context_ok and row.teacher_logprobs is None
        assert all(math.isnan(getattr(row, f"align_{loss}")) for loss in ("rkl", "fkl", "jsd", "sampled"))
        assert math.isnan(row.kl_student_teacher)
    clean = bad[bad.logits_finite.eq(True)]
    assert all(math.isfinite(v) for v in clean.kl_student_teacher)
    # the other teacher is untouched and every node keeps its teacher-independent columns
    assert nodes[nodes.teacher == "self:correct-demo"].logits_finite.all()
    assert not bad.ideal_norm.isna().any()
    # the leaderboard counts only finite rows: informative nodes of the poisoned teacher exclude the marked ones
    board = leaderboard(nodes)
    row = board[(board.teacher == "model:test-nan") & (board.loss == "rkl")].iloc[0]
    usable = bad.informative & bad.logits_finite.eq(True)
    assert row["informative"] == int(usable.sum()) < int(bad.informative.sum())


def test_a_student_with_non_finite_logits_never_gets_a_node_there(tmp_path):
    config = RunConfig(task="test-parity", student="test-nan", teachers=("self",), limit=2, settings=SETTINGS,
                       device="cpu")
    meta = run(config, tmp_path)
    assert meta["status"] == "complete"
    questions = pq.read_table(tmp_path / "questions.parquet").to_pandas()
    nodes = pq.read_table(tmp_path / "nodes.parquet").to_pandas()
    assert questions.nonfinite_positions.sum() > 0
    for question in questions.itertuples():
        ids = [int(t) for t in question.response_token_ids]
        chosen = nodes[(nodes.question_id == question.question_id) & (nodes.rollout_id == question.rollout_id)]
        # position i is scored from the logits after token i-1 (the prompt's last token for i = 0): an even
        # previous token means NaN logits, so such positions must never be nodes
        for position in chosen.position:
            assert position == 0 or ids[position - 1] % 2 == 1
        poisoned = sum(1 for i in range(1, len(ids)) if ids[i - 1] % 2 == 0)
        assert question.nonfinite_positions >= poisoned
