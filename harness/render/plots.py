"""``opd plot``: figures of one run (matplotlib, Agg backend; each figure saved as PNG and PDF).

- ``depth``: mean alignment by normalised depth (equal-width bins) per teacher, one panel per loss;
- ``correctness``: distribution of node alignment per teacher on correct paths, on paths with a wrong answer and,
  where the run has any, on paths with no parseable answer (``unparsed``: a third outcome, METHOD Categorical
  answers, never drawn among the wrong answers), one panel per loss;
- ``divergence``: alignment of one loss against each divergence column, per teacher: every node as a faint dot,
  and the mean of quantile bins of at least :data:`MIN_BIN_NODES` nodes (no bins when there are too few nodes).

Made to be read at a glance: one colour per teacher in every panel and one legend naming every series (a teacher
with no alignment at all, such as ``self`` whose distillation gradient is zero, is named with the reason); each
binned mean is annotated with the number of questions it rests on; an estimate from fewer than
:data:`MIN_QUESTIONS` questions (METHOD.md, Statistics) is drawn hollow, without interval, and the legend says it
is too few for a conclusion; constrained layout keeps titles, labels and the legend apart.

Error bars are the leaderboard's 95% intervals (:func:`harness.reports.stats.cluster_mean`: the sign-flip test over
questions, inverted), none below 10 questions.
Nodes whose distillation gradient is exactly zero have no defined cosine (METHOD.md) and enter no mean.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on the machines this runs on
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from harness.reports import stats  # noqa: E402
from harness.reports.analysis import DIVERGENCES  # noqa: E402
from harness.reports.leaderboard import REFERENCE_TEACHER, TEACHER_LOSSES, iter_cells  # noqa: E402
from harness.storage import records  # noqa: E402

FORMATS = ("png", "pdf")
DEPTH_BINS = 5
DIVERGENCE_BINS = 5
MIN_QUESTIONS = stats.MIN_QUESTIONS  # METHOD.md, Statistics: below it no interval, too few for a conclusion
MIN_BIN_NODES = 10  # a divergence bin holds at least this many nodes; fewer nodes are shown as dots only
TOO_FEW = f"fewer than {MIN_QUESTIONS} questions: too few for a conclusion"
YLIM = (-1.08, 1.08)  # alignment is a cosine: the same scale in every panel and figure
DIVERGENCE_LABELS = {records.KL_STUDENT_TEACHER: "KL(p‖q)", records.KL_TEACHER_STUDENT: "KL(q‖p)",
                     records.L2: "L2(p, q)", records.COS_PQ: "cos(p, q)", records.TV: "TV(p, q)",
                     records.TOPK_SHARED_MASS: f"shared top-{records.SHARED_TOP_K} mass"}


def binned_means(x, values, clusters, edges, *, permutations: int, seed: int = 0) -> pd.DataFrame:
    """Per bin of ``x`` (``edges``): centre, mean of ``values``, its question-level interval, nodes and questions.

    Nodes with a non-finite ``x`` or value are left out; empty bins are left out.
    """
    x, values, clusters = np.asarray(x, dtype=float), np.asarray(values, dtype=float), np.asarray(clusters, dtype=object)
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    records = []
    for b in range(len(edges) - 1):
        inside = (which == b) & np.isfinite(x) & np.isfinite(values)
        if not inside.any():
            continue
        # the leaderboard's interval (none below 10 questions)
        ci = stats.cluster_mean(values[inside], clusters[inside], permutations=permutations, seed=seed)
        records.append({"x": float(np.mean(x[inside])), "mean": ci.estimate, "lo": ci.lo, "hi": ci.hi,
                        "n": ci.n, "questions": ci.questions})
    return pd.DataFrame.from_records(records, columns=["x", "mean", "lo", "hi", "n", "questions"])


def _cells(nodes: pd.DataFrame, loss: str):
    """Cells of one loss: the grpo reference has no teacher, so it only appears with loss ``grpo``."""
    return [cell for cell in iter_cells(nodes) if cell.loss == loss and cell.teacher != REFERENCE_TEACHER]


def _scored(cell) -> np.ndarray:
    """Per informative node of the cell: True where the distillation gradient is not exactly zero (a zero
    direction has no cosine, whether the writer stored it as NaN or as 0)."""
    return cell.column(f"dnorm_{cell.loss}") != 0.0


def _colours(nodes: pd.DataFrame) -> dict[str, str]:
    """One colour per teacher, the same in every panel and figure of the run."""
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {teacher: palette[i % len(palette)] for i, teacher in enumerate(pd.unique(nodes["teacher"]))}


def _why_empty(cell) -> str:
    if cell.rows["context_ok"].eq(False).all():
        return "no alignment: no teacher context could be built"
    informative = cell.rows["informative"].eq(True).to_numpy()
    dnorm = cell.rows[f"dnorm_{cell.loss}"].to_numpy(dtype=float, na_value=np.nan)
    if informative.any() and np.all(dnorm[informative] == 0.0):
        return "no alignment: zero distillation gradient (teacher = student)"
    return "no alignment: no informative node (every S_hat equal)"


def _scored_cells(nodes: pd.DataFrame, loss: str, empty: dict[str, str], drawn: set[str]):
    """The cells of one loss that have a scored node, each with its mask of scored nodes; a teacher's cell without
    one is skipped, with why, in ``empty`` (the first reason kept), and each yielded teacher goes into ``drawn``, so
    every figure's legend can say which teachers are missing and why."""
    for cell in _cells(nodes, loss):
        scored = _scored(cell)
        if not scored.any():
            empty.setdefault(cell.teacher, _why_empty(cell))
            continue
        drawn.add(cell.teacher)
        yield cell, scored


