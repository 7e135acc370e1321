"""Rendering of report tables: md / csv / json / latex strings (:func:`format_table`), the terminal view of a
leaderboard (:func:`print_rich`) and several named tables in one output (:func:`format_sections`).

Nothing here computes a statistic: tables arrive finished from :mod:`harness.leaderboard`, :mod:`harness.analysis`,
:mod:`harness.compare` or :mod:`harness.accuracy`.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from harness.leaderboard import ALPHA, ZERO_GRAD_NOTE

FORMATS = ("md", "csv", "json", "latex")

# interval columns shown next to their estimate in the terminal: estimate -> (lo, hi); align's own interval is left
# to the file formats, so that the table fits a 160-column terminal
INTERVALS = {"walign": ("walign_lo", "walign_hi"), "corr_minus_incorr": ("diff_lo", "diff_hi")}
RICH_HIDDEN = ("task", "student", "p_corr_incorr", "align_lo", "align_hi")
# counts stated once in the caption, shown as columns only where they differ between rows
CAPTION_COUNTS = ("questions", "rollouts", "nodes", "no_context")


def _float_columns(df: pd.DataFrame) -> list[str]:
    return [name for name in df.columns if pd.api.types.is_float_dtype(df[name])]


def _is_pvalue(name: str) -> bool:
    # p-values keep 3 significant digits: 3 decimals would print a strong result (p = 1e-4) as 0.000
    return name.startswith(("p_", "q_"))


def _round(name: str, value: float) -> float:
    return float(f"{value:.3g}") if _is_pvalue(name) else round(float(value), 3)


def _with_missing(df: pd.DataFrame) -> pd.DataFrame:
    """Float columns as objects with NaN -> None, so tabulate prints its ``missingval`` instead of "nan"."""
    out = df.copy()
    for name in _float_columns(out):
        # dtype=object: a plain list would be re-inferred as float64, turning None back into NaN ("nan" in the table)
        out[name] = pd.Series([None if pd.isna(v) else float(v) for v in out[name]], index=out.index, dtype=object)
    return out


def format_table(df: pd.DataFrame, fmt: str) -> str:
    """Render a leaderboard as ``md`` (GitHub), ``csv``, ``json`` (records, NaN -> null) or ``latex`` (booktabs).

    Floats are rounded to 3 decimals in every format, p-values (``p_*``, ``q_*``) to 3 significant digits.
    """
    from tabulate import tabulate

    floatfmt = [".3g" if _is_pvalue(name) else ".3f" for name in df.columns]
    if fmt == "md":
        return tabulate(_with_missing(df), headers="keys", tablefmt="github", floatfmt=floatfmt, showindex=False,
                        missingval="—")
    if fmt == "latex":
        # "--" rather than an em dash: pdflatex without unicode input chokes on U+2014
        return tabulate(_with_missing(df), headers="keys", tablefmt="latex_booktabs", floatfmt=floatfmt,
                        showindex=False, missingval="--")
    if fmt == "csv":
        out = df.copy()
        for name in _float_columns(out):
            out[name] = [math.nan if pd.isna(v) else _round(name, v) for v in out[name]]
        return out.to_csv(index=False)
    if fmt == "json":
        floats = set(_float_columns(df))
        records = [
            {
                name: (None if pd.isna(value) else _round(name, value)) if name in floats
                else (value.item() if isinstance(value, np.generic) else value)
                for name, value in row.items()
            }
            for row in df.to_dict(orient="records")
        ]
        return json.dumps(records, indent=2, allow_nan=False)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _cell_text(value: Any, name: str = "") -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else ""
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "—"
        return f"{value:.3g}" if _is_pvalue(name) else f"{value:.3f}"
    return str(value)


def _interval_text(row: pd.Series, name: str) -> str:
    lo, hi = (row[bound] for bound in INTERVALS[name])
    text = _cell_text(row[name])
    if pd.isna(lo) or pd.isna(hi):
        return text
    return f"{row[name]:.2f} [{lo:.2f},{hi:.2f}]"


def _count_text(values: pd.Series) -> str:
    lo, hi = int(values.min()), int(values.max())
    return str(lo) if lo == hi else f"{lo}–{hi}"


# terminal headers: short enough that the table fits a wide terminal
RICH_HEADERS = {"questions": "q", "rollouts": "roll", "nodes": "nodes", "informative": "inform", "no_context": "no ctx",
                "walign": "walign [95% CI]", "align_correct": "align ok",
                "align_incorrect": "align bad", "corr_minus_incorr": "ok − bad [95% CI]", "p_corr_incorr": "p ok/bad",
                "q_corr_incorr": "q ok/bad (BH)", "p_vs_leader": "p vs lead (Holm)", "pos_frac": "pos",
                "zero_grad": "zero d", "accuracy": "acc"}


def print_rich(df: pd.DataFrame, console=None) -> None:
    """Print one rich Table per (task, student), with n stated in the caption and the zero-gradient footnote.

    Interval bounds are shown next to their estimate (``INTERVALS``) rather than as columns of their own.
    """
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if df.empty:
        console.print("(empty leaderboard: no nodes)")
        return
    bounds = {bound for name, pair in INTERVALS.items() if name in df.columns and set(pair) <= set(df.columns)
              for bound in pair}
    # the terminal shows only the BH-corrected ok/bad p-value (the raw one is in every file format)
    columns = [name for name in df.columns if name not in RICH_HIDDEN and name not in bounds]
    if "accuracy" in columns and df["accuracy"].isna().all():
        columns.remove("accuracy")  # no accuracy.json: an all-dash column says nothing
    for (task, student), group in df.groupby(["task", "student"], sort=False, dropna=False):
        shown = [name for name in columns if name not in CAPTION_COUNTS or group[name].nunique(dropna=False) > 1]
        has_zero = "zero_grad" in group.columns and bool((group["zero_grad"] == 1.0).any())
        caption = None
        if {"questions", "rollouts", "informative"} <= set(group.columns):
            caption = (f"n = {_count_text(group['questions'])} questions · {_count_text(group['rollouts'])} rollouts"
                       f" · {_count_text(group['informative'])} informative nodes")
            if "nodes" in group.columns:
                caption += f" (of {_count_text(group['nodes'])})"
            if "no_context" in group.columns and group["no_context"].max() > 0:
                caption += f" · {_count_text(group['no_context'])} without teacher context"
        table = Table(title=f"{task} · student {student}", caption=caption)
        for name in shown:
            # interval cells stay on one line; a wrapped "[lo,\n hi]" is hard to read
            numeric = pd.api.types.is_numeric_dtype(group[name]) and not pd.api.types.is_bool_dtype(group[name])
            table.add_column(RICH_HEADERS.get(name, name), justify="right" if numeric else "left",
                             no_wrap=not numeric or name in INTERVALS)
        for _, row in group.iterrows():
            cells = [_interval_text(row, name) if INTERVALS.get(name, ("",))[0] in bounds else _cell_text(row[name], name)
                     for name in shown]
            if has_zero and row.get("zero_grad") == 1.0 and "teacher" in shown:
                # mark the row, keep the number itself plain: 1.000 is a true value, not an error
                cells[shown.index("teacher")] += " †"
            table.add_row(*cells)
        console.print(table)
        if has_zero:
            console.print(f"† {ZERO_GRAD_NOTE}")
        if "behind" in shown and bool(group["behind"].any()):
            console.print("behind: significantly below the loss's leader by walign (paired sign-flip test over "
                          f"questions, Holm-corrected, alpha {ALPHA})")


def format_sections(sections: Mapping[str, pd.DataFrame], fmt: str, console=None) -> str | None:
    """Several named tables (``opd analyze``, ``opd compare``) in one output: ``rich`` prints (returns None), ``json``
    is one object keyed by section, the other formats put a heading line before each table."""
    if fmt == "rich":
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        for name, df in sections.items():
            table = Table(title=name)
            for column in df.columns:
                table.add_column(str(column), justify="right" if pd.api.types.is_numeric_dtype(df[column]) else "left")
            for _, row in df.iterrows():
                table.add_row(*(_cell_text(row[column], str(column)) for column in df.columns))
            console.print(table)
        return None
    if fmt == "json":
        return json.dumps({name: json.loads(format_table(df, "json")) for name, df in sections.items()}, indent=2)
    heading = {"md": "## {}", "latex": "% {}", "csv": "# {}"}[fmt] if fmt in FORMATS else None
    if heading is None:
        raise ValueError(f"unknown format {fmt!r}; expected rich or one of {', '.join(FORMATS)}")
    return "\n\n".join(f"{heading.format(name)}\n\n{format_table(df, fmt)}" for name, df in sections.items())

