"""harness.storage.records: a run written before the outcome columns existed gets them from questions.parquet, by the
definition (hand-built rollouts whose shared prefixes and outcomes are known)."""
from __future__ import annotations

import pandas as pd

from harness.storage.records import (
    NODE_SCHEMA,
    QUESTION_SCHEMA,
    load_run,
    outcome,
    prefix_shared,
    rows_to_table,
    write_table,
)
from tests.helpers import ROOT
from tests.helpers import node_row

ROLLOUTS = {0: ([5, 6, 7, 1], True, "yes"), 1: ([5, 6, 8, 2], False, "no"), 2: ([9, 1], False, None)}
# (rollout, position) -> prefix shared with a rollout of another outcome
EXPECTED = {(0, 0): True, (0, 1): True, (0, 2): True, (0, 3): False, (1, 2): True, (1, 3): False, (2, 0): True,
            (2, 1): False}


def test_outcome_of_a_grade():
    assert [outcome(True, "yes"), outcome(False, "no"), outcome(False, None), outcome(False, ""),
            outcome(None, None)] == ["correct", "incorrect", "unparsed", "unparsed", None]


def test_prefix_shared_by_hand():
    responses = [tokens for tokens, _, _ in ROLLOUTS.values()]
    outcomes = [outcome(c, e) for _, c, e in ROLLOUTS.values()]
    for (rollout, position), expected in EXPECTED.items():
        assert prefix_shared(responses, outcomes, rollout, position) == expected, (rollout, position)
    # the same prefix on a rollout of the same outcome is no other outcome
    assert not prefix_shared([[5, 6], [5, 6]], ["incorrect", "incorrect"], 0, 1)


def test_load_run_fills_the_outcome_columns_of_older_records(tmp_path):
    nodes = []
    for (rollout, position) in EXPECTED:
        row = node_row("boolq", "s", "t", "q0", rollout, position, rollout_correct=ROLLOUTS[rollout][1])
        for name in ("rollout_unparsed", "prefix_shared", "gold"):
            row.pop(name)  # written before the columns existed: null
        nodes.append(row)
    nodes.append(node_row("boolq", "s", "t", "q0", 0, 3, prefix_shared=True))  # a value present is kept
    questions = [{"task": "boolq", "student": "s", "question_id": "q0", "rollout_id": r, "prompt_tokens": 3,
                  "response": "x", "response_tokens": len(tokens), "response_token_ids": tokens,
                  "finish_reason": "eos", "extracted": extracted, "gold": "yes", "correct": correct,
                  "grpo_advantage": 0.0} for r, (tokens, correct, extracted) in ROLLOUTS.items()]
    write_table(rows_to_table(nodes, NODE_SCHEMA), tmp_path / "nodes.parquet")
    write_table(rows_to_table(questions, QUESTION_SCHEMA), tmp_path / "questions.parquet")
    loaded, _, _ = load_run(tmp_path)
    for row in loaded.iloc[:-1].itertuples():
        assert row.prefix_shared == EXPECTED[(row.rollout_id, row.position)], (row.rollout_id, row.position)
        assert row.rollout_unparsed == (row.rollout_id == 2) and row.gold == "yes"
    assert loaded.iloc[-1].prefix_shared == True  # noqa: E712
    assert isinstance(loaded, pd.DataFrame)


def test_divergence_columns_have_one_owner():
    import re

    import pyarrow as pa
    import torch

    from harness.diagnostic.alignment import divergences
    from harness.render import plots
    from harness.reports import analysis
    from harness.storage.records import DIVERGENCE_COLUMNS

    # METHOD's record contract, written out: a rename in the owner fails here
    assert DIVERGENCE_COLUMNS == ("kl_student_teacher", "kl_teacher_student", "l2", "cos_pq", "tv", "topk_shared_mass")
    assert all(NODE_SCHEMA.field(name).type == pa.float64() for name in DIVERGENCE_COLUMNS)
    logp = torch.log_softmax(torch.tensor([1.0, 0.5, -1.0, 2.0]), -1)
    logq = torch.log_softmax(torch.tensor([0.0, 1.5, -0.5, 1.0]), -1)
    assert tuple(divergences(logp, logq)) == DIVERGENCE_COLUMNS
    assert analysis.DIVERGENCES == DIVERGENCE_COLUMNS and set(plots.DIVERGENCE_LABELS) == set(DIVERGENCE_COLUMNS)
    # and no other module of the package spells a column name as a string literal
    package = ROOT / "harness"
    spelled = re.compile("|".join(rf"[\"']{name}[\"']" for name in DIVERGENCE_COLUMNS))
    others = [p.name for p in package.rglob("*.py") if p.name != "records.py" and spelled.search(p.read_text())]
    assert others == []
