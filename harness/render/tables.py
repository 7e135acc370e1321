"""Rendering of report tables: md / csv / json / latex strings (:func:`format_table`), the terminal views of a
leaderboard and its teacher pairs (:func:`print_rich`, :func:`print_pairs`) and several named tables in one output
(:func:`format_sections`).

Nothing here computes a statistic: tables arrive finished from :mod:`harness.reports.leaderboard`, :mod:`harness.reports.analysis`,
:mod:`harness.reports.compare` or :mod:`harness.workflows.accuracy`. Machine-readable formats (csv, json) keep every digit; md, latex
and the terminal round for reading.

The terminal view of a leaderboard shows the essential columns only (teacher, loss, n, ``walign`` with its interval,
the within-question ok-minus-bad contrast with its interval, the rank group); ``wide=True`` (``--wide``) adds the
rest, and every file format keeps every column. Every terminal table fits its console (:func:`print_fitted`): the
trailing columns that do not fit are left out and named in a note, never cut, and notes wrap at the console width.
An estimate from fewer than 10 questions is shown without an interval and marked, with a note saying why (METHOD,
Statistics).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from harness.render.formats import FILE_FORMATS
from harness.reports import stats
from harness.reports.leaderboard import ZERO_GRAD_NOTE

if TYPE_CHECKING:
    from harness.reports.accuracy_report import AccuracyReport
    from harness.reports.depth import DepthSummary

FORMATS = FILE_FORMATS
SMALL_N_MARK = "(n<10)"
SMALL_N_NOTE = (f"{SMALL_N_MARK}: fewer than {stats.MIN_QUESTIONS} questions behind this estimate, too few for a "
                "conclusion, so no interval is shown; diagnose more questions (--limit) before reading anything into it.")
GROUP_NOTE = ("group: teachers that share a letter are not separated by any significant paired test (all pairs of "
              f"the loss with {stats.MIN_QUESTIONS}+ shared questions, Holm-corrected, alpha {stats.ALPHA:g}); 'a' "
              "holds the leader: no paired test puts it behind another, ordered by walign on the questions they share "
              "(walign shown: over each teacher's own questions, n beside it). "
              "Every pair: opd leaderboard RUN --pairs.")
INCONCLUSIVE_NOTE = ("inconclusive: not significant at this n; the true difference may be anything up to the minimum "
                     "detectable effect (mde), so this is never evidence of no difference.")


def _float_columns(df: pd.DataFrame) -> list[str]:
    return [name for name in df.columns if pd.api.types.is_float_dtype(df[name])]


def _is_pvalue(name: str) -> bool:
    # p-values keep 3 significant digits: 3 decimals would print a strong result (p = 1e-4) as 0.000
    return name in ("p", "q") or name.startswith(("p_", "q_"))


def _with_missing(df: pd.DataFrame) -> pd.DataFrame:
    """Float columns as objects with NaN -> None, so tabulate prints its ``missingval`` instead of "nan"."""
    out = df.copy()
    for name in _float_columns(out):
        # dtype=object: a plain list would be re-inferred as float64, turning None back into NaN ("nan" in the table)
        out[name] = pd.Series([None if pd.isna(v) else float(v) for v in out[name]], index=out.index, dtype=object)
    return out


def _plain(value: Any) -> Any:
    """A JSON-ready value: numpy scalars as Python ones, NaN/inf as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_table(df: pd.DataFrame, fmt: str) -> str:
    """Render a table as ``md`` (GitHub), ``csv``, ``json`` (records, NaN -> null) or ``latex`` (booktabs).

    md and latex round floats to 3 decimals and p-values (``p``, ``p_*``, ``q_*``) to 3 significant digits; csv and
    json keep full precision (they are for further computation).
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
        return df.to_csv(index=False, float_format="%.17g")
    if fmt == "json":
        records = [{name: _plain(value) for name, value in row.items()} for row in df.to_dict(orient="records")]
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


def estimate_text(estimate: float, lo: float, hi: float, questions: float, signed: bool = False) -> str:
    """``0.21 [0.15, 0.27]``; below 10 questions ``0.21 (n<10)``; ``—`` when there is no estimate."""
    if estimate is None or pd.isna(estimate):
        return "—"
    number = f"{estimate:+.2f}" if signed else f"{estimate:.2f}"
    if pd.isna(questions) or questions < stats.MIN_QUESTIONS:
        return f"{number} {SMALL_N_MARK}"
    if pd.isna(lo) or pd.isna(hi):
        return number
    return f"{number} [{lo:.2f}, {hi:.2f}]"


def _count_text(values: pd.Series) -> str:
    lo, hi = int(values.min()), int(values.max())
    return str(lo) if lo == hi else f"{lo}–{hi}"


# (header, how a row renders it, right-justified); ESSENTIAL first, WIDE adds the rest
def _n(row) -> str:
    return f"{int(row['align_questions'])} q · {int(row['align_nodes'])}"


LEADERBOARD_VIEW: dict[str, tuple[str, Any, bool]] = {
    "teacher": ("teacher", lambda r: str(r["teacher"]), False),
    "loss": ("loss", lambda r: str(r["loss"]), False),
    "n": ("n (q · nodes)", _n, True),
    "walign": ("walign [95% CI]", lambda r: estimate_text(r["walign"], r["walign_lo"], r["walign_hi"],
                                                          r["align_questions"]), True),
    "ok_minus_bad": ("ok − bad [95% CI]", lambda r: estimate_text(r["ok_minus_bad"], r["ok_minus_bad_lo"],
                                                                  r["ok_minus_bad_hi"], r["ok_bad_questions"], True),
                     True),
    "group": ("group", lambda r: r.get("group") or "—", False),
    # --wide
    "align": ("align [95% CI]", lambda r: estimate_text(r["align"], r["align_lo"], r["align_hi"],
                                                        r["align_questions"]), True),
    "align_correct": ("align ok", lambda r: estimate_text(r["align_correct"], r["align_correct_lo"],
                                                          r["align_correct_hi"], r["correct_questions"]), True),
    "align_incorrect": ("align bad", lambda r: estimate_text(r["align_incorrect"], r["align_incorrect_lo"],
                                                             r["align_incorrect_hi"], r["incorrect_questions"]), True),
    "ok_bad": ("ok/bad (q, BH)", lambda r: f"{r.get('ok_bad_verdict', '')} ({_cell_text(r.get('q_ok_minus_bad'), 'q')})"
               if "ok_bad_verdict" in r else "—", False),
    "mde": ("mde ok/bad", lambda r: _cell_text(r["mde_ok_minus_bad"]), True),
    "pos_frac": ("pos", lambda r: _cell_text(r["pos_frac"]), True),
    "zero_d": ("zero d", lambda r: _cell_text(r["zero_d"]), True),
    "reliability": ("reliab.", lambda r: _cell_text(r["reliability"]), True),
    "behind": ("behind", lambda r: r.get("behind") or "", False),
    "accuracy": ("acc", lambda r: _cell_text(r.get("accuracy", math.nan)), True),
}
ESSENTIAL = ("teacher", "loss", "n", "walign", "ok_minus_bad", "group")


# ---------------------------------------------------------------- terminal tables that fit the console


def hidden_note(headers: Sequence[str], width: int, more: str) -> str:
    """The note under a table some of whose columns did not fit: which, and how to see them."""
    return f"Not shown at {width} columns: {', '.join(headers)} ({more})."


def print_fitted(console, headers: Sequence[str], rows: Sequence[Sequence[str]], *, justify: Sequence[str],
                 keep: int = 1, wide: bool = False, **table_options) -> list[str]:
    """Print a rich table of ``rows`` that fits ``console``: trailing columns are left out (never a cell cut, never
    an ellipsis) until it fits, the first ``keep`` columns always stay, and the headers left out are returned for a
    note. ``wide``: every column, printed at the table's own width (lines longer than the terminal then wrap)."""
    from rich.table import Table

    def cell_width(text: str) -> int:
        return max(console.render_str(line).cell_len for line in str(text).splitlines() or [""])

    widths = [max([cell_width(header), *(cell_width(row[i]) for row in rows)]) for i, header in enumerate(headers)]

    def needed(count: int) -> int:  # a box table: one space of padding on each side, one rule between columns
        return sum(widths[:count]) + 3 * count + 1

    count = len(headers)
    if not wide:
        while count > keep and needed(count) > console.width:
            count -= 1
    table = Table(**table_options)
    for header, side in zip(headers[:count], justify[:count]):
        # cells stay on one line where they fit (a wrapped "[lo,\n hi]" is hard to read), and fold where not
        table.add_column(header, justify=side, no_wrap=needed(count) <= console.width or wide, overflow="fold")
    for row in rows:
        table.add_row(*row[:count])
    width = console.width
    if wide and needed(count) > width:  # rich never prints wider than its console: widened for this table only
        console.width = needed(count)
    try:
        console.print(table)
    finally:
        console.width = width
    return list(headers[count:])


