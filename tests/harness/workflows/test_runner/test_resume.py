"""Resumable runs: SIGKILL mid-run then re-run equals an uninterrupted run; mixed work and two writers are refused."""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from harness.cli.main import main
from harness.diagnostic.question import Settings
from harness.workflows.runner import ConfigError, RunConfig, run
from tests.helpers import FAKES

ARGS = ["run", "--task", "test-parity", "--student", "tiny-random", "--teacher", "self", "--teacher",
        "model:tiny-random:1", "--limit", "5", "--rollouts", "4", "--continuations", "3", "--max-new-tokens", "12",
        "--quiet", "--device", "cpu"]


def _frames(out: Path):
    return (pq.read_table(out / "nodes.parquet").to_pandas(), pq.read_table(out / "questions.parquet").to_pandas())


# one question at a time in these runs, so that the interrupt reliably lands between two saved questions (a wave
# of merged questions saves them all within a few milliseconds)
ONE_AT_A_TIME = {"OPD_QUESTIONS_IN_FLIGHT": "1"}


def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path, monkeypatch):
    full, killed = tmp_path / "full", tmp_path / "killed"
    monkeypatch.setenv("OPD_QUESTIONS_IN_FLIGHT", "1")
    assert main(["--include", str(FAKES), *ARGS, "--out", str(full)]) == 0

    command = [sys.executable, "-m", "harness.cli.main", "--include", str(FAKES), *ARGS, "--out", str(killed)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, **ONE_AT_A_TIME})
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if len(list((killed / "parts").glob("*.questions.parquet"))) >= 1:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    committed = len(list((killed / "parts").glob("*.questions.parquet")))
    assert 1 <= committed < 5, f"kill landed after {committed} committed questions"

    assert main(["--include", str(FAKES), *ARGS, "--out", str(killed)]) == 0  # same command: resumes
    for resumed, uninterrupted in zip(_frames(killed), _frames(full)):
        pd.testing.assert_frame_equal(resumed, uninterrupted)
    nodes = _frames(killed)[0]
    assert not nodes.duplicated(["question_id", "rollout_id", "position", "teacher"]).any()


def _config(**settings):
    return RunConfig(task="test-parity", student="tiny-random", teachers=("self",), limit=1,
                     settings=Settings(rollouts=2, continuations=2, max_new_tokens=4, **settings), device="cpu")


def test_different_configuration_is_refused_and_overwrite_replaces(tmp_path):
    run(_config(), tmp_path)
    with pytest.raises(ConfigError, match="different configuration.*--overwrite"):
        run(_config(temperature=0.7), tmp_path)
    run(_config(temperature=0.7), tmp_path, overwrite=True)
    assert pq.read_table(tmp_path / "questions.parquet").num_rows == 2


def test_rerun_of_a_finished_run_does_no_new_work_and_keeps_its_record(tmp_path):
    """Re-running a finished run (e.g. `opd suite` after a cell was added to the grid) must not replace the record
    of the session that did the work: the study's cost table and `opd plan`'s rate read it."""
    first = run(_config(), tmp_path)
    written = (tmp_path / "run.json").read_text()
    records = (tmp_path / "nodes.parquet").read_bytes()
    (tmp_path / "nodes.parquet").unlink()  # the merged files are rewritten from the parts
    again = run(_config(), tmp_path)
    assert again == json.loads(written) and again["timings"] == first["timings"]
    assert again["counts"] == first["counts"] and first["counts"]["generated_tokens_this_session"] > 0
    assert (tmp_path / "run.json").read_text() == written
    assert (tmp_path / "nodes.parquet").read_bytes() == records


def test_second_writer_is_refused(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match="Another `opd run` is writing"):
            run(_config(), tmp_path)


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    out = tmp_path / "interrupted"
    command = [sys.executable, "-m", "harness.cli.main", "--include", str(FAKES), *ARGS, "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "COLUMNS": "200", **ONE_AT_A_TIME})
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "parts").glob("*.questions.parquet")):
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("the run finished before the interrupt landed")
    assert process.returncode == 130
    text = " ".join(output.split())
    assert "Interrupted" in text and "run the same command again to resume" in text


