"""The GSM8K cost benchmark's bookkeeping (benchmarks/test_bench_gsm8k_cost.py, benchmarks/replay.py): tokens by
finish reason and kind, and nodes at a state an earlier rollout's node already branches from, on hand-made data."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from harness.sampling.generation import Branch, Generated

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the benchmarks import their helpers (local, replay) by name
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_call_recorder_counts_tokens_by_finish_reason_and_kind(monkeypatch):
    replay = _module("replay", monkeypatch)
    replies = [[Generated((1, 2, 3), "length"), Generated((4,), "answer")],
               [Generated((5, 6), "eos"), Generated((7, 8, 9, 10), "length"), Generated((), "length")]]
    recorder = replay.CallRecorder(lambda lm, sources, branches, **kwargs: replies.pop(0))
    recorder(None, [], [Branch(5, None, 3), Branch(5, None, 3)])  # two rollout rows (first token sampled)
    recorder(None, [], [Branch(7, 11, 2), Branch(9, 12, 4), Branch(4, 13, 0)], max_rows=2)  # three forced rows
    assert recorder.calls == [(2, 5, [3, 1]), (3, 9, [2, 4, 0])]
    assert recorder.slots == [2, 2]
    # call 1: 2 slots x 3 steps; call 2: rows 2 and 4 start, the empty row takes the first free slot: 2 x 4 steps
    assert recorder.slot_utilization() == 10 / (2 * 3 + 2 * 4)
    assert recorder.tokens == 10
    assert dict(recorder.tokens_by_kind) == {"rollout": 4, "continuation": 6}
    assert dict(+recorder.tokens_by_finish) == {"rollout_length": 3, "rollout_answer": 1, "continuation_eos": 2,
                                                "continuation_length": 4}


def test_schedule_steps_admits_waiting_rows_into_the_first_free_slot(monkeypatch):
    replay = _module("replay", monkeypatch)
    assert replay.schedule_steps([4, 1, 1, 2], 2) == 4  # slot 1: 4; slot 2: 1, then 1, then 2
    assert replay.schedule_steps([5, 1], 2) == 5  # the long row decodes alone for its last 4 steps
    assert replay.schedule_steps([1, 1, 5], 2) == 6  # the long row waits for a slot
    assert replay.schedule_steps([3, 3, 3], 8) == 3


def test_repeated_state_nodes_counts_each_state_after_its_first_node(tmp_path, monkeypatch):
    bench = _module("test_bench_gsm8k_cost", monkeypatch)
    # question a: rollouts 0 and 1 share the first two tokens, rollout 2 differs from its first token
    responses = {("a", 0): [5, 6, 7], ("a", 1): [5, 6, 9], ("a", 2): [8, 6, 7], ("b", 0): [5, 6, 7]}
    pq.write_table(pa.table({"question_id": [q for q, _ in responses], "rollout_id": [r for _, r in responses],
                             "response_token_ids": list(responses.values())}), tmp_path / "questions.parquet")
    nodes = [("a", 0, 0), ("a", 1, 0), ("a", 2, 0),  # the empty prefix: one state, two repeats
             ("a", 0, 2), ("a", 1, 2),  # prefix [5, 6] on both: one repeat
             ("a", 2, 1), ("a", 0, 1),  # prefixes [8] and [5]: different states
             ("b", 0, 0)]  # another question's empty prefix: a state of its own
    rows = [node for node in nodes for _ in range(2)]  # two teachers: every node has two rows
    pq.write_table(pa.table({"question_id": [q for q, _, _ in rows], "rollout_id": [r for _, r, _ in rows],
                             "position": [p for _, _, p in rows]}), tmp_path / "nodes.parquet")
    assert bench.repeated_state_nodes(tmp_path) == 3