def print_rich(df: pd.DataFrame, console=None, wide: bool = False) -> None:
    """Print one rich table per (task, student): the essential columns (all of them with ``wide``), n stated in the
    caption, and notes for zero-direction rows, small n, rank groups and inconclusive contrasts."""
    from rich.console import Console

    console = console or Console()
    if df.empty:
        console.print("(empty leaderboard: no nodes)")
        return
    views = [name for name in (LEADERBOARD_VIEW if wide else ESSENTIAL)
             if not (name == "accuracy" and ("accuracy" not in df or df["accuracy"].isna().all()))]
    for (task, student), group in df.groupby(["task", "student"], sort=False, dropna=False):
        caption = (f"n = {_count_text(group['questions'])} questions · {_count_text(group['rollouts'])} rollouts · "
                   f"{_count_text(group['informative'])} informative nodes (of {_count_text(group['nodes'])})")
        if group["no_context"].max() > 0:
            caption += f" · {_count_text(group['no_context'])} without teacher context"
        zero = group["zero_d"].eq(1.0)
        rows = []
        for (_, row), is_zero in zip(group.iterrows(), zero):
            record = row.to_dict()
            cells = [LEADERBOARD_VIEW[name][1](record) for name in views]
            if is_zero:
                cells[views.index("teacher")] += " †"
            rows.append(cells)
        hidden = print_fitted(console, [LEADERBOARD_VIEW[name][0] for name in views], rows,
                              justify=["right" if LEADERBOARD_VIEW[name][2] else "left" for name in views], keep=2,
                              wide=wide, title=f"{task} · student {student}", caption=caption)
        notes = [hidden_note(hidden, console.width, "--wide, or --format md or json")] if hidden else []
        if zero.any():
            notes.append(f"† {ZERO_GRAD_NOTE}")
        small = (group["align_questions"] < stats.MIN_QUESTIONS) | (group["ok_bad_questions"] < stats.MIN_QUESTIONS)
        if small.any():
            notes.append(SMALL_N_NOTE)
        if "group" in group and group["group"].astype(str).str.len().gt(0).any():
            notes.append(GROUP_NOTE)
        untested = sorted({" – ".join(sorted((r["teacher"], o))) for _, r in group.iterrows()
                           for o in str(r.get("untested") or "").split(", ") if o})
        if untested:
            notes.append(f"not tested (fewer than {stats.MIN_QUESTIONS} shared questions; not the same as not "
                         f"separated): {', '.join(untested)}")
        if "ok_bad_verdict" in group and group["ok_bad_verdict"].eq("inconclusive").any():
            notes.append("ok − bad: the within-question contrast of alignment on correct minus incorrect paths. "
                         + INCONCLUSIVE_NOTE)
        for note in notes:
            console.print(note, highlight=False)


