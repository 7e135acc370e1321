"""The on-disk data contract: column schemas of ``nodes.parquet`` and ``questions.parquet`` (METHOD.md).

Both files are written through pyarrow with these explicit schemas so that every run, and every reader
(pandas, polars, the leaderboard), sees the same types. Writes are atomic (temp file + rename), durable unless
asked not to be (fsync of the file before the rename and of its directory after), every parquet page carries a
checksum that reading verifies (:func:`read_table`), and a failed write names its file
(:class:`RecordWriteError`). Reading a run back (:func:`load_run`) turns a damaged file into one paragraph saying
how to rebuild it (:class:`DamagedRecordsError`).
"""
from __future__ import annotations

import json
import os
import shlex
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from harness.api.errors import OpdError

if TYPE_CHECKING:
    import pandas

PARTS_DIR = "parts"  # RUN_DIR/parts/<key>.nodes.parquet and <key>.questions.parquet: one question each
LOSS_NAMES = ("rkl", "fkl", "jsd", "sampled", "grpo")  # the losses every record carries an alignment for
REFERENCE_LOSS = "grpo"  # the teacher-free reference among them (GRPO's direction: the task's reward, no teacher)
VALIDATION_CONTROL = "control"  # opd validate's no-training condition, beside REFERENCE_LOSS (validation.json)
# the teacher-student divergence columns of nodes.parquet (METHOD, Alignment), each spelled here only: written by
# harness.diagnostic.alignment.divergences, read by analysis, findings, plots and the viewer
KL_STUDENT_TEACHER = "kl_student_teacher"  # full-vocab KL(p||q) (= lbar)
KL_TEACHER_STUDENT = "kl_teacher_student"  # full-vocab KL(q||p)
L2 = "l2"  # ||p - q||_2
COS_PQ = "cos_pq"  # cosine(p, q) of the distributions
TV = "tv"  # total variation
TOPK_SHARED_MASS = "topk_shared_mass"  # p-mass on the union of both top-SHARED_TOP_K sets
SHARED_TOP_K = 10  # METHOD: the union of both top-10 sets
DIVERGENCE_COLUMNS = (KL_STUDENT_TEACHER, KL_TEACHER_STUDENT, L2, COS_PQ, TV, TOPK_SHARED_MASS)  # schema order

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
        # the rollout's response has no parseable answer (graded incorrect): a third outcome, counted apart from a
        # wrong answer wherever correct and incorrect paths are compared (METHOD, Categorical answers)
        ("rollout_unparsed", pa.bool_()),
        # the prefix y_<i is also the prefix of another rollout of the question with another outcome (always so at
        # position 0 when the outcomes differ): the same state on both sides, so the node enters no correct-vs-
        # incorrect contrast (METHOD, Alignment: ok_minus_bad)
        ("prefix_shared", pa.bool_()),
        ("gold", pa.string()),  # the question's gold answer (walign by gold label for categorical tasks)
        ("support_token_ids", pa.list_(_i32)),  # C(u): sampled token first, then top-K, then teacher tops
        ("sampled_token_id", _i32),
        ("grpo_advantage", _f64),
        ("student_logprobs", pa.list_(_f64)),  # log p_k, k in C(u)
        ("teacher_logprobs", pa.list_(_f64)),  # log q_k, k in C(u); null where the context could not be built
        *((name, _f64) for name in DIVERGENCE_COLUMNS),  # the divergences, commented above
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
        # the teacher's prompt text before the chat template (what the teacher was shown); null when it is the
        # student's own prompt or could not be built (``context_ok`` tells which)
        ("context_text", pa.string()),
        ("logits_finite", pa.bool_()),  # False: the teacher's logits at the node were NaN/inf (row marked, excluded)
        *[(f"align_{name}", _f64) for name in LOSS_NAMES],  # NaN when uninformative (or no context)
        *[(f"dnorm_{name}", _f64) for name in LOSS_NAMES],  # ||d|| on support+tail: 0 shows a zero gradient
        # the alignment with g* estimated from each half of the continuations (METHOD, Reliability)
        *[(f"align_{name}_{half}", _f64) for name in LOSS_NAMES for half in ("a", "b")],
        ("selection", pa.string()),  # how the node was chosen: "windows" (METHOD) or "screened" (harness.diagnostic.selection)
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
        ("prompt", pa.string()),  # the question's prompt text as the student saw it, before the chat template
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
OPTIONAL_COLUMNS = frozenset({"rollout_unparsed", "prefix_shared", "gold",
                              "context_choice", "logits_finite", "nonfinite_positions", "prompt", "context_text",
                              "selection", "screen_correct", "screen_trials",
                              "succ_correct_a", "succ_trials_a", "succ_correct_b", "succ_trials_b",
                              *(f"align_{name}_{half}" for name in LOSS_NAMES for half in ("a", "b"))})


