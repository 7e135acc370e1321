"""harness.render.plots and `opd plot`: every figure is written as PNG and PDF, names every series in its legend, states
the questions behind each binned mean, marks estimates from fewer than 10 questions, and nothing overlaps."""
from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection

from harness.cli.main import main
from harness.render.plots import (
    TOO_FEW,
    binned_means,
    correctness_figure,
    depth_figure,
    divergence_figure,
)
from harness.storage.records import NODE_SCHEMA, QUESTION_SCHEMA, rows_to_table, write_table
from tests.helpers import planted_nodes

NAMES = ("depth", "correctness", "divergence")
ZERO = "zero distillation gradient"


def check_files(folder):
    for name in NAMES:
        png, pdf = folder / f"{name}.png", folder / f"{name}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000


def with_self(nodes: pd.DataFrame) -> pd.DataFrame:
    """``nodes`` plus a teacher "self" whose distillation gradient is exactly zero at every node."""
    own = nodes[nodes.teacher == "near"].copy()
    own["teacher"] = "self"
    for loss in ("rkl", "fkl", "jsd", "sampled"):
        own[f"align_{loss}"], own[f"dnorm_{loss}"] = 0.0, 0.0  # an old writer's 0.0 for the undefined cosine
    return pd.concat([nodes, own], ignore_index=True)


def figures(nodes, permutations=200):
    return {"depth": depth_figure(nodes, permutations=permutations), "correctness": correctness_figure(nodes),
            "divergence": divergence_figure(nodes, permutations=permutations)}


def error_bars(ax) -> list:
    """The non-empty error-bar collections of a panel (an empty one stands in for the legend entry)."""
    return [c for c in ax.collections if isinstance(c, LineCollection) and len(c.get_segments())]


def legend_texts(fig) -> list[str]:
    return [text.get_text() for legend in fig.legends for text in legend.get_texts()]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_binned_means():
    x = np.array([0.1, 0.2, 0.6, 0.7, 0.9])
    table = binned_means(x, [1.0, 3.0, 5.0, 7.0, 9.0], ["a", "b", "a", "b", "a"], np.array([0.0, 0.5, 1.0]),
                         permutations=200)
    assert list(table["n"]) == [2, 3] and list(table["questions"]) == [2, 2]
    np.testing.assert_allclose(table["mean"], [2.0, 7.0])


def test_every_teacher_is_in_every_legend_even_without_an_alignment():
    for name, fig in figures(with_self(planted_nodes(n_questions=12))).items():
        texts = legend_texts(fig)
        assert "near" in texts and "far" in texts, name
        assert any(text.startswith("self:") and ZERO in text for text in texts), name


def test_depth_means_carry_their_question_counts_and_few_questions_are_hollow():
    nodes = planted_nodes(n_questions=12)  # positions 0..3 of 4: depth 0, .25, .5, .75, one position per bin
    dropped = nodes[~((nodes.position == 3) & nodes.question_id.isin([f"q{q}" for q in range(5)]))]
    fig = depth_figure(dropped, permutations=200)
    rkl = fig.axes[0]
    assert rkl.get_title() == "rkl"
    # by hand: questions per position per teacher; the last depth bin keeps 7 of 12 questions
    expected = dropped.groupby(["teacher", "position"]).question_id.nunique()
    assert sorted(int(t.get_text()) for t in rkl.texts) == sorted(expected.tolist())
    hollow = [line for line in rkl.lines if line.get_markerfacecolor() == "white" and len(line.get_ydata())]
    late = dropped[dropped.position == 3].groupby("teacher").align_rkl.mean()
    assert sorted(y for line in hollow for y in line.get_ydata()) == pytest.approx(sorted(late))
    assert len(error_bars(rkl)) == 2  # one per teacher: the bins of >= 10 questions
    assert TOO_FEW in legend_texts(fig) and "too few" not in fig.get_suptitle()


def test_a_run_of_fewer_than_10_questions_says_so_and_shows_no_interval():
    for name, fig in figures(planted_nodes(n_questions=3)).items():
        assert "only 3 questions in this run: too few for a conclusion" in fig.get_suptitle(), name
        assert not any(error_bars(ax) for ax in fig.axes), name
    depth = depth_figure(planted_nodes(n_questions=3), permutations=200)
    means = [line for line in depth.axes[0].lines if line.get_marker() == "o" and len(line.get_ydata())]
    assert means and all(line.get_markerfacecolor() == "white" for line in means)


def test_correctness_boxes_are_hatched_below_10_questions_and_state_their_n():
    for questions, hatched in ((3, True), (12, False)):
        fig = correctness_figure(planted_nodes(n_questions=questions))
        ax = fig.axes[0]
        boxes = [patch for patch in ax.patches if patch.get_hatch() is not None]
        assert bool(boxes) == hatched
        labels = [label.get_text() for label in ax.get_xticklabels()]
        assert all(f"{questions} q" in label for label in labels) and len(labels) == 4  # 2 teachers x 2 groups