PAIR_VIEW = {
    "teacher": ("teacher", lambda r: str(r["teacher"]), False),
    "other": ("other", lambda r: str(r["other"]), False),
    "loss": ("loss", lambda r: str(r["loss"]), False),
    "diff": ("diff [95% CI]", lambda r: estimate_text(r["diff"], r["diff_lo"], r["diff_hi"], r["questions"], True),
             True),
    # the verdict before its numbers: a console too narrow for all leaves out the trailing columns
    "verdict": ("verdict", lambda r: str(r["verdict"]), False),
    # a Monte Carlo p at its floor 1/(permutations+1): the true p is at most that (numpy bools: compare, not `is`)
    "p_holm": ("p (Holm)",
               lambda r: ("<= " if r.get("p_at_floor") == True else "") + _cell_text(r["p_holm"], "p"),  # noqa: E712
               True),
    "questions": ("q", lambda r: str(int(r["questions"])), True),
    "mde": ("mde", lambda r: _cell_text(r["mde"]), True),
}


def print_pairs(df: pd.DataFrame, console=None, wide: bool = False) -> None:
    """Every teacher pair of a leaderboard (``opd leaderboard --pairs``): the tested difference with its interval,
    the Holm-corrected p-value, its n in questions, the minimum detectable effect and the verdict."""
    from rich.console import Console

    console = console or Console()
    if df.empty:
        console.print("(no teacher pairs: fewer than two teachers with an alignment)")
        return
    for (task, student), group in df.groupby(["task", "student"], sort=False, dropna=False):
        rows = [[render(row.to_dict()) for _, render, _ in PAIR_VIEW.values()] for _, row in group.iterrows()]
        hidden = print_fitted(console, [header for header, _, _ in PAIR_VIEW.values()], rows,
                              justify=["right" if right else "left" for _, _, right in PAIR_VIEW.values()], keep=2,
                              wide=wide, title=f"teacher pairs · {task} · student {student}",
                              caption="diff = walign(teacher) − walign(other) on the nodes both share; paired "
                                      "sign-flip test over questions, Holm over all pairs of the loss with "
                                      f"{stats.MIN_QUESTIONS}+ shared questions (the others: not tested)")
        if hidden:
            console.print(hidden_note(hidden, console.width, "--wide, or --format md or json"),
                          highlight=False)
        if (group["questions"] < stats.MIN_QUESTIONS).any():
            console.print(SMALL_N_NOTE, highlight=False)
        if group["verdict"].eq("inconclusive").any():
            console.print(INCONCLUSIVE_NOTE, highlight=False)


