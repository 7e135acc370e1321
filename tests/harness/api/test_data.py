"""Tests for data-source resolution and JSONL reading (harness.api.data); no network."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import harness.api.data as data
from harness.api.data import DataError, local_file, read_jsonl, resolve_data_dir


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cwd with no data layout nearby, no env var, and no repo-relative candidate."""
    work = tmp_path / "work" / "cwd"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data, "_REPO_ROOT", tmp_path / "nowhere" / "repo")
    return work


def make_layout(root: Path, task: str = "boolq") -> Path:
    (root / task).mkdir(parents=True)
    return root


def test_explicit_wins_over_env_and_autodetect(isolated: Path, tmp_path: Path, monkeypatch) -> None:
    explicit = make_layout(tmp_path / "explicit")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(make_layout(tmp_path / "env")))
    make_layout(isolated / "data")
    assert resolve_data_dir(explicit) == explicit.resolve()
    assert resolve_data_dir(str(explicit)) == explicit.resolve()


def test_explicit_missing_raises(isolated: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist.*--data-dir"):
        resolve_data_dir(tmp_path / "missing")


def test_env_used_when_no_flag(isolated: Path, tmp_path: Path, monkeypatch) -> None:
    env = make_layout(tmp_path / "env", "mmlu")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(env))
    make_layout(isolated / "data")
    assert resolve_data_dir(None) == env.resolve()


def test_env_missing_raises(isolated: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "typo"))
    with pytest.raises(DataError, match="OPD_DATA_DIR"):
        resolve_data_dir(None)


def test_autodetect_cwd_data(isolated: Path) -> None:
    make_layout(isolated / "data", "aime")
    assert resolve_data_dir(None) == (isolated / "data").resolve()


def test_autodetect_sibling_shared_data(isolated: Path) -> None:
    shared = make_layout(isolated.parent / "shared" / "data")
    assert resolve_data_dir(None) == shared.resolve()


def test_autodetect_repo_relative(isolated: Path, tmp_path: Path, monkeypatch) -> None:
    repo = tmp_path / "elsewhere" / "repo"
    repo.mkdir(parents=True)
    monkeypatch.setattr(data, "_REPO_ROOT", repo)
    shared = make_layout(repo.parent / "shared" / "data")
    assert resolve_data_dir(None) == shared.resolve()


def test_autodetect_a_gsm8k_only_copy(isolated: Path) -> None:
    make_layout(isolated / "data", "gsm8k")  # a user who copied only GSM8K still reads it locally
    assert resolve_data_dir(None) == (isolated / "data").resolve()


def test_dir_without_layout_is_ignored(isolated: Path) -> None:
    (isolated / "data" / "unrelated").mkdir(parents=True)
    assert resolve_data_dir(None) is None


def test_nothing_found_means_hub(isolated: Path) -> None:
    assert resolve_data_dir(None) is None


def test_read_jsonl_ok_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1, "b": "x"}\n\n{"a": 2, "b": "y", "extra": true}\n', encoding="utf-8")
    assert read_jsonl(path, ["a", "b"]) == [{"a": 1, "b": "x"}, {"a": 2, "b": "y", "extra": True}]


def test_read_jsonl_bad_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": \n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_jsonl(path, ["a"])
    message = str(info.value)
    assert str(path) in message and "line 3" in message and "not valid JSON" in message


def test_read_jsonl_missing_field_names_field_and_line(tmp_path: Path) -> None:
    path = tmp_path / "missing.jsonl"
    path.write_text('{"a": 1, "b": 2}\n{"a": 1}\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_jsonl(path, ["a", "b"])
    message = str(info.value)
    assert str(path) in message and "line 2" in message and "b" in message


def test_read_jsonl_non_object_row(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 1.*not an object"):
        read_jsonl(path, ["a"])


def test_read_jsonl_type_check(tmp_path: Path) -> None:
    path = tmp_path / "typed.jsonl"
    path.write_text('{"answer": true}\n{"answer": "false"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2.*'answer'.*expected bool"):
        read_jsonl(path, ["answer"], types={"answer": bool})


def test_read_jsonl_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Cannot read"):
        read_jsonl(tmp_path / "absent.jsonl", ["a"])


def test_local_file(tmp_path: Path) -> None:
    target = tmp_path / "boolq" / "validation.jsonl"
    target.parent.mkdir()
    target.write_text("", encoding="utf-8")
    assert local_file(tmp_path, "boolq/validation.jsonl", "boolq") == target
    with pytest.raises(DataError) as info:
        local_file(tmp_path, "mmlu/test.jsonl", "mmlu")
    message = str(info.value)
    assert "mmlu" in message and str(tmp_path / "mmlu" / "test.jsonl") in message
    assert "--data-dir" in message and "OPD_DATA_DIR" in message and "shared/data" in message


def test_data_error_is_value_error() -> None:
    assert issubclass(DataError, ValueError)


ROWS = [{"a": 1, "b": "x"}, {"a": 2, "b": "line\u2028separator inside a string"}]
LF_TEXT = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in ROWS)


@pytest.mark.parametrize("raw", [
    pytest.param(b"\xef\xbb\xbf" + LF_TEXT.encode(), id="utf-8 byte-order mark"),
    pytest.param(LF_TEXT.replace("\n", "\r\n").encode(), id="CRLF"),
    pytest.param(b"\xef\xbb\xbf" + LF_TEXT.replace("\n", "\r\n").encode(), id="byte-order mark and CRLF"),
    pytest.param(LF_TEXT.replace("\n", "\r").encode(), id="CR (old Mac)"),
    pytest.param(LF_TEXT.encode("utf-16"), id="utf-16 with its mark"),
    pytest.param(b"\xfe\xff" + LF_TEXT.encode("utf-16-be"), id="utf-16 big-endian"),
    pytest.param(LF_TEXT.replace("\n", "\r\n").encode() + b"\r\n\r\n", id="trailing blank CRLF lines"),
])
def test_read_jsonl_reads_spreadsheet_and_editor_exports(tmp_path: Path, raw: bytes) -> None:
    """Files as exports save them load like a plain UTF-8/LF file; U+2028 inside a string is no line break."""
    path = tmp_path / "export.jsonl"
    path.write_bytes(raw)
    assert read_jsonl(path, ["a", "b"]) == ROWS


def test_read_jsonl_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"a": 1}\r\n{"a": "caf\u00e9"}\r\n'.encode("latin-1"))
    with pytest.raises(DataError) as info:
        read_jsonl(path, ["a"])
    message = str(info.value)
    assert f"{path}, line 2 is not UTF-8 text (byte 0xe9)" in message and "Save the file as UTF-8" in message


def test_a_task_loads_a_data_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    from harness.api.task import resolve_task

    rows = [{"idx": i, "question": f"is it {i}", "passage": "p", "answer": i % 2 == 0} for i in range(2)]
    text = "".join(json.dumps(row) + "\r\n" for row in rows)
    (tmp_path / "boolq").mkdir()
    (tmp_path / "boolq" / "validation.jsonl").write_bytes(b"\xef\xbb\xbf" + text.encode())
    questions = resolve_task("boolq").load(tmp_path)
    assert [(q.id, q.gold) for q in questions] == [("boolq-0", "yes"), ("boolq-1", "no")]
