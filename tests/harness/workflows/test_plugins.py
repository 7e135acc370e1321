"""Plugin discovery (harness.workflows.plugins): an --include file is imported once per process however often it is
named, under a module name of its own; a missing file is one message naming the flag."""
from __future__ import annotations

import sys

import pytest

from harness.workflows.plugins import load_file


def test_an_include_file_runs_once_and_lands_in_sys_modules(tmp_path):
    marks = tmp_path / "imports.txt"
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(f"with open({str(marks)!r}, 'a') as f:\n    f.write('imported\\n')\n")
    load_file(plugin)
    load_file(tmp_path / "." / "my_plugin.py")  # the same file by another spelling of its path
    assert marks.read_text() == "imported\n"
    names = [name for name, module in sys.modules.items() if getattr(module, "__file__", None) == str(plugin)]
    assert len(names) == 1 and names[0].startswith("opd_plugin_my_plugin_")


def test_a_missing_include_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--include .*nothing\.py: no such file"):
        load_file(tmp_path / "nothing.py")