def format_sections(sections: Mapping[str, pd.DataFrame], fmt: str, console=None,
                    notes: Sequence[str] = (), wide: bool = False) -> str | None:
    """Several named tables (``opd analyze``, ``opd compare``, ``opd plan``) in one output: ``rich`` prints (returns
    None), ``json`` is one object keyed by section, the other formats put a heading line before each table.
    ``notes`` are printed after the tables (rich, md) or kept as a ``notes`` list (json). In the terminal each
    table fits the console, leaving out trailing columns with a note naming them; ``wide``: every column."""
    if fmt == "rich":
        from rich.console import Console
        from rich.markup import escape

        console = console or Console()
        hidden_notes = []
        for name, df in sections.items():
            # a task or student that is the same on every row goes into the title, as on the leaderboard
            for column, label in (("task", ""), ("student", "student ")):
                if column in df and len(df) > 0 and df[column].nunique(dropna=False) == 1:
                    name, df = f"{name} · {label}{df[column].iloc[0]}", df.drop(columns=column)
            rows = [[_cell_text(row[column], str(column)) for column in df.columns] for _, row in df.iterrows()]
            empty = [i for i in range(len(df.columns)) if rows and all(row[i] in ("", "—") for row in rows)]
            df = df.drop(columns=df.columns[empty])  # a column without a value says nothing: left out
            rows = [[cell for i, cell in enumerate(row) if i not in empty] for row in rows]
            headers = [str(column) for column in df.columns]
            justify = ["right" if pd.api.types.is_numeric_dtype(df[column]) else "left" for column in df.columns]
            hidden = print_fitted(console, headers, rows, justify=justify, keep=1, wide=wide, title=escape(name))
            if hidden:
                hidden_notes.append(f"{name}: " + hidden_note(hidden, console.width,
                                                              "--wide, or --format md or json"))
        for note in [*notes, *hidden_notes]:
            console.print(note, highlight=False)
        return None
    if fmt == "json":
        data: dict[str, Any] = {name: json.loads(format_table(df, "json")) for name, df in sections.items()}
        if notes:
            data["notes"] = list(notes)
        return json.dumps(data, indent=2)
    heading = {"md": "## {}", "latex": "% {}", "csv": "# {}"}[fmt] if fmt in FORMATS else None
    if heading is None:
        raise ValueError(f"unknown format {fmt!r}; expected rich or one of {', '.join(FORMATS)}")
    text = "\n\n".join(f"{heading.format(name)}\n\n{format_table(df, fmt)}" for name, df in sections.items())
    if notes and fmt == "md":
        text += "\n\n" + "\n".join(f"- {note}" for note in notes)
    return text


def print_sections(sections: Mapping[str, pd.DataFrame], fmt: str, console=None, notes: Sequence[str] = (),
                   wide: bool = False) -> None:
    """:func:`format_sections` to the terminal (rich prints itself; the text formats go to stdout)."""
    text = format_sections(sections, fmt, console, notes=notes, wide=wide)
    if text is not None:
        print(text)


# ---------------------------------------------------------------- opd accuracy


def format_accuracy(report: "AccuracyReport", fmt: str) -> str:
    """``md``: two GitHub tables and the notes; ``csv``: two tables separated by a blank line, notes as ``#`` lines;
    ``json``: config, rows, breakdown and notes (per-question answers only in ``--out`` files)."""
    if fmt == "json":
        return json.dumps(report.to_dict(include_questions=False), indent=2, allow_nan=False, default=str)
    if fmt not in ("md", "csv"):
        raise ValueError(f"unknown format {fmt!r}; expected md, csv or json")
    tables = [format_table(_frame(report.rows), fmt)]
    if report.breakdown:
        tables.append(format_table(_frame(report.breakdown), fmt))
    if fmt == "md":
        return "\n\n".join(tables) + "\n\n" + "\n".join(f"- {note}" for note in report.notes)
    return "\n".join(t.rstrip("\n") + "\n" for t in tables) + "\n".join(f"# {note}" for note in report.notes)