def _recording_batches(monkeypatch) -> list[tuple[int, ...]]:
    """Every generation batch the run decodes, as the sorted seeds of its rows (which rows shared a batch)."""
    import harness.sampling.backends as backends

    batches: list[tuple[int, ...]] = []
    original = backends.generate_branches

    def recording(lm, sources, branches, *args, **kwargs):
        batches.append(tuple(sorted(b.seed for b in branches)))
        return original(lm, sources, branches, *args, **kwargs)

    monkeypatch.setattr(backends, "generate_branches", recording)
    return batches


@pytest.mark.parametrize("use_cache", [False, True])
def test_a_wave_interrupted_after_its_first_question_resumes_with_the_same_batches(tmp_path, monkeypatch,
                                                                                   use_cache):
    """Questions run in waves whose generation is merged, and a row's logits shift in the last float bits with
    its batch. Stopped after the wave's first question was saved, the resumed run must redo the wave's generation
    with the same rows in every batch as the uninterrupted run (so the same samples), and end with its records."""
    from harness.storage.cache import WorkCache
    from harness.storage.run_directory import RunDirectory

    config = RunConfig(task="test-parity", student="tiny-random", teachers=("self", "model:tiny-random:1"), limit=3,
                       settings=Settings(rollouts=3, continuations=2, max_new_tokens=8), device="cpu")
    batches = _recording_batches(monkeypatch)
    meta = run(config, tmp_path / "full")
    assert meta["questions_in_flight"] >= 3  # one wave holds all three questions
    uninterrupted = list(batches)
    assert any(len(batch) > 3 for batch in uninterrupted)  # rows of several questions shared a batch

    commit = RunDirectory.commit
    calls = []

    def stop_after_first(self, *args, **kwargs):
        if calls:
            raise RuntimeError("stopped")
        calls.append(1)
        return commit(self, *args, **kwargs)

    monkeypatch.setattr(RunDirectory, "commit", stop_after_first)
    cache = WorkCache(tmp_path / "cache") if use_cache else None
    with pytest.raises(RuntimeError, match="stopped"):
        run(config, tmp_path / "stopped", cache=cache)
    monkeypatch.setattr(RunDirectory, "commit", commit)
    if use_cache:  # every question's sampled work is in the cache: the rest is read back, nothing generated...
        saved = set(pd.concat(pd.read_parquet(part) for part in (tmp_path / "stopped" / "parts").glob(
            "*.questions.parquet")).question_id)
        unsaved = [entry for entry in sorted((tmp_path / "cache" / "sampled").glob("*.questions.parquet"))
                   if not set(pd.read_parquet(entry).question_id) & saved]
        assert len(unsaved) == 2
        unsaved[0].unlink()  # ...unless a question still to do lost its entry: then the whole wave samples again
    batches.clear()
    run(config, tmp_path / "stopped", cache=cache)
    assert batches == uninterrupted
    for resumed, full in zip(_frames(tmp_path / "stopped"), _frames(tmp_path / "full")):
        pd.testing.assert_frame_equal(resumed, full)


