"""The on-disk data contract: column schemas of ``nodes.parquet`` and ``questions.parquet`` (METHOD.md).

Both files are written through pyarrow with these explicit schemas so that every run, and every reader
(pandas, polars, the leaderboard), sees the same types. Writes are atomic (temp file + rename).
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    import pandas

LOSS_NAMES = ("rkl", "fkl", "jsd", "sampled", "grpo")  # the losses every record carries an alignment for

_f64 = pa.float64()
_i32 = pa.int32()

NODE_SCHEMA = pa.schema(
    [
        ("task", pa.string()),
        ("student", pa.string()),
        ("teacher", pa.string()),
        ("question_id", pa.string()),
        ("rollout_id", _i32),
        ("position", _i32),  # index of the node's token within the response y (0-based)
        ("rollout_len", _i32),  # len(y) in tokens
        ("depth_norm", _f64),  # position / rollout_len
        ("window", _i32),  # depth window index: [0,1), [1,2), [2,4), [4,8), ...
        ("priority", _f64),  # the selection score the node was chosen with
        ("entropy", _f64),  # student entropy at the node (nats)
        ("rollout_correct", pa.bool_()),
        ("support_token_ids", pa.list_(_i32)),  # C(u): sampled token first, then top-K, then teacher tops
        ("sampled_token_id", _i32),
        ("grpo_advantage", _f64),
        ("student_logprobs", pa.list_(_f64)),  # log p_k, k in C(u)
        ("teacher_logprobs", pa.list_(_f64)),  # log q_k, k in C(u); null where the context could not be built
        ("kl_student_teacher", _f64),  # full-vocab KL(p||q) (= lbar)
        ("kl_teacher_student", _f64),  # full-vocab KL(q||p)
        ("l2", _f64),  # ||p - q||_2
        ("cos_pq", _f64),  # cosine(p, q) of the distributions
        ("tv", _f64),  # total variation
        ("topk_shared_mass", _f64),  # p-mass on the union of both top-10 sets
        ("jsd_rbar", _f64),  # full-vocab sum_k p_k log(p_k / M_k), needed to recompute the jsd direction
        ("succ_correct", pa.list_(_i32)),
        ("succ_trials", pa.list_(_i32)),
        # the same counts from each half of the continuations alone (rollout in neither): split-half reliability
        ("succ_correct_a", pa.list_(_i32)),
        ("succ_trials_a", pa.list_(_i32)),
        ("succ_correct_b", pa.list_(_i32)),
        ("succ_trials_b", pa.list_(_i32)),
        ("ideal_grad", pa.list_(_f64)),  # g* on the support, tail entry last
        ("ideal_norm", _f64),  # ||g*||, the walign weight
        ("informative", pa.bool_()),
        ("context_ok", pa.bool_()),  # False: the teacher's context could not be built for this question
        ("context_choice", pa.string()),  # the context a choosing teacher (idp) used here; null for others
        ("logits_finite", pa.bool_()),  # False: the teacher's logits at the node were NaN/inf (row marked, excluded)
        *[(f"align_{name}", _f64) for name in LOSS_NAMES],  # NaN when uninformative (or no context)
        *[(f"dnorm_{name}", _f64) for name in LOSS_NAMES],  # ||d|| on support+tail: 0 shows a zero gradient
        # the alignment with g* estimated from each half of the continuations (METHOD, Reliability)
        *[(f"align_{name}_{half}", _f64) for name in LOSS_NAMES for half in ("a", "b")],
        ("selection", pa.string()),  # how the node was chosen: "windows" (METHOD) or "screened" (harness.selection)
        # screened: the screening continuations per support token that decided to keep the node (never in S_hat);
        # null under windows
        ("screen_correct", pa.list_(_i32)),
        ("screen_trials", pa.list_(_i32)),
    ]
)

QUESTION_SCHEMA = pa.schema(
    [
        ("task", pa.string()),
        ("student", pa.string()),
        ("question_id", pa.string()),
        ("rollout_id", _i32),
        ("prompt_tokens", _i32),
        ("response", pa.string()),
        ("response_tokens", _i32),
        ("response_token_ids", pa.list_(_i32)),  # the exact tokens (text round-trips are not exact for every tokenizer)
        ("finish_reason", pa.string()),  # "eos" | "answer" (answer fixed, stopped early) | "length"
        ("extracted", pa.string()),
        ("gold", pa.string()),
        ("correct", pa.bool_()),
        ("grpo_advantage", _f64),
        ("nonfinite_positions", _i32),  # response positions whose student logits were NaN/inf (never nodes)
    ]
)


# may be left out of a row (null): columns added after the first record files, so older rows still load
OPTIONAL_COLUMNS = frozenset({"context_choice", "logits_finite", "nonfinite_positions",
                              "succ_correct_a", "succ_trials_a", "succ_correct_b", "succ_trials_b",
                              *(f"align_{name}_{half}" for name in LOSS_NAMES for half in ("a", "b"))})


def rows_to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts keyed by column) -> a table with exactly ``schema``; a missing required column is an error."""
    rows = list(rows)
    columns = {}
    for name in schema.names:
        try:
            columns[name] = [row.get(name) if name in OPTIONAL_COLUMNS else row[name] for row in rows]
        except KeyError:
            raise KeyError(f"record is missing column {name!r}") from None
    return pa.Table.from_pydict(columns, schema=schema)


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)


def write_table(table: pa.Table, path: Path) -> None:
    """Write parquet atomically: a reader never sees a half-written file."""
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(data: Mapping[str, Any], path: Path) -> None:
    fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=False, default=str)
            handle.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_nodes(run_dir: Path):
    """``nodes.parquet`` of a run as a pandas DataFrame."""
    return pq.read_table(Path(run_dir) / "nodes.parquet").to_pandas()


def read_questions(run_dir: Path):
    return pq.read_table(Path(run_dir) / "questions.parquet").to_pandas()


def load_run(run_dir) -> tuple["pandas.DataFrame", "pandas.DataFrame", dict]:
    """``(nodes, questions, run_json)`` of a run directory; a missing ``run.json`` reads as ``{}``.

    An ``accuracy.json`` next to the records is read into ``nodes.attrs["accuracy"]``.
    """
    run_dir = Path(run_dir)
    for name in ("nodes.parquet", "questions.parquet"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(
                f"{run_dir / name} not found: {run_dir} is not a finished run directory "
                f"(create one with `opd run --out RUN_DIR`)"
            )
    run_json_path = run_dir / "run.json"
    run_json = json.loads(run_json_path.read_text()) if run_json_path.is_file() else {}
    nodes = read_nodes(run_dir)
    accuracy_path = run_dir / "accuracy.json"
    if accuracy_path.is_file():
        # carried on the frame so that `leaderboard(nodes)` (as the CLI calls it) shows the accuracy column
        nodes.attrs["accuracy"] = json.loads(accuracy_path.read_text())
    return nodes, read_questions(run_dir), run_json
