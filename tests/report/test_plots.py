"""Report figures: each is written as a valid PNG and SVG, or skipped with a warning."""

from __future__ import annotations

import logging

import matplotlib.image
import pytest

from kdbench.report.aggregate import aggregate_rows
from kdbench.report.pareto import mark_pareto
from kdbench.report.plots import (
    label_overlay,
    plot_overlays,
    plot_pareto,
    plot_per_structure_iou,
    plot_training_curves,
    write_plots,
)

from . import phantom_labels, write_matrix, write_overlay_inputs, write_predictions

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def matrix(tmp_path):
    cells = write_matrix(tmp_path, with_history=True)
    rows = aggregate_rows(cells)
    mark_pareto(rows)
    return cells, rows


def assert_valid_figure(paths, stem):
    png = next(p for p in paths if p.name == f"{stem}.png")
    svg = next(p for p in paths if p.name == f"{stem}.svg")
    data = png.read_bytes()

    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1024
    assert matplotlib.image.imread(png).ndim == 3
    assert "<svg" in svg.read_text()[:2000]


def test_plot_pareto_writes_png_and_svg(matrix, tmp_path):
    _, rows = matrix

    assert_valid_figure(plot_pareto(rows, tmp_path / "plots"), "pareto")


def test_plot_per_structure_iou_writes_png_and_svg(matrix, tmp_path):
    cells, rows = matrix

    assert_valid_figure(
        plot_per_structure_iou(rows, cells, tmp_path / "plots"), "per_structure_iou"
    )


def test_plot_training_curves_one_figure_per_row(matrix, tmp_path):
    cells, rows = matrix

    paths = plot_training_curves(rows, cells, tmp_path / "training")

    assert len(paths) == 2 * len(rows)
    assert_valid_figure(paths, "unet_small__cfpnet_m__logit")


def test_plot_overlays_writes_png_and_svg(matrix, tmp_path):
    cells, rows = matrix
    write_overlay_inputs(tmp_path)
    for cell_id, shift in [
        ("teacher__unet_small__s0", 0),
        ("-__cfpnet_m__none__s0", 2),
        ("unet_small__cfpnet_m__logit__s0", 1),
    ]:
        write_predictions(tmp_path, cell_id, shift)

    assert_valid_figure(plot_overlays(rows, cells, tmp_path, tmp_path / "plots"), "overlays")


def test_plot_overlays_without_predictions_warns(matrix, tmp_path, caplog):
    cells, rows = matrix
    write_overlay_inputs(tmp_path)

    with caplog.at_level(logging.WARNING, logger="kdbench.report.plots"):
        paths = plot_overlays(rows, cells, tmp_path, tmp_path / "plots")

    assert paths == []
    assert "no predictions npz" in caplog.text


def test_plot_overlays_without_inputs_warns(matrix, tmp_path, caplog):
    cells, rows = matrix

    with caplog.at_level(logging.WARNING, logger="kdbench.report.plots"):
        paths = plot_overlays(rows, cells, tmp_path, tmp_path / "plots")

    assert paths == []
    assert "overlay_inputs.npz not found" in caplog.text


def test_plot_overlays_corrupt_predictions_warns(matrix, tmp_path, caplog):
    cells, rows = matrix
    write_overlay_inputs(tmp_path)
    broken = write_predictions(tmp_path, "teacher__unet_small__s0", 0)
    broken.write_bytes(b"not a zip file")

    with caplog.at_level(logging.WARNING, logger="kdbench.report.plots"):
        paths = plot_overlays(rows, cells, tmp_path, tmp_path / "plots")

    assert paths == []
    assert "cannot read" in caplog.text


def test_label_overlay_background_is_transparent():
    rgba = label_overlay(phantom_labels(1)[0], num_classes=4)

    assert rgba[0, 0, 3] == 0.0
    assert rgba[16, 16, 3] > 0.0


def test_write_plots_malformed_history_skips_only_that_figure(tmp_path, caplog):
    cells = write_matrix(tmp_path, with_history=True)
    for cell in cells:
        cell["training"]["history"] = [{"train_loss": 1.0}]  # no "epoch"
    rows = aggregate_rows(cells)
    mark_pareto(rows)

    with caplog.at_level(logging.WARNING, logger="kdbench.report.plots"):
        paths = write_plots(rows, cells, tmp_path, tmp_path)

    assert "Training curves skipped" in caplog.text
    assert tmp_path / "plots" / "pareto.png" in paths