def _frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Records -> DataFrame where only true float columns are float: pandas would turn a count column with a
    missing value (the student row has no paired counts) into floats printed as "2.000", and None into NaN."""
    frame = pd.DataFrame(records)
    for name in frame.columns:
        values = [record.get(name) for record in records]
        if not all(isinstance(v, float) or v is None for v in values):
            frame[name] = pd.Series(values, dtype=object, index=frame.index)
    return frame


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def print_accuracy(report: "AccuracyReport", console=None, wide: bool = False) -> None:
    """The accuracy table of ``opd accuracy``, its difficulty breakdown and its notes; columns that do not fit the
    console are left out and named in a note (``wide``: every column)."""
    from rich.console import Console
    from rich.markup import escape

    console = console or Console()
    config = report.config
    # unparsed (no answer found) stands beside accuracy: not correct, and not a wrong answer either
    columns = (("condition", "left"), ("accuracy", "right"), ("95% CI", "right"), ("unparsed", "right"),
               ("questions", "right"),
               ("Δ", "right"), ("p (sign-flip)", "right"), ("student, same answers", "right"),
               ("questions +/-", "right"), ("model", "left"))
    rows = []
    for row in report.rows:
        ci = "—" if row["ci_low"] is None else f"{row['ci_low']:.3f}–{row['ci_high']:.3f}"
        n = str(row["questions"]) + (f" ({row['unavailable']} n/a)" if row["unavailable"] else "")
        flips = "" if row["better"] is None else f"+{row['better']}/-{row['worse']}"
        delta = "" if row["delta"] is None else f"{row['delta']:+.3f}"
        p = "" if row["p_sign_flip"] is None else f"{row['p_sign_flip']:.3g}"
        same = "" if row["student_same"] is None else f"{row['student_same']:.3f}"
        unparsed = "n/a" if row.get("unparsed") is None else _cell(float(row["unparsed"]))  # None: not recorded
        rows.append([row["condition"], _cell(row["accuracy"]), ci, unparsed, n, delta, p, same, flips,
                     row["model"]])
    title = (f"accuracy · {config.get('task_name', config.get('task'))} · student {config.get('student')} · "
             f"{config.get('decoding', '')}")
    hidden = [print_fitted(console, [name for name, _ in columns], rows, justify=[side for _, side in columns],
                           keep=4, wide=wide, title=title)]
    if report.breakdown:
        names = ["dimension", "bin", "n", *(row["condition"] for row in report.rows)]
        hidden.append(print_fitted(console, names, [[_cell(entry[name]) for name in names]
                                                    for entry in report.breakdown],
                                   justify=["left", "left", *["right"] * (len(names) - 2)], keep=3, wide=wide,
                                   title="accuracy by difficulty"))
    notes = [*report.notes, *(hidden_note(h, console.width, "--wide, or --format md or json") for h in hidden if h)]
    for note in notes:
        console.print(f"[dim]· {escape(note)}[/]", highlight=False)


def depth_text(summary: "DepthSummary", label: str | None = None) -> str:
    """One line saying where a run's informative nodes are (:mod:`harness.reports.depth`), with METHOD's warning when most
    of them sit on the first response token; ``label`` (e.g. "task · student") leads it when given."""
    lead = f"Where the nodes are{f' ({label})' if label else ''}: "
    of = f" (of {summary.selected} selected)" if summary.selected is not None else ""
    if not summary.nodes:
        return lead + f"no informative node{of}, so no spread over depth to state."
    q1, q2, q3 = summary.quartiles
    text = (lead + f"{summary.nodes} informative nodes{of}, {summary.first_token_share:.0%} at the first response "
            f"token; depth_norm quartiles {q1:.2f} / {q2:.2f} / {q3:.2f}.")
    if summary.mostly_first_token:
        text += (" Most sit on the first response token, a state every rollout shares: these tables measure the "
                 "answer prior, not a reasoning chain (METHOD, Where the nodes are).")
    return text


def print_depth(summaries: Mapping[tuple[str, str], "DepthSummary"], console=None) -> None:
    """:func:`depth_text` per (task, student) (``harness.reports.depth.depth_summaries``), labelled when there are several:
    the footer of a leaderboard and part of a run's summary."""
    from rich.console import Console

    console = console or Console()
    for (task, student), summary in summaries.items():
        console.print(depth_text(summary, f"{task} · {student}" if len(summaries) > 1 else None), highlight=False)
