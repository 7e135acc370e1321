"""``opd plot``: figures of one run (matplotlib, Agg backend; each figure saved as PNG and PDF).

- ``depth``: mean alignment by normalised depth (equal-width bins) per teacher, one panel per loss, with
  question-level bootstrap bands (METHOD.md, Statistics);
- ``correctness``: distribution of node alignment on correct vs incorrect paths per teacher, one panel per loss;
- ``divergence``: mean alignment of one loss against each divergence column (quantile bins), per teacher, with bands.

Bands come from :func:`harness.stats.cluster_mean` on the nodes of each bin (none below 10 questions).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on the machines this runs on
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness import stats  # noqa: E402
from harness.analysis import DIVERGENCES  # noqa: E402
from harness.leaderboard import REFERENCE_TEACHER, TEACHER_LOSSES, iter_cells  # noqa: E402

FORMATS = ("png", "pdf")
DEPTH_BINS = 5
DIVERGENCE_BINS = 5


def binned_means(x, values, clusters, edges, *, resamples: int, seed: int = 0) -> pd.DataFrame:
    """Per bin of ``x`` (``edges``): centre, mean of ``values`` and its cluster-bootstrap band, node count."""
    x, values, clusters = np.asarray(x, dtype=float), np.asarray(values, dtype=float), np.asarray(clusters, dtype=object)
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    records = []
    for b in range(len(edges) - 1):
        inside = (which == b) & np.isfinite(x)
        if not inside.any():
            continue
        # the leaderboard's interval (no band below 10 questions); ``resamples`` sizes the sign-flip draws
        ci = stats.cluster_mean(values[inside], clusters[inside], permutations=resamples, seed=seed)
        records.append({"x": float(np.mean(x[inside])), "mean": ci.estimate, "lo": ci.lo, "hi": ci.hi,
                        "n": ci.n})
    return pd.DataFrame.from_records(records, columns=["x", "mean", "lo", "hi", "n"])


def _line_with_band(ax, table: pd.DataFrame, label: str) -> None:
    line, = ax.plot(table["x"], table["mean"], marker="o", label=label)
    ax.fill_between(table["x"], table["lo"], table["hi"], color=line.get_color(), alpha=0.2, linewidth=0)


def _cells(nodes: pd.DataFrame, loss: str):
    """Cells of one loss: the grpo reference has no teacher, so it only appears with loss ``grpo``."""
    return [cell for cell in iter_cells(nodes) if cell.loss == loss and cell.teacher != REFERENCE_TEACHER]


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    paths = []
    for fmt in FORMATS:
        path = out_dir / f"{name}.{fmt}"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _title(nodes: pd.DataFrame) -> str:
    pairs = nodes[["task", "student"]].drop_duplicates().itertuples(index=False)
    return "; ".join(f"{task} · {student}" for task, student in pairs)


def plot_depth(nodes: pd.DataFrame, out_dir: Path, *, losses=TEACHER_LOSSES, resamples: int = stats.RESAMPLES,
               seed: int = 0) -> list[Path]:
    edges = np.linspace(0.0, 1.0, DEPTH_BINS + 1)
    fig, axes = plt.subplots(1, len(losses), figsize=(4 * len(losses), 3.5), sharey=True, squeeze=False)
    for ax, loss in zip(axes[0], losses):
        for cell in _cells(nodes, loss):
            depth = cell.rows["depth_norm"].to_numpy(dtype=float, na_value=np.nan)[cell.mask]
            _line_with_band(ax, binned_means(depth, cell.align, cell.question_ids, edges, resamples=resamples,
                                             seed=seed), cell.teacher)
        ax.set(title=loss, xlabel="normalised depth i / len(y)", xlim=(0, 1))
        ax.axhline(0, color="grey", linewidth=0.5)
    axes[0][0].set_ylabel("alignment (95% CI over questions)")
    axes[0][-1].legend(fontsize="small")
    fig.suptitle(_title(nodes))
    return _save(fig, out_dir, "depth")


def plot_correctness(nodes: pd.DataFrame, out_dir: Path, *, losses=TEACHER_LOSSES) -> list[Path]:
    fig, axes = plt.subplots(1, len(losses), figsize=(4 * len(losses), 3.5), sharey=True, squeeze=False)
    for ax, loss in zip(axes[0], losses):
        data, labels = [], []
        for cell in _cells(nodes, loss):
            for name, mask in (("ok", cell.correct), ("bad", cell.incorrect)):
                data.append(cell.align[mask])
                labels.append(f"{cell.teacher}\n{name} (n={int(mask.sum())})")
        if data:
            ax.boxplot(data, showmeans=True)
            ax.set_xticks(range(1, len(labels) + 1), labels, rotation=45, ha="right", fontsize="small")
        ax.set(title=loss)
        ax.axhline(0, color="grey", linewidth=0.5)
    axes[0][0].set_ylabel("node alignment")
    fig.suptitle(f"{_title(nodes)}: correct (ok) vs incorrect (bad) paths")
    return _save(fig, out_dir, "correctness")


def plot_divergence(nodes: pd.DataFrame, out_dir: Path, *, loss: str = "rkl", resamples: int = stats.RESAMPLES,
                    seed: int = 0) -> list[Path]:
    fig, axes = plt.subplots(1, len(DIVERGENCES), figsize=(3.5 * len(DIVERGENCES), 3.5), sharey=True, squeeze=False)
    for ax, variable in zip(axes[0], DIVERGENCES):
        for cell in _cells(nodes, loss):
            x = cell.rows[variable].to_numpy(dtype=float, na_value=np.nan)[cell.mask]
            finite = x[np.isfinite(x)]
            if finite.size == 0 or np.all(finite == finite[0]):
                continue  # a constant divergence (the student against itself) has nothing to bin
            # quantile bins: divergences are heavy-tailed, equal-width bins would leave most bins empty
            edges = np.unique(np.quantile(finite, np.linspace(0, 1, DIVERGENCE_BINS + 1)))
            _line_with_band(ax, binned_means(x, cell.align, cell.question_ids, edges, resamples=resamples,
                                             seed=seed), cell.teacher)
        ax.set(title=variable, xlabel=variable)
        ax.axhline(0, color="grey", linewidth=0.5)
    axes[0][0].set_ylabel(f"alignment ({loss}, 95% CI)")
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize="small")
    fig.suptitle(_title(nodes))
    return _save(fig, out_dir, "divergence")


def plot_run(nodes: pd.DataFrame, out_dir, *, loss: str = "rkl", resamples: int = stats.RESAMPLES,
             seed: int = 0) -> list[Path]:
    """Write every figure of a run into ``out_dir``; returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [*plot_depth(nodes, out_dir, resamples=resamples, seed=seed), *plot_correctness(nodes, out_dir),
            *plot_divergence(nodes, out_dir, loss=loss, resamples=resamples, seed=seed)]