OUTCOMES = ("correct", "incorrect", "unparsed")  # a rollout's outcome; "unparsed": no answer found (graded wrong)


def outcome(correct: bool | None, extracted: str | None) -> str | None:
    """The rollout's outcome of :data:`OUTCOMES` from its grade and extracted answer (None: not graded)."""
    if correct is None or (isinstance(correct, float) and correct != correct):  # None or NaN: not graded
        return None
    # pandas reads a missing answer as None or NaN
    return "correct" if correct else "unparsed" if not isinstance(extracted, str) or extracted == "" else "incorrect"


def prefix_shared(responses: Sequence[Sequence[int]], outcomes: Sequence[str | None], rollout: int,
                  position: int) -> bool:
    """Whether ``responses[rollout][:position]`` is also the prefix of a rollout of the question with another
    outcome (at ``position`` 0 every rollout shares the empty prefix). Where it is, the node is the same state on
    a rollout that ended otherwise: it cannot separate one outcome from the other."""
    prefix = list(responses[rollout][:position])
    return any(other != rollout and outcomes[other] != outcomes[rollout] and len(tokens) >= position
               and list(tokens[:position]) == prefix for other, tokens in enumerate(responses))


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


class RecordWriteError(OpdError, OSError):
    """A record file could not be written: the disk is full, a quota is reached, the file system is read-only...

    Carries the failed file (``filename``) and the operating system's ``errno``/``strerror``; whoever knows the
    run turns it into a message saying what was kept and how to resume (:mod:`harness.workflows.runner`)."""

    def __str__(self) -> str:
        return f"Could not write {self.filename}: {self.strerror} (errno {self.errno})."


class DamagedRecordsError(OpdError, ValueError):
    """A record file of a finished run cannot be read (truncated, emptied, not parquet); the message says how to
    rebuild it."""


# errors a damaged parquet or JSON file raises on reading (pyarrow: ArrowInvalid is a ValueError, a bad page header
# an OSError; json: JSONDecodeError is a ValueError, bad bytes a UnicodeDecodeError, also a ValueError)
READ_ERRORS = (OSError, ValueError, pa.ArrowException)


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new entry in ``directory`` survive a power loss (POSIX: the entry lives in the directory)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_directory(directory: Path, durable: bool = True) -> None:
    """``mkdir -p directory``; ``durable``: each folder it creates is recorded in its parent before we return."""
    directory = Path(directory)
    created = [folder for folder in (directory, *directory.parents) if not folder.exists()]
    directory.mkdir(parents=True, exist_ok=True)
    if durable:
        for folder in created:
            fsync_directory(folder.parent)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_atomically(path: Path, write: Callable[[str], None], durable: bool) -> None:
    """Write through ``write(temporary path)`` then rename over ``path``: a reader sees the old file or the new one,
    never half of one. ``durable``: the data is on disk before the rename and the rename is on disk before we
    return, so a file reported written survives a power loss (without it, ext4/xfs may keep the rename but not
    the data, leaving an empty or truncated file). Any OS error becomes a :class:`RecordWriteError` naming ``path``.
    """
    tmp = None
    try:
        make_directory(path.parent, durable)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        if durable:
            _fsync_file(tmp)
        os.replace(tmp, path)
        if durable:
            fsync_directory(path.parent)
    except OSError as error:
        raise RecordWriteError(error.errno, _reason(error), str(path)) from error
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)  # a failed write leaves no temporary file behind (on a full disk, it holds space)


