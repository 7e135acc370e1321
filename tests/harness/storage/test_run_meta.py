"""harness.storage.run_meta: run.json read through one typed object; what a run.json lacks reads as the defaults."""
from __future__ import annotations

import json

from harness.api.method import Settings
from harness.storage.run_meta import Provenance, RunMeta, SessionNotes
from tests.helpers import FAKES


def test_a_run_json_as_the_runner_writes_it():
    content = {"config": {"task": "boolq", "student": "smollm2-135m", "teachers": ["self"],
                          "settings": {"rollouts": 3, "temperature": 0.7, "jsd_beta": 0.25, "selection": "screened"}},
               "device": "cuda:0", "threads": 4, "resumed_questions": 2, "cache_hits": {"sampled_hits": 5},
               "counts": {"questions": 9, "nodes": 40}, "timings": {"setup_s": 1.5, "total_s": 10.0}}
    run = RunMeta.of(json.loads(json.dumps(content)))  # as the file reads back
    assert (run.task, run.student) == ("boolq", "smollm2-135m")
    assert run.settings == Settings(rollouts=3, temperature=0.7, jsd_beta=0.25, selection="screened")
    assert run.settings.top_k == 4  # not recorded: METHOD's
    assert (run.counts["questions"], run.timings["total_s"]) == (9, 10.0)
    assert run.where == "cuda:0, 4 threads" and run.reused_questions == (2, 5)


def test_the_last_sessions_notes():
    content = {"added_teachers": ["self:correct-demo"], "set_aside_parts": ["parts/000001-q.nodes.parquet"],
               "cache": "/tmp/cache", "cache_hits": {"sampled_hits": 2, "teacher_hits": {"self": 2}},
               "cache_write_error": "could not write /tmp/cache/x (No space left on device)"}
    notes = RunMeta.of(content).session
    assert notes == SessionNotes(added_teachers=("self:correct-demo",),
                                 set_aside_parts=("parts/000001-q.nodes.parquet",), cache="/tmp/cache",
                                 teacher_hits={"self": 2},
                                 cache_write_error="could not write /tmp/cache/x (No space left on device)")
    assert RunMeta.of({"cache": None, "cache_hits": None}).session == SessionNotes()  # --no-cache


def test_missing_and_older_run_json_read_as_defaults():
    assert RunMeta.of({}) == RunMeta()  # no run.json: load_run reads it as {}
    # an older run.json: no settings, null sections, a setting this version does not know
    old = RunMeta.of({"config": {"task": "t", "settings": {"rollouts": 2, "retired_knob": 1}}, "counts": None,
                      "cache_hits": None, "resumed_questions": None})
    assert old.settings == Settings(rollouts=2) and old.student is None
    assert (dict(old.counts), old.reused_questions, old.where) == ({}, (0, 0), "?, ? threads")


def test_a_real_run_json_reads_back(tmp_path):
    """run.json as ``opd run`` writes it (the fixed tiny run of the fakes) matches its own fields."""
    from harness.cli.main import main
    from harness.storage.records import load_run

    out = tmp_path / "run"
    assert main(["--include", str(FAKES), "run", "--task", "test-parity", "--student", "tiny-random",
                 "--teacher", "self", "--limit", "1", "--rollouts", "2", "--jsd-beta", "0.3", "--out", str(out),
                 "--no-cache", "--quiet"]) == 0
    _, _, content = load_run(out)
    run = RunMeta.of(content)
    assert (run.task, run.student, run.settings.rollouts, run.settings.jsd_beta) == ("test-parity", "tiny-random", 2,
                                                                                      0.3)
    assert run.counts == content["counts"] and run.machine == (content["device"], content["threads"])
    assert run.provenance.fingerprint == content["fingerprint"] and run.provenance.code == content["code"]
    assert run.complete and run.limit == 1 and run.questions is None and run.teachers == ("self",)
    assert [dict(s) for s in run.sessions] == content["sessions"] and len(run.sessions) == 1
    assert RunMeta.read(out / "run.json") == run


def test_what_identifies_the_records():
    content = {"fingerprint": "f", "sampling_fingerprint": "s", "status": "complete", "code": "c2",
               "code_earlier": ["c1"], "dtype": "float32", "questions_in_flight": 4, "device": "cpu", "threads": 2,
               "config": {"task": "t", "student": "m", "teachers": ["self", "idp"], "limit": None,
                          "questions": [8, 16], "seed": 3, "settings": {"rollouts": 2}, "data_dir": "/d"}}
    run = RunMeta.of(content)
    assert run.provenance == Provenance(fingerprint="f", sampling_fingerprint="s", config=content["config"],
                                        status="complete", code="c2", code_earlier=("c1",), dtype="float32",
                                        questions_in_flight=4)
    assert (run.teachers, run.limit, run.questions, run.complete) == (("self", "idp"), None, (8, 16), True)
    assert run.configuration(("task", "seed", "backend")) == {"task": "t", "seed": 3, "backend": None,
                                                               "device": "cpu", "dtype": "float32"}
    assert run.configuration_apart_from(("questions", "limit", "data_dir")) == {
        "config.task": "t", "config.student": "m", "config.teachers": ["self", "idp"], "config.seed": 3,
        "config.settings": {"rollouts": 2}, "device": "cpu", "dtype": "float32", "questions_in_flight": 4,
        "threads": 2, "code": ["c1", "c2"]}
    on_gpu = RunMeta.of({**content, "device": "cuda:0"}).configuration_apart_from(())
    assert "threads" not in on_gpu  # the thread count changes sampled tokens on CPU only
    assert RunMeta.of({"status": "running"}).configuration(("task",)) is None  # no configuration recorded


def test_sessions_of_a_run_json_from_before_they_were_listed():
    # a complete run.json written before run.json listed its sessions stands for its one session; an unfinished
    # one (killed: no counts) for none
    old = {"status": "complete", "finished_at": "2026-12-01T10:00:00+00:00", "resumed_questions": 2,
           "counts": {"questions": 10, "generated_tokens_this_session": 500}, "timings": {"total_s": 60.0},
           "device": "cpu", "threads": 2, "code": "c"}
    assert RunMeta.of(old).sessions == ({"finished_at": "2026-12-01T10:00:00+00:00", "questions_sampled": 8,
                                         "generated_tokens": 500, "total_s": 60.0, "device": "cpu", "threads": 2,
                                         "code": "c"},)
    assert RunMeta.of({**old, "status": "interrupted"}).sessions == ()
    assert RunMeta.of({**old, "sessions": [{"total_s": 1.0}]}).sessions == ({"total_s": 1.0},)


def test_a_file_that_is_no_run_json_reads_as_none(tmp_path):
    assert RunMeta.read(tmp_path / "absent.json") is None
    (tmp_path / "damaged.json").write_text('{"config": ')
    (tmp_path / "list.json").write_text("[1, 2]")
    assert RunMeta.read(tmp_path / "damaged.json") is None and RunMeta.read(tmp_path / "list.json") is None