def _legend(fig, colours: dict[str, str], empty: dict[str, str], extra: list) -> None:
    """The figure's one legend, below the panels: every teacher (with why it is missing, when it is), then the
    meaning of error bars, dots and hollow markers."""
    handles = [Line2D([], [], color=colour, marker="o", label=teacher if teacher not in empty
                      else f"{teacher}: {empty[teacher]}") for teacher, colour in colours.items()]
    handles += extra
    columns = max(1, min(3, int(fig.get_figwidth() // 4.5)))  # about 4.5 inches per column of labels
    fig.legend(handles=handles, loc="outside lower center", ncols=columns, fontsize="small", frameon=False)


def _too_few_handle() -> Line2D:
    return Line2D([], [], color="grey", marker="o", markerfacecolor="white", linestyle=":", label=TOO_FEW)


def _interval_handle(ax):
    """A legend entry drawn like the error bars (an empty errorbar on ``ax``: nothing shows in the panel)."""
    return ax.errorbar([], [], yerr=[], fmt="o", color="grey", capsize=3,
                       label="mean with its 95% interval over questions")


def _numbers_handle() -> Line2D:
    return Line2D([], [], linestyle="none", label="numbers: questions behind each mean")


def _questions(nodes: pd.DataFrame) -> int:
    return int(nodes["question_id"].nunique())


def _title(fig, nodes: pd.DataFrame, what: str) -> None:
    pairs = nodes[["task", "student"]].drop_duplicates().itertuples(index=False)
    title = f"{what}: " + "; ".join(f"{task} · {student}" for task, student in pairs)
    n = _questions(nodes)
    if n < MIN_QUESTIONS:
        title += f"\nonly {n} question{'s' if n != 1 else ''} in this run: too few for a conclusion"
    fig.suptitle(title, fontsize="medium")


def _annotate(ax, table: pd.DataFrame, colour: str) -> None:
    """The number of questions next to each binned mean."""
    for row in table.itertuples():
        ax.annotate(f"{row.questions}", (row.x, row.mean), textcoords="offset points", xytext=(4, 4),
                    fontsize="x-small", color=colour)


def _binned_series(ax, table: pd.DataFrame, colour: str) -> set[str]:
    """Binned means: filled, with their interval as error bars (visible even for a lone bin), from at least
    MIN_QUESTIONS questions; hollow, without interval and joined by a dotted line below that. Returns what was
    drawn ("mean", "interval", "too few"), so that the legend explains only what is on the figure."""
    if table.empty:
        return set()
    enough = (table["questions"] >= MIN_QUESTIONS).to_numpy()
    ax.plot(table["x"], table["mean"], color=colour, linewidth=1, alpha=0.8, linestyle="-" if enough.all() else ":")
    ax.plot(table["x"][enough], table["mean"][enough], "o", color=colour)
    ax.plot(table["x"][~enough], table["mean"][~enough], "o", color=colour, markerfacecolor="white")
    shown = table[enough & np.isfinite(table["lo"]) & np.isfinite(table["hi"])]
    if len(shown):
        # clipped at 0: on constant data round-off puts the mean a hair outside its own interval
        below = np.clip(shown["mean"] - shown["lo"], 0, None)
        above = np.clip(shown["hi"] - shown["mean"], 0, None)
        ax.errorbar(shown["x"], shown["mean"], yerr=[below, above], fmt="none", ecolor=colour, capsize=3)
    _annotate(ax, table, colour)
    return {"mean"} | ({"interval"} if len(shown) else set()) | ({"too few"} if not enough.all() else set())


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{name}.{fmt}"
        fig.savefig(path, dpi=110)  # constrained layout already fits everything inside the figure
        paths.append(path)
    plt.close(fig)
    return paths


def depth_figure(nodes: pd.DataFrame, *, losses=TEACHER_LOSSES, permutations: int = stats.PERMUTATIONS,
                 seed: int = 0) -> Figure:
    edges = np.linspace(0.0, 1.0, DEPTH_BINS + 1)
    colours = _colours(nodes)
    fig, axes = plt.subplots(1, len(losses), figsize=(3.2 * len(losses) + 0.8, 4.2), sharey=True, squeeze=False,
                             layout="constrained")
    drawn: set[str] = set()
    empty: dict[str, str] = {}
    marks: set[str] = set()
    for ax, loss in zip(axes[0], losses):
        for cell, scored in _scored_cells(nodes, loss, empty, drawn):
            depth = cell.rows["depth_norm"].to_numpy(dtype=float, na_value=np.nan)[cell.mask][scored]
            table = binned_means(depth, cell.align[scored], cell.question_ids[scored], edges, permutations=permutations,
                                 seed=seed)
            marks |= _binned_series(ax, table, colours[cell.teacher])
        ax.set(title=loss, xlabel="normalised depth i / len(y)", xlim=(0, 1), ylim=YLIM)
        ax.axhline(0, color="grey", linewidth=0.5)
    axes[0][0].set_ylabel("mean alignment per depth bin")
    empty = {t: why for t, why in empty.items() if t not in drawn}
    extra = [_interval_handle(axes[0][0])] if "interval" in marks else []
    extra += [_too_few_handle()] if "too few" in marks else []
    extra += [_numbers_handle()] if marks else []
    _legend(fig, colours, empty, extra)
    _title(fig, nodes, "alignment by depth")
    return fig


def _outcome_groups(nodes: pd.DataFrame) -> tuple[tuple[str, ...], str | None]:
    """The outcome groups the correctness figure draws (an ``unparsed`` group only where some rollout has no
    parseable answer), and a legend line when the records cannot tell unparsed from wrong on some paths."""
    recorded = nodes["rollout_unparsed"] if "rollout_unparsed" in nodes else pd.Series(None, index=nodes.index)
    groups = ("correct", "wrong", "unparsed") if recorded.eq(True).any() else ("correct", "wrong")
    unknown = nodes["rollout_correct"].eq(False) & recorded.isna()
    note = None
    if unknown.any():
        note = (f"{int(unknown.sum())} nodes on incorrect paths whose records do not say whether an answer was "
                f"found: shown as wrong")
    elif len(groups) == 2:
        note = "no unparsed rollout (every incorrect answer was parsed)"
    return groups, note


def correctness_figure(nodes: pd.DataFrame, *, losses=TEACHER_LOSSES) -> Figure:
    colours = _colours(nodes)
    groups, outcome_note = _outcome_groups(nodes)
    # two or three boxes per teacher, each needs room for its three-line label: many teachers go on a 2-column grid
    boxes = len(groups) * nodes["teacher"].nunique()
    columns = len(losses) if boxes <= 6 else min(2, len(losses))
    rows = math.ceil(len(losses) / columns)
    width = max(3.2, 0.6 * boxes)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns + 0.8, 4.6 * rows), sharey=True,
                             squeeze=False, layout="constrained")
    for ax in axes.flat[len(losses):]:
        ax.set_visible(False)
    empty: dict[str, str] = {}
    drawn: set[str] = set()
    for ax, loss in zip(axes.flat, losses):
        data, labels, styles = [], [], []
        for cell, scored in _scored_cells(nodes, loss, empty, drawn):
            members = {"correct": cell.correct, "wrong": cell.incorrect, "unparsed": cell.unparsed}
            for name in groups:
                mask = members[name] & scored
                questions = len(set(cell.question_ids[mask]))
                data.append(cell.align[mask])
                labels.append(f"{name}\n{questions} q\n{int(mask.sum())} nodes")
                styles.append((colours[cell.teacher], questions >= MIN_QUESTIONS))
        if data:
            boxes = ax.boxplot(data, showmeans=True, patch_artist=True, widths=0.6,
                               meanprops={"marker": "^", "markerfacecolor": "black", "markeredgecolor": "black"},
                               medianprops={"color": "black"})
            for box, (colour, enough) in zip(boxes["boxes"], styles):
                box.set(facecolor=colour if enough else "white", edgecolor=colour, alpha=0.6 if enough else 1.0,
                        hatch=None if enough else "///")
            ax.set_xticks(range(1, len(labels) + 1), labels, fontsize="x-small")
        ax.set(title=loss, ylim=YLIM)
        ax.axhline(0, color="grey", linewidth=0.5)
    for row in axes:
        row[0].set_ylabel("node alignment (box: quartiles)")
    empty = {t: why for t, why in empty.items() if t not in drawn}
    extra = [Line2D([], [], marker="^", color="black", linestyle="none", label="mean (line: median)"),
             Patch(facecolor="white", edgecolor="grey", hatch="///", label=TOO_FEW),
             Line2D([], [], linestyle="none", label="wrong: an answer found and graded wrong; unparsed: no answer "
                                                    "found (a third outcome)")]
    extra += [Line2D([], [], linestyle="none", label=outcome_note)] if outcome_note else []
    _legend(fig, colours, empty, extra)
    _title(fig, nodes, "alignment on correct, wrong-answer" + (" and unparsed" if "unparsed" in groups else "")
           + " paths")
    return fig


def _divergence_bins(x: np.ndarray, questions: np.ndarray) -> np.ndarray | None:
    """Quantile bin edges: the most bins (up to DIVERGENCE_BINS) that each hold at least MIN_BIN_NODES nodes from
    at least MIN_QUESTIONS questions; failing that, the most bins of at least MIN_BIN_NODES nodes (drawn hollow:
    too few questions); None when the nodes are too few (or all equal) for two such bins. Quantiles because
    divergences are heavy-tailed: equal widths would leave most bins empty."""
    finite = np.isfinite(x)
    x, questions = x[finite], questions[finite]
    if x.size == 0 or np.all(x == x[0]):
        return None
    fallback = None
    for bins in range(min(DIVERGENCE_BINS, x.size // MIN_BIN_NODES), 1, -1):
        edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
        which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)  # as binned_means
        members = [which == b for b in range(len(edges) - 1)]
        if len(members) < 2 or min(m.sum() for m in members) < MIN_BIN_NODES:
            continue
        if min(len(set(questions[m])) for m in members) >= MIN_QUESTIONS:
            return edges
        fallback = edges if fallback is None else fallback
    return fallback


def divergence_figure(nodes: pd.DataFrame, *, loss: str = "rkl", permutations: int = stats.PERMUTATIONS,
                      seed: int = 0) -> Figure:
    colours = _colours(nodes)
    fig, axes = plt.subplots(2, (len(DIVERGENCES) + 1) // 2, figsize=(11, 6.8), sharey=True, squeeze=False,
                             layout="constrained")
    empty: dict[str, str] = {}
    drawn: set[str] = set()
    marks: set[str] = set()
    for ax, variable in zip(axes.flat, DIVERGENCES):
        for cell, scored in _scored_cells(nodes, loss, empty, drawn):
            colour = colours[cell.teacher]
            x = cell.rows[variable].to_numpy(dtype=float, na_value=np.nan)[cell.mask][scored]
            align, questions = cell.align[scored], cell.question_ids[scored]
            ax.scatter(x, align, s=9, color=colour, alpha=0.3, linewidths=0)
            edges = _divergence_bins(x, questions)
            if edges is not None:
                marks |= _binned_series(ax, binned_means(x, align, questions, edges, permutations=permutations, seed=seed),
                                        colour)
        ax.set(title=DIVERGENCE_LABELS.get(variable, variable), ylim=YLIM)
        ax.axhline(0, color="grey", linewidth=0.5)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{loss} alignment")
    for ax in axes.flat[len(DIVERGENCES):]:
        ax.set_visible(False)
    empty = {t: why for t, why in empty.items() if t not in drawn}
    extra = [Line2D([], [], marker="o", color="grey", alpha=0.3, linestyle="none", markersize=4,
                    label="one node" + ("" if "mean" in marks else f" (bins need ≥ {MIN_BIN_NODES} nodes each: "
                                                                    "too few nodes to bin)"))]
    if "mean" in marks:
        extra.append(Line2D([], [], marker="o", color="grey",
                            label=f"mean of a quantile bin (≥ {MIN_BIN_NODES} nodes)"))
        extra += [_interval_handle(axes[0][0])] if "interval" in marks else []
        extra += [_too_few_handle()] if "too few" in marks else []
        extra.append(_numbers_handle())
    _legend(fig, colours, empty, extra)
    _title(fig, nodes, f"{loss} alignment against teacher-student divergence")
    return fig


def plot_run(nodes: pd.DataFrame, out_dir, *, loss: str = "rkl", permutations: int = stats.PERMUTATIONS,
             seed: int = 0) -> list[Path]:
    """Write every figure of a run into ``out_dir``; returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [*_save(depth_figure(nodes, permutations=permutations, seed=seed), out_dir, "depth"),
            *_save(correctness_figure(nodes), out_dir, "correctness"),
            *_save(divergence_figure(nodes, loss=loss, permutations=permutations, seed=seed), out_dir, "divergence")]
