"""leaderboard.csv, leaderboard.md and cells.csv contents."""

from __future__ import annotations

import csv

import pytest

from kdbench.report.aggregate import aggregate_rows
from kdbench.report.leaderboard import write_cells_csv, write_leaderboard_csv, write_leaderboard_md
from kdbench.report.pareto import mark_pareto

from . import make_cell, write_matrix


@pytest.fixture
def matrix(tmp_path):
    cells = write_matrix(tmp_path)
    cells.append(
        make_cell(teacher="unet_small", strategy="at", status="failed", error="NaN loss at epoch 3")
    )
    rows = aggregate_rows(cells)
    mark_pareto(rows)
    return cells, rows


def _read_csv(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_leaderboard_csv_full_precision(matrix, tmp_path):
    _, rows = matrix
    lines = _read_csv(write_leaderboard_csv(rows, tmp_path / "leaderboard.csv"))
    by_id = {line["row_id"]: line for line in lines}
    alone = next(r for r in rows if r["row_id"] == "-|cfpnet_m|none")

    assert len(lines) == 4
    assert (
        float(by_id["-|cfpnet_m|none"]["mean_iou_ci_half_width"]) == alone["mean_iou_ci_half_width"]
    )
    assert by_id["-|cfpnet_m|none"]["pareto_size"] in ("true", "false")
    assert "iou_myocardium" in lines[0]


def test_leaderboard_csv_sorted_by_iou_failed_last(matrix, tmp_path):
    _, rows = matrix
    lines = _read_csv(write_leaderboard_csv(rows, tmp_path / "leaderboard.csv"))

    assert [line["row_id"] for line in lines] == [
        "teacher|unet_small",
        "unet_small|cfpnet_m|logit",
        "-|cfpnet_m|none",
        "unet_small|cfpnet_m|at",
    ]
    assert lines[-1]["mean_iou"] == ""


def test_leaderboard_md_rounding_and_marks(matrix, tmp_path):
    _, rows = matrix
    text = write_leaderboard_md(rows, tmp_path / "leaderboard.md").read_text()
    distilled = next(
        line for line in text.splitlines() if "`unet_small\\|cfpnet_m\\|logit`" in line
    )

    assert "0.850 ± 0.020" in distilled
    assert "+0.030" in distilled
    assert "1.91 MiB" in distilled  # 2,000,000 bytes
    assert "585.9 KiB" in distilled  # 600,000 bytes, int8 ONNX
    assert "5.00 / 6.00" in distilled
    assert "16×" in distilled
    assert "★" in distilled


def test_leaderboard_md_dominated_row_has_no_star(matrix, tmp_path):
    _, rows = matrix
    text = write_leaderboard_md(rows, tmp_path / "leaderboard.md").read_text()
    alone = next(line for line in text.splitlines() if "`-\\|cfpnet_m\\|none`" in line)

    # Same size as the distilled student but lower IoU, so it is off every frontier.
    assert alone.split("|")[1].strip() == ""
    assert "ref" in alone


def test_leaderboard_md_lists_failed_cells_and_legend(matrix, tmp_path):
    _, rows = matrix
    text = write_leaderboard_md(rows, tmp_path / "leaderboard.md").read_text()

    assert "## Failed cells" in text
    assert "NaN loss at epoch 3" in text
    assert "## Legend" in text


def test_leaderboard_md_one_seed_interval_is_na(tmp_path):
    rows = aggregate_rows([make_cell(mean_iou=0.7)])
    mark_pareto(rows)
    text = write_leaderboard_md(rows, tmp_path / "leaderboard.md").read_text()

    assert "0.700 (1 seed)" in text
    assert "n/a" in text


def test_cells_csv_one_line_per_cell(matrix, tmp_path):
    cells, _ = matrix
    lines = _read_csv(write_cells_csv(cells, tmp_path / "cells.csv"))
    by_id = {line["cell_id"]: line for line in lines}

    assert len(lines) == len(cells)
    assert by_id["-__cfpnet_m__none__s1"]["mean_iou"] == "0.82"
    assert by_id["-__cfpnet_m__none__s1"]["row_id"] == "-|cfpnet_m|none"
    assert by_id["unet_small__cfpnet_m__at__s0"]["status"] == "failed"
    assert by_id["unet_small__cfpnet_m__at__s0"]["error"] == "NaN loss at epoch 3"
