"""Faults from the file system (issue 16): a full disk, damaged part and record files, power loss.

None of them may cost a traceback or work already done: a full disk stops the run with one paragraph naming the file
and the command that resumes; a damaged part is moved aside and its question redone; a damaged merged file is
rebuilt from the parts (`opd rebuild`); every write is fsynced before and after its rename. Runs are compared with an
uninterrupted run of the same command, never with numbers the code itself produced in the same session.
"""
from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import harness.storage.records as records
import harness.workflows.runner
from harness.cli.main import main
from harness.diagnostic.question import Settings
from harness.storage.cache import WorkCache
from harness.storage.records import DamagedRecordsError, write_json, write_table
from harness.storage.run_directory import RunDirectory
from harness.workflows.runner import ConfigError, RunConfig, run

QUESTIONS = 3
ARGS = ["run", "--task", "test-parity", "--student", "tiny-random", "--teacher", "self", "--limit", str(QUESTIONS),
        "--rollouts", "2", "--continuations", "2", "--max-new-tokens", "6", "--quiet", "--device", "cpu"]
CONFIG = RunConfig(task="test-parity", student="tiny-random", teachers=("self",), limit=QUESTIONS,
                   settings=Settings(rollouts=2, continuations=2, max_new_tokens=6), device="cpu")
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _frames(out: Path):
    return pq.read_table(out / "nodes.parquet").to_pandas(), pq.read_table(out / "questions.parquet").to_pandas()


def _assert_same_records(a: Path, b: Path) -> None:
    for left, right in zip(_frames(a), _frames(b)):
        pd.testing.assert_frame_equal(left, right)


def _printed(capsys) -> str:
    return " ".join(capsys.readouterr().out.split())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The reference: the same run, never interrupted, written without the reuse cache."""
    out = tmp_path_factory.mktemp("faults") / "uninterrupted"
    run(CONFIG, out)
    return out


def _parts(out: Path) -> list[Path]:
    return sorted((out / "parts").glob("*.questions.parquet"))


# ---------------------------------------------------------------------------------------------------- disk full


class FullAfter:
    """Stands in for a write primitive: lets ``allowed`` calls through, then fails as a full disk does."""

    def __init__(self, real, allowed: int, only_under: Path | None = None) -> None:
        self.real, self.allowed, self.only_under, self.failed = real, allowed, only_under, 0

    def __call__(self, *args, **kwargs):
        target = str(args[1]) if len(args) > 1 else ""
        if self.only_under is None or target.startswith(str(self.only_under)):
            if self.allowed == 0:
                self.failed += 1
                raise OSError(ENOSPC.errno, ENOSPC.strerror)
            self.allowed -= 1
        return self.real(*args, **kwargs)


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_disk_full_is_one_paragraph_naming_the_file_and_the_resume_command(where, uninterrupted, tmp_path, capsys,
                                                                            monkeypatch):
    """ENOSPC while writing parquet, or from fsync (where delayed allocation reports it), mid-run: exit 2, one
    paragraph (what, where, what is saved, the exact command), no temporary file left; then the same command resumes
    and ends with the uninterrupted run's records."""
    out = tmp_path / "run"
    argv = [*ARGS, "--out", str(out), "--no-cache"]
    if where == "write":
        # per question: 2 parts + 2 merged files; run.json first. 1 + 4 + 2 writes: the second question's parts
        # commit, then its merge fails
        monkeypatch.setattr(pq, "write_table", FullAfter(pq.write_table, allowed=6, only_under=out))
    else:
        monkeypatch.setattr(os, "fsync", FullAfter(lambda fd: None, allowed=9))  # fsyncs: file + directory per write
    assert main(argv) == 2
    printed = _printed(capsys)
    assert printed.startswith("error: Could not write ") and "Traceback" not in printed
    assert "No space left on device (errno 28)" in printed and "is full" in printed
    assert f"question(s) are saved in {out / 'parts'}" in printed
    assert printed.endswith(f"Resume with: opd {shlex.join(argv)}")
    assert not list(out.rglob("*.tmp")), "a failed write must not leave its temporary file on a full disk"
    saved = len(_parts(out))
    assert 1 <= saved < QUESTIONS and f"{saved} of {QUESTIONS} question(s)" in printed

    monkeypatch.undo()  # space freed
    assert main(argv) == 0
    _assert_same_records(out, uninterrupted)


def test_disk_full_with_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(pq, "write_table", FullAfter(pq.write_table, allowed=0, only_under=tmp_path))
    from harness.workflows.runner import RunStoppedError

    with pytest.raises(RunStoppedError) as info:
        main(["--debug", *ARGS, "--out", str(tmp_path / "run"), "--no-cache"])
    assert isinstance(info.value.__cause__, records.RecordWriteError)


