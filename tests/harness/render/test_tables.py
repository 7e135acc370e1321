"""harness.render.tables: formats parse back (csv/json at full precision), the terminal leaderboard fits an ordinary
terminal and says when an n is too small, and the pair view states the tested difference."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from harness.render.tables import (
    GROUP_NOTE,
    SMALL_N_MARK,
    SMALL_N_NOTE,
    estimate_text,
    format_table,
    print_pairs,
    print_rich,
)
from harness.reports import stats
from harness.reports.leaderboard import build, leaderboard
from harness.storage.records import LOSS_NAMES
from tests.helpers import DEMO, SELF, WRONG, node_row, synthetic_rows

FAST = stats.Options(permutations=500, resamples=50)


def board():
    return build(pd.DataFrame(synthetic_rows()), options=FAST)


def rendered(table, width=100, **options) -> str:
    buffer = io.StringIO()
    print_rich(table, Console(file=buffer, width=width, color_system=None), **options)
    return buffer.getvalue()


def test_formats_parse_back_with_full_precision_in_csv_and_json():
    table = board().table
    records = json.loads(format_table(table, "json"))
    assert len(records) == len(table)
    for record, (_, row) in zip(records, table.iterrows()):
        assert record["teacher"] == row.teacher
        assert record["walign"] == (None if math.isnan(row.walign) else row.walign)  # every digit
    back = pd.read_csv(io.StringIO(format_table(table, "csv")))
    assert list(back.columns) == list(table.columns)
    np.testing.assert_array_equal(back["walign"].to_numpy(), table["walign"].to_numpy())
    md = format_table(table, "md")
    assert md.splitlines()[0].startswith("| task") and len(md.splitlines()) == len(table) + 2
    one = table[(table.teacher == DEMO) & (table.loss == "rkl")]
    assert f"{one.iloc[0]['walign']:.3f}" in format_table(one, "md")  # md rounds for reading
    assert "\\toprule" in format_table(table, "latex")
    with pytest.raises(ValueError, match="unknown format"):
        format_table(table, "xml")


@pytest.mark.parametrize("width", [100, 120])
def test_terminal_view_fits_an_ordinary_terminal(width):
    text = rendered(board().table, width=width)
    table_lines = [line for line in text.splitlines() if line.startswith(("┃", "│", "┏", "┡", "└"))]
    assert table_lines and max(len(line) for line in table_lines) <= width
    for header in ("teacher", "loss", "n (q · nodes)", "walign [95% CI]", "ok − bad [95% CI]", "group"):
        assert header in text
    assert "[" in text  # 12 questions: intervals are shown
    assert "n = 12 questions · 36 rollouts" in text


def test_wide_view_adds_the_other_columns():
    narrow, wide = rendered(board().table), rendered(board().table, width=250, wide=True)
    def header_row(text: str) -> str:
        return next(line for line in text.splitlines() if line.startswith("┃") and "teacher" in line)

    for header in ("align ok", "align bad", "zero d", "reliab.", "mde ok/bad", "behind"):
        assert header in header_row(wide) and header not in header_row(narrow)


def test_zero_direction_rows_are_marked_and_explained():
    text = rendered(board().table, width=160)
    assert f"{SELF} †" in text and "zero distillation direction" in text
    without = rendered(board().table.query("teacher != @SELF"), width=160)
    assert "†" not in without


def test_small_n_is_said_in_words_and_no_interval_is_shown():
    rows = [node_row("boolq", "s", teacher, f"q{q}", r, 0, rollout_correct=bool(r),
                     **{f"align_{l}": 0.1 * q for l in LOSS_NAMES}) for teacher in ("A", "B")
            for q in range(4) for r in range(2)]
    table = leaderboard(pd.DataFrame(rows), options=FAST)
    text = rendered(table, width=200)
    assert SMALL_N_MARK in text and "too few for a conclusion" in text and SMALL_N_NOTE.split(":")[0] in text
    assert estimate_text(0.25, math.nan, math.nan, 4) == f"0.25 {SMALL_N_MARK}"
    assert estimate_text(0.25, 0.1, 0.4, 12) == "0.25 [0.10, 0.40]"
    assert estimate_text(math.nan, 0.1, 0.4, 12) == "—"
    assert GROUP_NOTE.split(":")[0] in text


def test_pair_view_states_the_tested_difference():
    pairs = board().pairs
    buffer = io.StringIO()
    print_pairs(pairs, Console(file=buffer, width=140, color_system=None))
    text = buffer.getvalue()
    assert DEMO in text and WRONG in text and "diff = walign(teacher) − walign(other)" in text
    for verdict in pairs.verdict:
        assert verdict in text
    empty = io.StringIO()
    print_pairs(pairs.iloc[0:0], Console(file=empty))
    assert "no teacher pairs" in empty.getvalue()


def test_empty_leaderboard_prints_a_line():
    buffer = io.StringIO()
    print_rich(leaderboard(pd.DataFrame(columns=["task", "student", "teacher", "question_id"])),
               Console(file=buffer))
    assert "empty leaderboard" in buffer.getvalue()
