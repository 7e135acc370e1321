"""harness.cli.options: the report commands' shared flags, their defaults, and a parser that builds without heavy
imports (so `opd leaderboard --help` answers at once)."""
from __future__ import annotations

import subprocess
import sys

from harness.cli.options import DEFAULT_PERMUTATIONS, DEFAULT_RESAMPLES, check_options
from harness.reports import stats


def test_help_defaults_are_the_stats_defaults():
    assert (DEFAULT_RESAMPLES, DEFAULT_PERMUTATIONS) == (stats.RESAMPLES, stats.PERMUTATIONS)
    assert check_options() == stats.Options()


def test_building_the_parser_imports_neither_torch_nor_scipy():
    code = ("import sys; from harness.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'scipy.stats', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