def test_divergence_bins_only_when_there_are_enough_nodes():
    few = divergence_figure(planted_nodes(n_questions=1), permutations=200)  # 8 nodes per teacher: no bins
    ax = few.axes[0]
    assert not ax.texts and any(isinstance(c, PathCollection) for c in ax.collections)
    assert any("too few nodes to bin" in text for text in legend_texts(few))
    # 96 nodes per teacher from 12 questions: bins of at least 10 questions each, so every mean has its interval
    many = divergence_figure(planted_nodes(n_questions=12), permutations=200)
    counts = [int(text.get_text()) for text in many.axes[0].texts]
    assert len(counts) >= 2 * 2 and min(counts) >= 10 and len(error_bars(many.axes[0])) == 2


def _overlap(a, b, tolerance=1.0) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > tolerance) and (min(a.y1, b.y1) - max(a.y0, b.y0) > tolerance)


def test_titles_legend_and_panels_do_not_overlap():
    for name, fig in figures(with_self(planted_nodes(n_questions=3))).items():
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        boxes = {"suptitle": fig._suptitle.get_window_extent(renderer),
                 "legend": fig.legends[0].get_window_extent(renderer)}
        boxes.update({f"panel {i}": ax.get_tightbbox(renderer) for i, ax in enumerate(fig.axes) if ax.get_visible()})
        for (a, box_a), (b, box_b) in itertools.combinations(boxes.items(), 2):
            assert not _overlap(box_a, box_b), f"{name}: {a} overlaps {b}"
        figure_box = fig.bbox
        for label, box in boxes.items():  # nothing is cut off at the figure's edge
            assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= figure_box.x1 + 1 and box.y1 <= figure_box.y1 + 1, \
                f"{name}: {label} outside the figure"


def test_opd_plot_command(tmp_path):
    nodes = planted_nodes(n_questions=3)
    write_table(rows_to_table(nodes.to_dict("records"), NODE_SCHEMA), tmp_path / "nodes.parquet")
    write_table(rows_to_table([], QUESTION_SCHEMA), tmp_path / "questions.parquet")
    assert main(["plot", str(tmp_path), "--permutations", "100"]) == 0  # harness.render.plots.plot_run
    check_files(tmp_path / "plots")


def test_correctness_draws_unparsed_paths_apart_from_wrong_answers():
    """Rollout 0 of q0-q5 has no parseable answer and a planted alignment of -0.9: those nodes form the unparsed
    box and none of them enters the wrong-answer box (counts and means against plain pandas)."""
    nodes = planted_nodes(n_questions=12)
    unparsed = nodes["rollout_id"].eq(0) & nodes["question_id"].isin([f"q{q}" for q in range(6)])
    nodes["rollout_unparsed"] = unparsed
    nodes.loc[unparsed, "align_rkl"] = -0.9
    fig = correctness_figure(nodes, losses=("rkl",))
    ax = fig.axes[0]
    labels = [label.get_text() for label in ax.get_xticklabels()]
    means = [float(line.get_ydata()[0]) for line in ax.lines if line.get_marker() == "^"]
    assert len(labels) == len(means) == 6  # 2 teachers x (correct, wrong, unparsed)
    for teacher, chunk in zip(("near", "far"), range(0, 6, 3)):
        rows = nodes[nodes.teacher == teacher]
        expected = {"correct": rows[rows.rollout_correct], "wrong": rows[~rows.rollout_correct & ~unparsed[rows.index]],
                    "unparsed": rows[unparsed[rows.index]]}
        for (name, part), label, mean in zip(expected.items(), labels[chunk:chunk + 3], means[chunk:chunk + 3]):
            assert label.splitlines() == [name, f"{part.question_id.nunique()} q", f"{len(part)} nodes"]
            assert mean == pytest.approx(part["align_rkl"].mean())
        assert (expected["wrong"]["align_rkl"] > -0.9).all() and means[chunk + 2] == pytest.approx(-0.9)
    assert "unparsed" in fig.get_suptitle()


def test_correctness_says_when_records_cannot_tell_unparsed_from_wrong():
    nodes = planted_nodes(n_questions=12)
    nodes["rollout_unparsed"] = None  # a run written before the column existed, without its questions.parquet
    texts = legend_texts(correctness_figure(nodes, losses=("rkl",)))
    assert any("do not say whether an answer was found: shown as wrong" in text for text in texts)
    nodes["rollout_unparsed"] = False
    fig = correctness_figure(nodes, losses=("rkl",))
    assert any("no unparsed rollout" in text for text in legend_texts(fig))
    assert [label.get_text().splitlines()[0] for label in fig.axes[0].get_xticklabels()] == ["correct", "wrong"] * 2
