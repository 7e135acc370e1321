"""What durable commits cost (issue 16): one question's record writes with fsync against the same writes without.

Per question a run writes four files: its two parts (``parts/<key>.nodes.parquet``, ``.questions.parquet``), which
are the commit and are fsynced (the file before its rename, the directory after), and the two merged files, which
are rewritten without fsync (resuming or ``opd rebuild`` rewrites them from the parts; they are fsynced once when
the run completes). The records have a realistic size (G=8 rollouts, ~12 nodes each, 2 teachers, 64-token
responses; merged files of a 20-question run) so that parquet encoding, which every way pays, is in the timings.
For the record it also times fsyncing the merged files too, the cost that choice avoids (it grows with the run).
The absolute cost per question is what matters: a question's diagnosis takes seconds to minutes.
"""
from __future__ import annotations

import os
import random
import statistics
import time
from pathlib import Path

import pyarrow as pa
import pytest

from harness.storage.records import (
    DIVERGENCE_COLUMNS,
    LOSS_NAMES,
    NODE_SCHEMA,
    QUESTION_SCHEMA,
    rows_to_table,
    write_table,
)

ROLLOUTS, NODES_PER_ROLLOUT, TEACHERS, RESPONSE_TOKENS, SUPPORT = 8, 12, 2, 64, 5
MERGED_QUESTIONS, ROUNDS = 20, 15


def _node_rows(question: int, rng: random.Random) -> list[dict]:
    rows = []
    for teacher in range(TEACHERS):
        for rollout in range(ROLLOUTS):
            for node in range(NODES_PER_ROLLOUT):
                floats = {name: rng.random() for name in ("depth_norm", "priority", "entropy", "grpo_advantage",
                                                          *DIVERGENCE_COLUMNS, "jsd_rbar", "ideal_norm")}
                rows.append({
                    "task": "boolq", "student": "smollm2-135m", "teacher": f"teacher-{teacher}",
                    "question_id": f"boolq-{question}", "rollout_id": rollout, "position": node,
                    "rollout_len": RESPONSE_TOKENS, "window": node // 2, "rollout_correct": rng.random() < 0.5,
                    "support_token_ids": [rng.randrange(49152) for _ in range(SUPPORT)],
                    "sampled_token_id": rng.randrange(49152),
                    "student_logprobs": [-rng.random() * 5 for _ in range(SUPPORT)],
                    "teacher_logprobs": [-rng.random() * 5 for _ in range(SUPPORT)],
                    "succ_correct": [rng.randrange(5) for _ in range(SUPPORT)], "succ_trials": [4] * SUPPORT,
                    "ideal_grad": [rng.random() - 0.5 for _ in range(SUPPORT + 1)],
                    "informative": True, "context_ok": True, "context_choice": None, "logits_finite": True,
                    **{f"align_{name}": rng.random() * 2 - 1 for name in LOSS_NAMES},
                    **{f"dnorm_{name}": rng.random() for name in LOSS_NAMES},
                    **floats,
                })
    return rows


def _question_rows(question: int, rng: random.Random) -> list[dict]:
    return [{
        "task": "boolq", "student": "smollm2-135m", "question_id": f"boolq-{question}", "rollout_id": rollout,
        "prompt_tokens": 300, "response": "Reasoning: the passage says so. " * 8, "response_tokens": RESPONSE_TOKENS,
        "response_token_ids": [rng.randrange(49152) for _ in range(RESPONSE_TOKENS)], "finish_reason": "eos",
        "extracted": "yes", "gold": "yes", "correct": rng.random() < 0.5, "grpo_advantage": 0.0,
        "nonfinite_positions": 0,
    } for rollout in range(ROLLOUTS)]


@pytest.fixture(scope="module")
def question_tables() -> tuple[pa.Table, pa.Table, pa.Table, pa.Table]:
    """(nodes part, questions part, merged nodes, merged questions) of a 20-question run."""
    rng = random.Random(0)
    nodes = [rows_to_table(_node_rows(q, rng), NODE_SCHEMA) for q in range(MERGED_QUESTIONS)]
    questions = [rows_to_table(_question_rows(q, rng), QUESTION_SCHEMA) for q in range(MERGED_QUESTIONS)]
    return nodes[-1], questions[-1], pa.concat_tables(nodes), pa.concat_tables(questions)


def _filesystem(path: Path) -> str:
    """The mount type holding ``path`` (fsync on tmpfs costs nothing, on a real disk it waits for the device)."""
    best = ("", "?")
    for line in Path("/proc/mounts").read_text().splitlines() if Path("/proc/mounts").exists() else []:
        _, mount_point, kind, *_ = line.split()
        if str(path.resolve()).startswith(mount_point) and len(mount_point) >= len(best[0]):
            best = (mount_point, kind)
    return best[1]


def test_commit_with_fsync_vs_without(benchmark, question_tables, tmp_path):
    nodes_part, questions_part, merged_nodes, merged_questions = question_tables
    parts = tmp_path / "parts"

    def commit(parts_durable: bool, merged_durable: bool) -> None:  # RunDirectory.commit + merge of one question
        write_table(nodes_part, parts / "000019-boolq-19.nodes.parquet", durable=parts_durable)
        write_table(questions_part, parts / "000019-boolq-19.questions.parquet", durable=parts_durable)
        write_table(merged_nodes, tmp_path / "nodes.parquet", durable=merged_durable)
        write_table(merged_questions, tmp_path / "questions.parquet", durable=merged_durable)

    def timed(*way: bool) -> list[float]:
        times = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            commit(*way)
            times.append(time.perf_counter() - start)
        return times

    commit(True, True)  # warm the page cache and the directory entries
    # interleaved, so that a busy moment of the machine hits every way alike
    plain, everything = timed(False, False), timed(True, True)
    benchmark.pedantic(commit, args=(True, False), rounds=ROUNDS, iterations=1)  # what the runner does
    plain += timed(False, False)
    everything += timed(True, True)
    as_run_ms, plain_ms = benchmark.stats.stats.median * 1e3, statistics.median(plain) * 1e3
    everything_ms = statistics.median(everything) * 1e3
    benchmark.extra_info.update(
        plain_ms_per_question=round(plain_ms, 2), durable_ms_per_question=round(as_run_ms, 2),
        fsync_ms_per_question=round(as_run_ms - plain_ms, 2), ratio=round(as_run_ms / plain_ms, 2),
        fsync_ms_if_merged_files_too=round(everything_ms - plain_ms, 2), fsyncs_per_question=4,
        node_rows_per_question=nodes_part.num_rows, merged_node_rows=merged_nodes.num_rows,
        part_bytes=sum(os.path.getsize(p) for p in parts.iterdir()),
        merged_bytes=os.path.getsize(tmp_path / "nodes.parquet") + os.path.getsize(tmp_path / "questions.parquet"),
        filesystem=_filesystem(tmp_path),
    )