def _reason(error: OSError) -> str:
    if error.errno:
        return os.strerror(error.errno)  # pyarrow's messages wrap it in "Error writing bytes to file. Detail: ..."
    return error.strerror or str(error)


def write_table(table: pa.Table, path: Path, durable: bool = True) -> None:
    """Write parquet atomically (and, unless ``durable=False``, durably: see :func:`_replace_atomically`).

    Every page carries a CRC-32 (a standard parquet feature other readers ignore): parquet has no other integrity
    check, so a byte flipped inside a page would otherwise read back as different numbers (:func:`read_table`)."""
    _replace_atomically(Path(path), lambda tmp: pq.write_table(table, tmp, write_page_checksum=True), durable)


def read_table(path: Path, schema: pa.Schema | None = None) -> pa.Table:
    """``pq.read_table`` verifying the page checksums :func:`write_table` writes (files without them read as
    before). A damaged file raises one of :data:`READ_ERRORS`."""
    return pq.read_table(path, schema=schema, page_checksum_verification=True)


def write_json(data: Mapping[str, Any], path: Path, durable: bool = True) -> None:
    """Write JSON atomically and durably, like :func:`write_table`."""
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    _replace_atomically(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), durable)


def read_nodes(run_dir: Path):
    """``nodes.parquet`` of a run as a pandas DataFrame (a damaged file: :class:`DamagedRecordsError`)."""
    return _read_parquet(Path(run_dir) / "nodes.parquet").to_pandas()


def read_questions(run_dir: Path):
    return _read_parquet(Path(run_dir) / "questions.parquet").to_pandas()


def has_parts(run_dir: Path) -> bool:
    """Whether ``run_dir`` keeps per-question parts that the merged records can be rebuilt from."""
    return any((Path(run_dir) / PARTS_DIR).glob("*.questions.parquet"))


def _read_parquet(path: Path) -> pa.Table:
    try:
        return read_table(path)
    except READ_ERRORS as error:
        raise _damaged(path, error) from error


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except READ_ERRORS as error:
        raise _damaged(path, error) from error


def _damaged(path: Path, error: BaseException) -> DamagedRecordsError:
    """One paragraph: which file, what the reader said, and how to get it back."""
    run_dir = path.parent
    quoted = shlex.quote(str(run_dir))
    if path.suffix == ".parquet" and has_parts(run_dir):
        fix = (f"The merged records can be rebuilt from the run's per-question parts in {run_dir / PARTS_DIR}: "
               f"run `opd rebuild {quoted}` (running the `opd run` command that made it again also rewrites them).")
    elif path.suffix == ".parquet":
        fix = (f"{run_dir} keeps no per-question parts ({PARTS_DIR}/) to rebuild it from: copy the run again from "
               f"where it came from, or run the `opd run` command that made it again with --overwrite.")
    elif path.name == "run.json":
        fix = ("It holds the run's configuration: restore it from a copy of the run, or move it aside to read the "
               "records without it (then `opd run` no longer resumes into this directory).")
    else:
        fix = "Restore it from a copy, regenerate it, or move it aside to read the run without it."
    detail = " ".join(str(error).split()) or type(error).__name__
    return DamagedRecordsError(f"{path} cannot be read ({detail}): the file is damaged, e.g. by a partial copy or "
                               f"a power loss while it was written. {fix}")


