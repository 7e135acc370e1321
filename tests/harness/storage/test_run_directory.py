"""A run's directory (harness.storage.run_directory) on its own: part files named safely, merged in question order,
damaged parts moved aside (never deleted), the identity in run.json deciding resume / grow / add teachers / refuse,
and one writer at a time. Expected files and keys are written out by hand; end-to-end runs are in
tests/harness/workflows/test_runner/."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from harness.api.errors import ConfigError
from harness.storage.records import PARTS_DIR
from harness.storage.run_directory import DAMAGED_DIR, RunDirectory, RunIdentity
from tests.helpers import node_row

IDENTITY = RunIdentity(fingerprint="f-all", sampling="f-sampling", teachers=("self",))


def question_row(qid: str) -> dict:
    return {"task": "boolq", "student": "s", "question_id": qid, "rollout_id": 0, "prompt": "p?", "prompt_tokens": 2,
            "response": "yes", "response_tokens": 1, "response_token_ids": [1], "finish_reason": "eos",
            "extracted": "yes", "gold": "yes", "correct": True, "grpo_advantage": 0.0, "nonfinite_positions": 0}


def commit(run_dir: RunDirectory, index: int, qid: str) -> None:
    run_dir.commit(index, qid, [node_row("boolq", "s", "self", qid, 0, 0)], [question_row(qid)])


def write_run_json(path, fingerprint="f-all", sampling="f-sampling", teachers=("self",)):
    (path / "run.json").write_text(json.dumps({"fingerprint": fingerprint, "sampling_fingerprint": sampling,
                                               "config": {"teachers": list(teachers)}}))


def test_part_keys_number_the_question_and_keep_its_id_out_of_path_syntax():
    assert RunDirectory.part_key(3, "q-7") == "000003-q-7"
    assert RunDirectory.part_key(12, "../a b/c") == "000012-.._a_b_c"
    assert RunDirectory.part_key(0, "x" * 100) == "000000-" + "x" * 80


def test_parts_merge_in_question_order_and_count_as_done_on_reopening(tmp_path):
    out = tmp_path / "run"
    with RunDirectory(out, IDENTITY, overwrite=False) as run_dir:
        commit(run_dir, 2, "c")
        commit(run_dir, 0, "a")
        run_dir.merge()
    assert pq.read_table(out / "nodes.parquet").column("question_id").to_pylist() == ["a", "c"]
    assert pq.read_table(out / "questions.parquet").column("question_id").to_pylist() == ["a", "c"]
    write_run_json(out)
    with RunDirectory(out, IDENTITY, overwrite=False) as again:
        assert again.done == {"000000-a", "000002-c"}
        assert again.forget_from(1) == 1 and again.done == {"000000-a"}
    assert sorted(p.name for p in (out / PARTS_DIR).glob("*.parquet")) == ["000000-a.nodes.parquet",
                                                                            "000000-a.questions.parquet"]


def test_a_damaged_part_is_moved_aside_with_its_sibling_and_its_question_is_not_done(tmp_path):
    out = tmp_path / "run"
    with RunDirectory(out, IDENTITY, overwrite=False) as run_dir:
        commit(run_dir, 0, "a")
        commit(run_dir, 1, "b")
    write_run_json(out)
    parts = out / PARTS_DIR
    for _ in range(2):  # damaged twice: both copies kept
        (parts / "000001-b.nodes.parquet").write_bytes(b"PAR1 truncated")
        with RunDirectory(out, IDENTITY, overwrite=False) as again:
            assert again.done == {"000000-a"}  # its readable questions part went with it: b is to be redone
            assert [p.parent.name for p in again.set_aside] == [DAMAGED_DIR] * 2
            assert not (parts / "000001-b.questions.parquet").exists()
        with RunDirectory(out, IDENTITY, overwrite=False) as run_dir:
            commit(run_dir, 1, "b")
    assert sorted(p.name for p in (parts / DAMAGED_DIR).iterdir()) == [
        "000001-b.nodes.2.parquet", "000001-b.nodes.parquet", "000001-b.questions.2.parquet",
        "000001-b.questions.parquet"]


def test_the_identity_in_run_json_decides_resume_add_teachers_grow_or_refuse(tmp_path):
    out = tmp_path / "run"
    with RunDirectory(out, IDENTITY, overwrite=False) as run_dir:
        commit(run_dir, 0, "a")
    write_run_json(out)
    # the same configuration: resumes, keeping its parts
    with RunDirectory(out, IDENTITY, overwrite=False) as same:
        assert same.done == {"000000-a"} and same.added_teachers == ()
    # more teachers on the same sampling: the records are rebuilt (parts gone), the new teachers named
    more = RunIdentity("f-more", "f-sampling", ("self", "self:correct-demo"))
    with RunDirectory(out, more, overwrite=False) as added:
        assert added.added_teachers == ("self:correct-demo",) and added.done == set()
        commit(added, 0, "a")
    write_run_json(out, fingerprint="f-more", teachers=more.teachers)
    # the same run at a larger --limit: grows in place
    grown = RunIdentity("f-larger", "f-sampling-larger", more.teachers, fewer_questions=(1, "f-more"))
    with RunDirectory(out, grown, overwrite=False) as growing:
        assert growing.grown_from == 1 and growing.done == {"000000-a"}
    # fewer teachers, other sampling: refused, nothing touched
    with pytest.raises(ConfigError, match="different configuration"):
        RunDirectory(out, RunIdentity("f-other", "f-other-sampling", ("self",)), overwrite=False).__enter__()
    (out / "run.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot be read"):
        RunDirectory(out, IDENTITY, overwrite=False).__enter__()
    assert (out / PARTS_DIR / "000000-a.questions.parquet").is_file()
    with RunDirectory(out, IDENTITY, overwrite=True) as replaced:
        assert replaced.done == set()


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    out = tmp_path / "run"
    with RunDirectory(out, IDENTITY, overwrite=False):
        write_run_json(out)  # as the runner does first: the same run, so only the lock can refuse the second
        with pytest.raises(ConfigError, match="Another `opd run` is writing"):
            RunDirectory(out, IDENTITY, overwrite=False).__enter__()
    with RunDirectory(out, IDENTITY, overwrite=False):  # released on leaving
        pass


def test_an_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        RunDirectory(tmp_path / "file", IDENTITY, overwrite=False).__enter__()
