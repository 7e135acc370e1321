"""Growth by chunks: ``--questions A:B`` gives the whole-task run's rows of those questions, byte for byte; chunk
runs combine into the whole run's leaderboard; overlapping or mismatched chunks and bad ranges are refused."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.api.errors import ConfigError
from harness.cli.main import main
from harness.reports.compare import load_runs
from harness.reports.leaderboard import build
from harness.storage.chunks import parse_range, wave_span
from harness.storage.records import load_run
from harness.workflows.suite import load_suite
from tests.helpers import FAKES, ROOT

# test-parity has 5 questions; two in flight: whole-task waves [0,2) [2,4) [4,5)
ARGS = ["--include", str(FAKES), "run", "--task", "test-parity", "--student", "tiny-random", "--teacher", "self",
        "--teacher", "model:tiny-random:1", "--rollouts", "3", "--continuations", "2", "--max-new-tokens", "8",
        "--quiet", "--device", "cpu", "--no-cache"]


@pytest.fixture
def two_in_flight(monkeypatch):
    monkeypatch.setenv("OPD_QUESTIONS_IN_FLIGHT", "2")


@pytest.fixture
def whole(tmp_path_factory, two_in_flight):
    out = tmp_path_factory.mktemp("whole") / "run"
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


def _rows(out: Path, kind: str, questions: range) -> pa.Table:
    """The rows of ``questions`` (indices of the task's order) in a run's records, as written."""
    table = pq.read_table(out / f"{kind}.parquet")
    ids = {f"parity-{i}" for i in questions}
    mask = pa.array([qid in ids for qid in table.column("question_id").to_pylist()])
    return table.filter(mask)


def _bytes(table: pa.Table, name: str) -> bytes:
    """One column as Arrow IPC bytes: equal only when every value (float bits, nulls, list offsets) is."""
    column = table.select([name]).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, column.schema) as writer:
        writer.write_table(column)
    return sink.getvalue().to_pybytes()


def test_wave_span_covers_the_whole_task_waves():
    assert wave_span((1, 4), 2, 5) == (0, 4)
    assert wave_span((4, 5), 2, 5) == (4, 5)
    assert wave_span((3, 5), 2, 5) == (2, 5)
    assert wave_span((8, 16), 8, 1319) == (8, 16)


@pytest.mark.parametrize("start,end", [(1, 4), (4, 5), (0, 2)])
def test_chunk_rows_are_the_whole_runs_rows_byte_for_byte(tmp_path, whole, start, end):
    out = tmp_path / "chunk"
    assert main([*ARGS, "--questions", f"{start}:{end}", "--out", str(out)]) == 0
    for kind in ("nodes", "questions"):
        chunk, reference = _rows(out, kind, range(start, end)), _rows(whole, kind, range(start, end))
        assert chunk.num_rows == pq.read_table(out / f"{kind}.parquet").num_rows  # nothing outside the range kept
        assert chunk.num_rows > 0
        for name in reference.column_names:  # every record column, byte for byte (NaN included)
            assert _bytes(chunk, name) == _bytes(reference, name), name
    meta = json.loads((out / "run.json").read_text())
    assert meta["config"]["questions"] == [start, end]
    assert meta["chunk"]["waves"] == list(wave_span((start, end), 2, 5))
    assert meta["counts"]["questions"] == end - start


def test_two_adjacent_chunks_combine_into_the_whole_runs_leaderboard(tmp_path, whole):
    first, second = tmp_path / "a", tmp_path / "b"
    assert main([*ARGS, "--questions", "0:3", "--out", str(first)]) == 0
    assert main([*ARGS, "--questions", "3:5", "--out", str(second)]) == 0
    combined = load_runs([first, second], combine=True)
    assert any("combined the chunks" in note for note in combined.notes)
    reference, _, _ = load_run(whole)
    got, want = build(combined.nodes).table, build(reference).table
    columns = ["teacher", "loss", "align", "walign", "align_nodes", "align_questions"]
    pd.testing.assert_frame_equal(got[columns].reset_index(drop=True), want[columns].reset_index(drop=True))
    assert main(["compare", str(first), str(second), "--combine", "--format", "md"]) == 0
    assert main(["findings", str(first), str(second), "--combine", "--format", "md"]) == 0


def test_a_chunk_resumes_and_grows_in_place(tmp_path, whole):
    out = tmp_path / "grow"
    assert main([*ARGS, "--questions", "1:3", "--out", str(out)]) == 0
    assert main([*ARGS, "--questions", "1:3", "--out", str(out)]) == 0  # the same chunk again: nothing to do
    assert main([*ARGS, "--questions", "1:5", "--out", str(out)]) == 0  # wider: grows, questions 1-2 kept
    meta = json.loads((out / "run.json").read_text())
    assert meta["grown_from_questions"] == [1, 3] and meta["resumed_questions"] == 2
    for kind in ("nodes", "questions"):
        grown, reference = pq.read_table(out / f"{kind}.parquet"), _rows(whole, kind, range(1, 5))
        assert all(_bytes(grown, name) == _bytes(reference, name) for name in reference.column_names)


def _paragraph(capsys) -> str:
    text = " ".join(capsys.readouterr().out.split())
    assert "Traceback" not in text
    return text


def test_overlapping_chunks_are_refused(tmp_path, two_in_flight, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    assert main([*ARGS, "--questions", "0:2", "--out", str(first)]) == 0
    assert main([*ARGS, "--questions", "1:3", "--out", str(second)]) == 0
    capsys.readouterr()
    assert main(["compare", str(first), str(second), "--combine"]) == 2
    text = _paragraph(capsys)
    assert "overlap" in text and str(first) in text and str(second) in text and "0:2" in text and "1:3" in text


def test_mismatched_chunks_are_refused(tmp_path, two_in_flight, capsys):
    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert main([*ARGS, "--questions", "0:2", "--out", str(first)]) == 0
    assert main([*ARGS, "--questions", "2:4", "--seed", "1", "--out", str(second)]) == 0
    capsys.readouterr()
    assert main(["findings", str(first), str(second), "--combine"]) == 2
    text = _paragraph(capsys)
    assert "config.seed" in text and str(second) in text
    at = ARGS.index("model:tiny-random:1")
    teachers = ARGS[:at - 1] + ARGS[at + 1:]  # the self teacher alone
    assert main([*teachers, "--questions", "2:4", "--out", str(third)]) == 0
    capsys.readouterr()
    assert main(["compare", str(first), str(third), "--combine"]) == 2
    assert "config.teachers" in _paragraph(capsys)
    # a whole run does not mix with chunks either
    whole = tmp_path / "whole"
    assert main([*ARGS, "--out", str(whole)]) == 0
    capsys.readouterr()
    assert main(["compare", str(first), str(whole), "--combine"]) == 2
    assert "not a chunk run" in _paragraph(capsys)


@pytest.mark.parametrize("text", ["5:3", "a:b", "3", "2:2", "-1:2"])
def test_bad_ranges_are_refused_by_the_parser(text, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([*ARGS, "--questions", text, "--out", str(tmp_path / "x")])
    assert stopped.value.code == 2
    assert "--questions" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError):
        parse_range(text)


def test_a_range_past_the_tasks_end_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import harness.workflows.runner

    def no_models(*args, **kwargs):
        raise AssertionError("models were loaded")

    monkeypatch.setattr(harness.workflows.runner, "resolve_participants", no_models)
    assert main([*ARGS, "--questions", "3:9", "--out", str(tmp_path / "x")]) == 2
    text = _paragraph(capsys)
    assert "past the end" in text and "5 question" in text
    assert not (tmp_path / "x").exists()


def test_limit_and_questions_together_are_refused(tmp_path, capsys):
    assert main([*ARGS, "--questions", "0:2", "--limit", "2", "--out", str(tmp_path / "x")]) == 2
    assert "--limit and --questions cannot go together" in _paragraph(capsys)


def test_suite_key_per_task_and_per_cell(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nstudents = ["tiny-random", "tiny-random@int8"]\nteachers = ["self"]\n'
                     '[tasks.test-parity]\nquestions = "2:4"\n'
                     '[tasks.test-count-a]\nquestions = { "tiny-random" = "0:2", "tiny-random@int8" = "2:3" }\n')
    cells = {(c.task, c.student): c for c in load_suite(suite, tmp_path / "out").cells}
    assert cells["test-parity", "tiny-random"].config.questions == (2, 4)
    assert cells["test-parity", "tiny-random"].out == tmp_path / "out/test-parity/tiny-random/questions-000002-000004"
    assert cells["test-count-a", "tiny-random@int8"].config.questions == (2, 3)
    suite.write_text('[suite]\nstudents = ["tiny-random", "tiny-random@int8"]\nteachers = ["self"]\n'
                     '[tasks.test-parity]\nquestions = { "tiny-random" = "0:2" }\n')
    with pytest.raises(ConfigError, match="naming each student"):
        load_suite(suite)
    suite.write_text('[suite]\nstudents = ["tiny-random"]\nteachers = ["self"]\n[tasks.test-parity]\n'
                     'questions = "4:1"\n')
    with pytest.raises(ConfigError, match="larger than the start"):
        load_suite(suite)
    suite.write_text('[suite]\nstudents = ["tiny-random"]\nteachers = ["self"]\n[defaults]\nlimit = 3\n'
                     '[tasks.test-parity]\nquestions = "0:2"\n')
    with pytest.raises(ConfigError, match="cannot go together"):
        load_suite(suite)


def _study_build():
    import importlib.util

    path = ROOT / "results" / "study" / "build.py"
    spec = importlib.util.spec_from_file_location("study_build_chunks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_collect_merges_a_cells_chunks_and_refuses_overlaps(tmp_path, whole):
    build_module = _study_build()
    cell = tmp_path / "suite" / "test-parity" / "tiny-random"
    for start, end in ((0, 2), (2, 5)):
        out = cell / f"questions-{start:06d}-{end:06d}"
        assert main([*ARGS, "--questions", f"{start}:{end}", "--out", str(out)]) == 0
    study = tmp_path / "study"
    build_module.collect(tmp_path / "suite", None, out=study)
    merged = pq.read_table(study / "nodes.parquet").to_pandas()
    reference, _, _ = load_run(whole)
    assert len(merged) == len(reference)
    assert not merged.duplicated(["question_id", "rollout_id", "position", "teacher"]).any()
    runs = json.loads((study / "runs.json").read_text())
    assert len(runs) == 1 and runs[0]["config"]["questions"] == [[0, 2], [2, 5]]
    assert runs[0]["counts"]["questions"] == 5
    assert main([*ARGS, "--questions", "1:3", "--out", str(cell / "questions-000001-000003")]) == 0
    with pytest.raises(ConfigError, match="overlap"):  # overlapping chunks: refused, nothing written
        build_module.collect(tmp_path / "suite", None, out=tmp_path / "study-2")
    assert not (tmp_path / "study-2" / "nodes.parquet").exists()


def test_study_commits_chunks_once_and_merges_them_beside_other_cells(tmp_path, whole):
    build_module = _study_build()
    runs = {}
    for start, end in ((0, 2), (2, 5), (1, 3)):
        runs[start, end] = tmp_path / f"c{start}-{end}"
        assert main([*ARGS, "--questions", f"{start}:{end}", "--out", str(runs[start, end])]) == 0
    study = tmp_path / "study"
    study.mkdir()
    # a cell collected from a whole run before (another student): kept as it is by the merge
    legacy = pd.DataFrame({"task": ["boolq"], "student": ["other"], "question_id": ["q"], "teacher": ["self"]})
    build_module._write_nodes(legacy, study)
    (study / "runs.json").write_text(json.dumps([{"config": {"task": "boolq", "student": "other"}}]))
    written = build_module.commit_chunks([runs[0, 2], runs[2, 5]], out=study)
    # per chunk: its nodes, its run.json keys and its per-rollout file
    assert sorted(path.name for path in written) == sorted(
        f"questions-{a:06d}-{b:06d}{suffix}" for a, b in ((0, 2), (2, 5))
        for suffix in (".parquet", ".json", ".questions.parquet"))
    assert build_module.commit_chunks([runs[0, 2]], out=study) == []  # committed once, never replaced
    with pytest.raises(ConfigError, match="not a finished chunk run"):
        build_module.commit_chunks([whole], out=study)
    build_module.merge_chunks(study)
    merged = pq.read_table(study / "nodes.parquet").to_pandas()
    reference, _, _ = load_run(whole)
    assert len(merged) == len(reference) + 1
    assert (merged.student == "other").sum() == 1
    cells = json.loads((study / "runs.json").read_text())
    assert [c["config"]["student"] for c in cells] == ["other", "tiny-random"]
    assert cells[1]["config"]["questions"] == [[0, 2], [2, 5]]
    build_module.merge_chunks(study)  # again: the same files (idempotent)
    assert len(pq.read_table(study / "nodes.parquet")) == len(reference) + 1
    build_module.commit_chunks([runs[1, 3]], out=study)
    with pytest.raises(ConfigError, match="overlap"):
        build_module.merge_chunks(study)


def test_a_suite_chunk_runs_into_its_own_directory_with_the_whole_runs_rows(tmp_path, whole):
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nstudents = ["tiny-random"]\nteachers = ["self", "model:tiny-random:1"]\n'
                     '[defaults]\nrollouts = 3\ncontinuations = 2\nmax_new_tokens = 8\ndevice = "cpu"\n'
                     '[tasks.test-parity]\nquestions = "1:3"\n')
    assert main(["--include", str(FAKES), "suite", str(suite), "--out", str(tmp_path / "out"), "--no-cache"]) == 0
    out = tmp_path / "out" / "test-parity" / "tiny-random" / "questions-000001-000003"
    assert json.loads((out / "run.json").read_text())["config"]["questions"] == [1, 3]
    for kind in ("nodes", "questions"):
        got, reference = pq.read_table(out / f"{kind}.parquet"), _rows(whole, kind, range(1, 3))
        assert all(_bytes(got, name) == _bytes(reference, name) for name in reference.column_names)


def test_a_cell_merged_from_chunks_costs_what_its_chunks_cost_together():
    """merge_meta sums the chunks' sessions into the cell's timings and generated tokens (what harness.reports.plan's
    Rate reads); a session that did not record its cost makes the sum unknown rather than short."""
    from harness.reports.plan import Rate
    from harness.storage.chunks import merge_meta
    from harness.storage.run_meta import RunMeta

    def chunk(start, end, sessions):
        return {"config": {"task": "t", "student": "s", "questions": [start, end], "teachers": ["self"]},
                "status": "complete", "counts": {"questions": end - start, "rollouts": 4 * (end - start),
                                                 "nodes": 3, "informative_nodes": 2,
                                                 "generated_tokens_this_session": 999},
                "timings": {"total_s": 1.0}, "sessions": sessions}

    metas = [chunk(4, 8, [{"total_s": 600.0, "generated_tokens": 40_000}]),
             chunk(0, 4, [{"total_s": 1000.0, "generated_tokens": 50_000},
                          {"total_s": 20.0, "generated_tokens": 1_000}])]  # a resumed chunk: two sessions
    merged = merge_meta(metas)
    assert merged["config"]["questions"] == [[0, 4], [4, 8]]
    assert merged["timings"] == {"total_s": 1620.0} and merged["counts"]["generated_tokens_this_session"] == 91_000
    rate = Rate.of(RunMeta.of(merged))
    assert rate.seconds_per_question == pytest.approx(1620.0 / 8) and rate.tokens_per_question == 91_000 / 8
    metas[0]["sessions"][0].pop("total_s")
    unknown = merge_meta(metas)
    assert unknown["timings"] == {} and unknown["counts"]["generated_tokens_this_session"] == 91_000