def load_run(run_dir) -> tuple["pandas.DataFrame", "pandas.DataFrame", dict]:
    """``(nodes, questions, run_json)`` of a run directory; a missing ``run.json`` reads as ``{}``.

    An ``accuracy.json`` next to the records is read into ``nodes.attrs["accuracy"]``. A missing record file is a
    ``FileNotFoundError``, a damaged one a :class:`DamagedRecordsError`; both say how to get the file back.
    """
    run_dir = Path(run_dir)
    for name in ("nodes.parquet", "questions.parquet"):
        if not (run_dir / name).is_file():
            rebuild = (f"; its per-question parts are there: `opd rebuild {shlex.quote(str(run_dir))}` writes it"
                       if has_parts(run_dir) else "")
            raise FileNotFoundError(
                f"{run_dir / name} not found: {run_dir} is not a finished run directory "
                f"(create one with `opd run --out RUN_DIR`){rebuild}"
            )
    run_json_path = run_dir / "run.json"
    run_json = _read_json(run_json_path) if run_json_path.is_file() else {}
    nodes = read_nodes(run_dir)
    questions = read_questions(run_dir)
    nodes = with_outcome_columns(nodes, questions)
    accuracy_path = run_dir / "accuracy.json"
    if accuracy_path.is_file():
        # carried on the frame so that `leaderboard(nodes)` (as the CLI calls it) shows the accuracy column
        nodes.attrs["accuracy"] = _read_json(accuracy_path)
    return nodes, questions, run_json


DERIVED_COLUMNS = ("rollout_unparsed", "prefix_shared", "gold")  # node columns questions.parquet also determines


def with_outcome_columns(nodes: "pandas.DataFrame", questions: "pandas.DataFrame") -> "pandas.DataFrame":
    """``nodes`` with :data:`DERIVED_COLUMNS` filled from ``questions.parquet`` where the records leave them null
    (runs written before the columns existed): the outcome from each rollout's grade and extracted answer, the
    gold, and ``prefix_shared`` from the rollouts' token ids (:func:`prefix_shared`). Values present are kept."""
    import pandas as pd

    if nodes.empty or questions.empty or not all(name in nodes for name in DERIVED_COLUMNS):
        nodes = nodes.copy()
        for name in DERIVED_COLUMNS:
            if name not in nodes:
                nodes[name] = pd.Series([None] * len(nodes), index=nodes.index, dtype=object)
    if nodes.empty or questions.empty or not nodes[list(DERIVED_COLUMNS)].isna().any().any():
        return nodes
    nodes = nodes.copy()
    key = ["task", "student", "question_id", "rollout_id"]
    derived = {}
    for (task, student, question), group in questions.groupby(key[:3], sort=False):
        group = group.sort_values("rollout_id")
        ids = [int(r) for r in group["rollout_id"]]
        tokens = [list(t) if t is not None else [] for t in group["response_token_ids"]]
        outcomes = [outcome(c, e) for c, e in zip(group["correct"], group["extracted"])]
        derived[(task, student, question)] = (ids, tokens, outcomes, group["gold"].iloc[0])
    unparsed, shared, gold = [], [], []
    for row in nodes[[*key, "position"]].itertuples(index=False):
        found = derived.get((row.task, row.student, row.question_id))
        if found is None or int(row.rollout_id) not in found[0]:
            unparsed.append(None), shared.append(None), gold.append(None)
            continue
        ids, tokens, outcomes, question_gold = found
        index = ids.index(int(row.rollout_id))
        unparsed.append(None if outcomes[index] is None else outcomes[index] == "unparsed")
        shared.append(prefix_shared(tokens, outcomes, index, int(row.position)))
        gold.append(question_gold)
    for name, values in (("rollout_unparsed", unparsed), ("prefix_shared", shared), ("gold", gold)):
        fill = pd.Series(values, index=nodes.index, dtype=object)
        nodes[name] = nodes[name].astype(object).where(nodes[name].notna(), fill)
    return nodes
