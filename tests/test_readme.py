"""The README's promises: its plugin example works verbatim, and .ci/run calls its test command."""
from __future__ import annotations

import re
from pathlib import Path

from harness.cli.main import main
from harness.sampling.teacher import TEACHERS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    command = re.search(r"Run the tests:\s*```bash\n(.+?)\n```", README, re.S).group(1).strip()
    assert command in (ROOT / ".ci" / "run").read_text()


def test_readme_plugin_example_runs_verbatim(tmp_path, capsys):
    code = re.search(r"```python\n(# my_teacher\.py\n.+?)```", README, re.S).group(1)
    plugin = tmp_path / "my_teacher.py"
    plugin.write_text(code)
    try:
        exit_code = main(["--include", str(plugin), "run", "--task", "test-parity", "--student", "tiny-random",
                          "--teacher", "self:hint", "--teacher", "self", "--limit", "1", "--rollouts", "3",
                          "--max-new-tokens", "6", "--out", str(tmp_path / "run"), "--quiet"])
        assert exit_code == 0
        assert "self:hint" in capsys.readouterr().out
    finally:
        TEACHERS.remove("self:hint")