@pytest.mark.parametrize("value", ["0", "two", "-3"])
def test_a_bad_questions_in_flight_setting_is_refused_before_any_work(tmp_path, monkeypatch, value):
    monkeypatch.setenv("OPD_QUESTIONS_IN_FLIGHT", value)
    with pytest.raises(ConfigError, match="OPD_QUESTIONS_IN_FLIGHT must be a whole number"):
        run(_config(), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_questions_in_flight_setting_is_recorded_and_part_of_the_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("OPD_QUESTIONS_IN_FLIGHT", "2")
    meta = run(_config(), tmp_path / "run")
    assert meta["questions_in_flight"] == 2
    monkeypatch.delenv("OPD_QUESTIONS_IN_FLIGHT")
    with pytest.raises(ConfigError, match="different configuration"):  # other batches: not mixed into the run
        run(_config(), tmp_path / "run")


def _committed_indices(monkeypatch) -> list[int]:
    from harness.storage.run_directory import RunDirectory

    indices: list[int] = []
    commit = RunDirectory.commit

    def recording(self, index, *args, **kwargs):
        indices.append(index)
        return commit(self, index, *args, **kwargs)

    monkeypatch.setattr(RunDirectory, "commit", recording)
    return indices


def test_a_larger_limit_grows_the_run_in_place_as_if_it_had_been_that_size_from_the_start(tmp_path, monkeypatch):
    """Raising --limit on a run (e.g. a study's suite file) keeps its questions; the smaller run's last wave held
    fewer questions than it does at the larger limit, so those questions run again in the full wave, and the grown
    run ends with the records, and the batches, of a run started at the larger limit."""
    from dataclasses import replace

    monkeypatch.setenv("OPD_QUESTIONS_IN_FLIGHT", "2")  # waves {0, 1}, {2, 3}, {4}
    config = RunConfig(task="test-parity", student="tiny-random", teachers=("self", "model:tiny-random:1"), limit=5,
                       settings=Settings(rollouts=3, continuations=2, max_new_tokens=8), device="cpu")
    batches = _recording_batches(monkeypatch)
    run(config, tmp_path / "fresh")
    fresh = list(batches)
    run(replace(config, limit=3), tmp_path / "grown")  # waves {0, 1}, {2}: question 2 decoded alone
    codes_before = json.loads((tmp_path / "grown" / "run.json").read_text())["code"]
    batches.clear()
    committed = _committed_indices(monkeypatch)
    meta = run(config, tmp_path / "grown")
    assert committed == [2, 3, 4]  # question 2 again, in the wave it has at limit 5; 0 and 1 kept
    assert meta["grown_from_limit"] == 3 and meta["resumed_questions"] == 2 and meta["code"] == codes_before
    assert batches == fresh[len(fresh) - len(batches):]  # the fresh run's batches of waves {2, 3} and {4}
    # both sessions' cost: 3 questions sampled at limit 3, then 2, 3 and 4
    assert [session["questions_sampled"] for session in meta["sessions"]] == [3, 3]
    assert all(session["total_s"] > 0 and session["generated_tokens"] > 0 for session in meta["sessions"])
    for grown, full in zip(_frames(tmp_path / "grown"), _frames(tmp_path / "fresh")):
        pd.testing.assert_frame_equal(grown, full)
    with pytest.raises(ConfigError, match="different configuration"):  # fewer questions: a different run
        run(replace(config, limit=4), tmp_path / "grown")


def test_a_killed_session_keeps_the_cost_of_the_sessions_before_it(tmp_path):
    """run.json lists every finished session; a session killed mid-run (run.json left 'running', no counts) must
    not drop the earlier ones from the list the next session extends."""
    from dataclasses import replace

    config = RunConfig(task="test-parity", student="tiny-random", teachers=("self",), limit=3,
                       settings=Settings(rollouts=2, continuations=2, max_new_tokens=6), device="cpu")
    out = tmp_path / "run"
    first = run(replace(config, limit=2), out)["sessions"]
    assert len(first) == 1 and first[0]["questions_sampled"] == 2
    killed = json.loads((out / "run.json").read_text())
    killed.update(status="running", sessions=first)  # what a killed session leaves: its start-of-run record
    for key in ("counts", "timings", "finished_at"):
        killed.pop(key)
    (out / "run.json").write_text(json.dumps(killed))
    sessions = run(config, out)["sessions"]
    assert sessions[0] == first[0] and len(sessions) == 2 and sessions[1]["questions_sampled"] >= 1


def test_a_run_cannot_grow_when_the_larger_limit_selects_other_questions_first(tmp_path, monkeypatch):
    from dataclasses import replace

    from harness.api.task import resolve_task

    parity = type(resolve_task("test-parity"))  # the registered fake's class
    config = RunConfig(task="test-parity", student="tiny-random", teachers=("self",), limit=2,
                       settings=Settings(rollouts=2, continuations=2, max_new_tokens=4), device="cpu")
    run(config, tmp_path / "run")
    parts = sorted(p.name for p in (tmp_path / "run" / "parts").iterdir())
    load = parity.load
    monkeypatch.setattr(parity, "load", lambda self, data_dir, limit=None: load(self, data_dir, None)[::-1][:limit])
    with pytest.raises(ConfigError, match="selects other questions first.*new --out"):
        run(replace(config, limit=3), tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run" / "parts").iterdir()) == parts  # nothing deleted