def test_a_full_cache_disk_never_stops_the_run(uninterrupted, tmp_path, capsys, monkeypatch):
    """ENOSPC in the reuse cache: one warning, no further attempts, complete records, run.json and the output say so."""
    cache_dir, out = tmp_path / "cache", tmp_path / "run"
    failing = FullAfter(pq.write_table, allowed=0, only_under=cache_dir)
    monkeypatch.setattr(pq, "write_table", failing)
    with pytest.warns(UserWarning, match="No space left on device") as warned:
        assert main([*ARGS, "--out", str(out), "--cache-dir", str(cache_dir)]) == 0
    assert len([w for w in warned if "opd cache" in str(w.message)]) == 1
    assert failing.failed == 1  # the first failure stops further cache writes (and warnings)
    assert "No space left on device" in json.loads((out / "run.json").read_text())["cache_write_error"]
    assert "The reuse cache was not fully written" in _printed(capsys)
    _assert_same_records(out, uninterrupted)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 8 MiB tmpfs, where this process may mount one (root, not in a restricted container); else skip."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def _fill(directory: Path) -> Path:
    """Write a ballast file until the kernel refuses even one more byte: the disk is full."""
    ballast = directory / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return ballast


def test_disk_full_on_a_real_tmpfs_then_resume(small_tmpfs, tmp_path, capsys, monkeypatch):
    """The run and its reuse cache on a small tmpfs that fills up after the first question: the cache gives up
    with one warning, the run stops with the paragraph; with space freed, the same command ends with identical
    records."""
    out, cache_dir = small_tmpfs / "run", small_tmpfs / "cache"
    argv = [*ARGS, "--out", str(out), "--cache-dir", str(cache_dir)]
    # one question at a time, so that the cache still has entries to write when the disk fills after the first
    # question is saved (in a merged wave every question's cache entries are written before the first commit)
    monkeypatch.setattr(harness.workflows.runner, "MAX_QUESTIONS_IN_FLIGHT", 1)
    uninterrupted = tmp_path / "uninterrupted"
    run(CONFIG, uninterrupted)  # the reference, with the same (one-question) batches
    merge = RunDirectory.merge
    ballast = []

    def merge_then_fill(self, *args, **kwargs):
        merge(self, *args, **kwargs)
        if not ballast:
            ballast.append(_fill(small_tmpfs))

    monkeypatch.setattr(RunDirectory, "merge", merge_then_fill)
    with pytest.warns(UserWarning, match="opd cache"):
        assert main(argv) == 2
    printed = _printed(capsys)
    assert "No space left on device (errno 28)" in printed and "Traceback" not in printed
    assert f"1 of {QUESTIONS} question(s) are saved in {out / 'parts'}" in printed
    assert "opd cache --clear" in printed and printed.endswith(f"Resume with: opd {shlex.join(argv)}")

    monkeypatch.setattr(RunDirectory, "merge", merge)
    ballast[0].unlink()
    assert main(argv) == 0
    _assert_same_records(out, uninterrupted)


# ---------------------------------------------------------------------------------------------- damaged parts

def _flip_byte(data: bytes) -> bytes:
    """One byte inverted in the middle of the file's largest column chunk (inside its page data, past the page
    header): the size and the footer stay intact, and without checksums the file reads back as other values."""
    metadata = pq.ParquetFile(pa.BufferReader(data)).metadata
    chunks = [metadata.row_group(g).column(c) for g in range(metadata.num_row_groups)
              for c in range(metadata.num_columns)]
    largest = max(chunks, key=lambda chunk: chunk.total_compressed_size)
    start = largest.dictionary_page_offset if largest.has_dictionary_page else largest.data_page_offset
    middle = start + largest.total_compressed_size // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


DAMAGE = {
    "truncated to 100 bytes": lambda data: data[:100],
    "emptied": lambda data: b"",
    "zeroed": lambda data: b"\0" * len(data),
    "one byte flipped": _flip_byte,  # reads back as other numbers unless the pages carry checksums
}


