"""harness.plots and `opd plot`: every figure is written as a non-empty PNG and PDF."""
from __future__ import annotations

import numpy as np
from test_analysis import planted_nodes

from harness.cli import main
from harness.plots import binned_means, plot_run
from harness.records import NODE_SCHEMA, QUESTION_SCHEMA, rows_to_table, write_table

NAMES = ("depth", "correctness", "divergence")


def check_files(folder):
    for name in NAMES:
        png, pdf = folder / f"{name}.png", folder / f"{name}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000


def test_plot_run_writes_png_and_pdf(tmp_path):
    paths = plot_run(planted_nodes(n_questions=4), tmp_path / "figs", resamples=20)
    assert len(paths) == 2 * len(NAMES)
    check_files(tmp_path / "figs")


def test_binned_means():
    x = np.array([0.1, 0.2, 0.6, 0.7, 0.9])
    table = binned_means(x, [1.0, 3.0, 5.0, 7.0, 9.0], ["a", "b", "a", "b", "a"], np.array([0.0, 0.5, 1.0]),
                         resamples=20)
    assert list(table["n"]) == [2, 3]
    np.testing.assert_allclose(table["mean"], [2.0, 7.0])


def test_opd_plot_command(tmp_path):
    nodes = planted_nodes(n_questions=3)
    write_table(rows_to_table(nodes.to_dict("records"), NODE_SCHEMA), tmp_path / "nodes.parquet")
    write_table(rows_to_table([], QUESTION_SCHEMA), tmp_path / "questions.parquet")
    assert main(["plot", str(tmp_path), "--resamples", "10"]) == 0
    check_files(tmp_path / "plots")
