"""harness.storage.run_meta: run.json read through one typed object; what a run.json lacks reads as the defaults."""
from __future__ import annotations

import json

from harness.api.method import Settings
from harness.storage.run_meta import RunMeta, SessionNotes
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