@pytest.mark.parametrize("kind", ["nodes", "questions"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_part_is_set_aside_and_its_question_redone(kind, damage, uninterrupted, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    key = _parts(out)[1].name.removesuffix(".questions.parquet")
    other = "questions" if kind == "nodes" else "nodes"
    victim, sibling = out / "parts" / f"{key}.{kind}.parquet", out / "parts" / f"{key}.{other}.parquet"
    sibling_bytes = sibling.read_bytes()
    damaged = DAMAGE[damage](victim.read_bytes())
    victim.write_bytes(damaged)

    assert main([*ARGS, "--out", str(out), "--no-cache"]) == 0  # the same command: no crash, the question redone
    printed = _printed(capsys)
    assert "Set aside 2 damaged part file(s)" in printed and f"parts/damaged/{victim.name}" in printed
    assert (out / "parts" / "damaged" / victim.name).read_bytes() == damaged  # moved, not deleted
    assert (out / "parts" / "damaged" / sibling.name).read_bytes() == sibling_bytes
    _assert_same_records(out, uninterrupted)
    meta = json.loads((out / "run.json").read_text())
    assert meta["resumed_questions"] == QUESTIONS - 1 and meta["status"] == "complete"
    assert meta["set_aside_parts"] == [f"parts/damaged/{name}" for name in sorted([victim.name, sibling.name])]


def test_a_part_damaged_twice_keeps_both_copies(uninterrupted, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    victim = _parts(out)[0]
    for damage in (b"", b"x" * 10):
        victim.write_bytes(damage)
        run(CONFIG, out)
    second = victim.name.removesuffix(".parquet") + ".2.parquet"
    damaged = out / "parts" / "damaged"
    assert {p.name for p in damaged.glob(victim.name.removesuffix(".parquet") + "*")} == {victim.name, second}
    assert (damaged / victim.name).read_bytes() == b"" and (damaged / second).read_bytes() == b"x" * 10
    _assert_same_records(out, uninterrupted)


def test_a_garbled_cache_entry_is_recomputed_not_reused(uninterrupted, tmp_path):
    """Cache entries are not fsynced: one a power loss garbles must fail its page checksums and be recomputed."""
    cache_dir = tmp_path / "cache"
    run(CONFIG, tmp_path / "first", cache=WorkCache(cache_dir))
    for entry in sorted(cache_dir.glob("*/*.parquet")):
        entry.write_bytes(_flip_byte(entry.read_bytes()))
    meta = run(CONFIG, tmp_path / "second", cache=WorkCache(cache_dir))
    assert meta["cache_hits"]["sampled_hits"] == 0 and meta["cache_hits"]["teacher_hits"] == {}
    _assert_same_records(tmp_path / "second", uninterrupted)


def test_a_damaged_run_json_on_resume_is_a_clear_refusal(uninterrupted, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    (out / "run.json").write_text('{"config": ')
    with pytest.raises(ConfigError, match="run.json that cannot be read.*Restore run.json"):
        run(CONFIG, out)
    assert len(_parts(out)) == QUESTIONS  # nothing touched


# ------------------------------------------------------------------------------------- damaged merged records

REPORTS = [
    ["leaderboard", "RUN"],
    ["analyze", "RUN"],
    ["plot", "RUN", "--out", "PLOTS"],
    ["view", "RUN", "--question", "parity-0", "--no-tokenizer"],
    ["compare", "RUN", "RUN"],
]


@pytest.mark.parametrize("name", ["nodes.parquet", "questions.parquet"])
@pytest.mark.parametrize("argv", REPORTS, ids=lambda argv: argv[0])
def test_a_damaged_merged_file_is_one_paragraph_offering_the_rebuild(argv, name, uninterrupted, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    (out / name).write_bytes((out / name).read_bytes()[:100])
    swap = {"RUN": str(out), "PLOTS": str(tmp_path / "plots")}
    assert main([swap.get(arg, arg) for arg in argv]) == 2
    printed = _printed(capsys)
    assert printed.startswith(f"error: {out / name} cannot be read (") and "Traceback" not in printed
    assert f"opd rebuild {out}" in printed and "damaged" in printed


def test_rebuild_restores_the_merged_records_from_the_parts(uninterrupted, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    (out / "nodes.parquet").write_bytes(b"")
    (out / "questions.parquet").unlink()
    assert main(["rebuild", str(out)]) == 0
    assert f"from {QUESTIONS} question part(s)" in _printed(capsys)
    _assert_same_records(out, uninterrupted)
    assert main(["leaderboard", str(out), "--format", "csv"]) == 0


def test_rebuild_sets_damaged_parts_aside_and_says_how_to_redo_them(uninterrupted, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    victim = _parts(out)[2]
    victim.write_bytes(victim.read_bytes()[:100])
    assert main(["rebuild", str(out)]) == 0
    printed = _printed(capsys)
    assert f"from {QUESTIONS - 1} question part(s)" in printed and f"parts/damaged/{victim.name}" in printed
    assert "`opd run` command that made this run" in printed
    questions = _frames(out)[1]
    expected = _frames(uninterrupted)[1]
    pd.testing.assert_frame_equal(questions, expected[expected.question_id != "parity-2"].reset_index(drop=True))
    run(CONFIG, out)  # the command that made it redoes the missing question
    _assert_same_records(out, uninterrupted)


def test_rebuild_of_a_directory_without_parts_is_a_clear_error(tmp_path, capsys):
    assert main(["rebuild", str(tmp_path)]) == 2
    assert "has no parts/ folder" in _printed(capsys)


def test_a_damaged_file_without_parts_says_it_cannot_be_rebuilt(uninterrupted, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    shutil.rmtree(out / "parts")
    (out / "nodes.parquet").write_bytes(b"PAR1")
    with pytest.raises(DamagedRecordsError, match="keeps no per-question parts .* --overwrite"):
        records.load_run(out)


def test_a_damaged_run_json_is_named_by_the_reports(uninterrupted, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    (out / "run.json").write_bytes(b"\0\0\0")
    assert main(["leaderboard", str(out)]) == 2
    printed = _printed(capsys)
    assert f"{out / 'run.json'} cannot be read" in printed and "run's configuration" in printed


# ----------------------------------------------------------------------------------------------- durability


@pytest.fixture
def disk_calls(monkeypatch):
    """Records fsync (with what the descriptor points at) and rename calls, in order."""
    calls = []
    fsync, replace = os.fsync, os.replace

    def record_fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        calls.append(("fsync", target))
        return fsync(fd)

    def record_replace(src, dst):
        calls.append(("replace", str(src), str(dst)))
        return replace(src, dst)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to see what a descriptor points at")
    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    return calls


@pytest.mark.parametrize("writer, payload", [(write_table, records.QUESTION_SCHEMA.empty_table()),
                                             (write_json, {"a": 1})])
def test_a_write_is_fsynced_before_and_after_its_rename(writer, payload, disk_calls, tmp_path):
    """The data before the rename, the rename after it, and a folder the write creates in its parent."""
    target = tmp_path / "sub" / "file"
    writer(payload, target)
    (rename,) = [c for c in disk_calls if c[0] == "replace"]
    tmp = rename[1]
    assert rename[2] == str(target) and Path(tmp).parent == target.parent
    assert disk_calls == [("fsync", str(tmp_path)), ("fsync", tmp), rename, ("fsync", str(target.parent))]
    disk_calls.clear()
    writer(payload, target)  # the folder exists now: only the file and its directory
    assert [c[0] for c in disk_calls] == ["fsync", "replace", "fsync"]


def test_a_commit_is_durable_before_it_counts_as_done(disk_calls, tmp_path):
    """Each part's data reaches the disk before its rename, and its directory entry after, before the next part."""
    run(CONFIG, tmp_path / "run")
    parts = tmp_path / "run" / "parts"
    for index, call in enumerate(disk_calls):
        if call[0] == "replace" and Path(call[2]).parent == parts:
            assert disk_calls[index - 1] == ("fsync", call[1])
            assert disk_calls[index + 1] == ("fsync", str(parts))
    assert sum(1 for c in disk_calls if c[0] == "replace" and Path(c[2]).parent == parts) == 2 * QUESTIONS
    # the merged files are fsynced once, when the run completes (between questions the parts are the commit)
    run_dir = tmp_path / "run"
    merged = [i for i, c in enumerate(disk_calls) if c[0] == "replace" and Path(c[2]).parent == run_dir
              and Path(c[2]).suffix == ".parquet"]
    assert [disk_calls[i + 1] == ("fsync", str(run_dir)) for i in merged] == [False] * (2 * QUESTIONS) + [True] * 2
    # the new run directory and its parts/ folder are recorded in their parents before the first part is written
    first_part = next(i for i, c in enumerate(disk_calls) if c[0] == "replace" and Path(c[2]).parent == parts)
    assert {("fsync", str(tmp_path)), ("fsync", str(tmp_path / "run"))} <= set(disk_calls[:first_part])


def test_a_full_disk_under_a_report_output_is_one_paragraph(uninterrupted, tmp_path, capsys, monkeypatch):
    """`opd view` writes its HTML with plain file I/O: a full disk there is the same one paragraph, exit 2."""
    target = tmp_path / "view.html"

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", full)
    argv = ["view", str(uninterrupted), "--question", "parity-0", "--no-tokenizer", "--out", str(target)]
    assert main(argv) == 2
    printed = _printed(capsys)
    assert printed.startswith(f"error: Could not write {target}: No space left on device (errno 28).")
    assert printed.endswith(f"run the same command again: opd {shlex.join(argv)}") and "Traceback" not in printed


def test_the_resume_command_names_the_out_that_run_chose(uninterrupted, tmp_path, capsys, monkeypatch):
    """Without --out, `opd run` picks a time-stamped directory: the resume command must name it, or it would
    start a new run in another directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pq, "write_table", FullAfter(pq.write_table, allowed=4, only_under=tmp_path))
    assert main([*ARGS, "--no-cache"]) == 2
    printed = _printed(capsys)
    resume = shlex.split(printed.split("Resume with: ", 1)[1])
    assert resume[0] == "opd" and resume[-2] == "--out" and resume[-1].startswith("runs/test-parity_tiny-random_")
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert main(resume[1:]) == 0
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [Path(resume[-1]).name]  # resumed, not a new run
    _assert_same_records(tmp_path / resume[-1], uninterrupted)
