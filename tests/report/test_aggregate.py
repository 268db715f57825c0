"""Aggregation over seeds, gain over the student alone, and cost ratios, on fixed numbers."""

from __future__ import annotations

import math

import pytest

from kdbench.report.aggregate import aggregate_rows

from . import make_cell, write_matrix

T_975_DF2 = 4.302652729749462


@pytest.fixture
def rows(tmp_path):
    return {row["row_id"]: row for row in aggregate_rows(write_matrix(tmp_path))}


def test_aggregate_rows_one_row_per_combination(rows):
    assert sorted(rows) == ["-|cfpnet_m|none", "teacher|unet_small", "unet_small|cfpnet_m|logit"]


def test_aggregate_rows_seed_mean_std_and_interval(rows):
    alone = rows["-|cfpnet_m|none"]
    half_width = T_975_DF2 * 0.02 / math.sqrt(3)

    assert alone["n_seeds"] == 3
    assert alone["seeds"] == "0 1 2"
    assert alone["mean_iou"] == pytest.approx(0.82)
    assert alone["mean_iou_std"] == pytest.approx(0.02)
    assert alone["mean_iou_ci_half_width"] == pytest.approx(half_width)
    assert alone["mean_iou_ci_low"] == pytest.approx(0.82 - half_width)
    assert alone["mean_dice"] == pytest.approx(0.90)


def test_aggregate_rows_gain_over_student_alone(rows):
    distilled = rows["unet_small|cfpnet_m|logit"]
    # Case differences per seed are 0.02, 0.03, 0.04 (see write_matrix), three seeds.
    assert distilled["alone_row_id"] == "-|cfpnet_m|none"
    assert distilled["delta_iou"] == pytest.approx(0.85 - 0.82)
    assert distilled["paired_n"] == 9
    assert distilled["paired_mean_diff"] == pytest.approx(0.03)
    # All nine differences are positive: only 2 of the 2**9 sign patterns are as extreme.
    assert distilled["p_wilcoxon"] == pytest.approx(2 / 2**9)
    assert distilled["paired_ci_low"] <= 0.03 <= distilled["paired_ci_high"]


def test_aggregate_rows_paired_test_exact_six_pairs():
    cells = []
    for seed, gains in enumerate([(0.01, 0.02, 0.03), (0.04, 0.05, 0.06)]):
        cells.append(make_cell(seed=seed, mean_iou=0.5, case_ious=[0.5, 0.5, 0.5]))
        cases = [0.5 + g for g in gains]
        cells.append(
            make_cell(
                teacher="t", strategy="logit", seed=seed, mean_iou=sum(cases) / 3, case_ious=cases
            )
        )

    rows = {row["row_id"]: row for row in aggregate_rows(cells)}

    assert rows["t|cfpnet_m|logit"]["paired_n"] == 6
    assert rows["t|cfpnet_m|logit"]["p_wilcoxon"] == pytest.approx(2 / 64)


def test_aggregate_rows_pairs_only_matching_seed_and_case():
    cells = [
        make_cell(seed=0, mean_iou=0.5, case_ious=[0.5, 0.5]),
        make_cell(teacher="t", strategy="logit", seed=0, mean_iou=0.6, case_ious=[0.6, 0.6, 0.6]),
        make_cell(teacher="t", strategy="logit", seed=1, mean_iou=0.6, case_ious=[0.6]),
    ]

    row = next(r for r in aggregate_rows(cells) if r["strategy"] == "logit")

    assert row["paired_n"] == 2


def test_aggregate_rows_ratios_against_teacher(rows):
    distilled = rows["unet_small|cfpnet_m|logit"]

    assert distilled["reference_teacher"] == "teacher|unet_small"
    assert distilled["size_ratio"] == pytest.approx(32_000_000 / 2_000_000)
    assert distilled["params_ratio"] == pytest.approx(8_000_000 / 500_000)
    assert distilled["macs_ratio"] == pytest.approx(12.0 / 0.5)
    assert distilled["speedup"] == pytest.approx(40.0 / 5.0)


def test_aggregate_rows_student_alone_uses_only_teacher(rows):
    assert rows["-|cfpnet_m|none"]["size_ratio"] == pytest.approx(16.0)


def test_aggregate_rows_teacher_row_ratios_are_one(rows):
    teacher = rows["teacher|unet_small"]

    assert teacher["role"] == "teacher"
    assert teacher["student"] == "unet_small"
    assert teacher["size_ratio"] == pytest.approx(1.0)
    assert math.isnan(teacher["delta_iou"])


def test_aggregate_rows_two_teachers_leave_alone_ratios_nan():
    cells = [
        make_cell(role="teacher", student="unet_a"),
        make_cell(role="teacher", student="unet_b"),
        make_cell(),
    ]

    alone = next(
        r for r in aggregate_rows(cells) if r["strategy"] == "none" and r["role"] == "student"
    )

    assert alone["reference_teacher"] is None
    assert math.isnan(alone["size_ratio"])


def test_aggregate_rows_per_structure_mean(rows):
    # LV IoU per seed is mean_iou + 0.05: 0.85, 0.87, 0.89.
    assert rows["-|cfpnet_m|none"]["iou_LV"] == pytest.approx(0.87)


def test_aggregate_rows_cost_is_median_over_seeds():
    cells = [make_cell(seed=s, latency_ms=ms) for s, ms in enumerate([4.0, 9.0, 5.0])]

    assert aggregate_rows(cells)[0]["latency_median_ms"] == pytest.approx(5.0)


def test_aggregate_rows_missing_cost_is_nan():
    row = aggregate_rows([make_cell(onnx_int8_bytes=None, latency_ms=None)])[0]

    assert math.isnan(row["onnx_int8_bytes"])
    assert math.isnan(row["latency_median_ms"])


def test_aggregate_rows_all_failed_is_failed_row():
    cells = [
        make_cell(strategy="at", teacher="t", seed=s, status="failed", error="NaN loss")
        for s in (0, 1)
    ]

    row = aggregate_rows(cells)[0]

    assert row["status"] == "failed"
    assert row["n_failed"] == 2
    assert math.isnan(row["mean_iou"])
    assert "NaN loss" in row["error"]


def test_aggregate_rows_failed_seed_is_left_out():
    cells = [
        make_cell(seed=0, mean_iou=0.6),
        make_cell(seed=1, mean_iou=0.7),
        make_cell(seed=2, status="failed", error="killed"),
    ]

    row = aggregate_rows(cells)[0]

    assert row["status"] == "ok"
    assert row["n_seeds"] == 2
    assert row["n_failed"] == 1
    assert row["mean_iou"] == pytest.approx(0.65)


def test_aggregate_rows_config_hash_one_seed():
    row = aggregate_rows([make_cell()])[0]

    assert row["config_hash"] == "hash--__cfpnet_m__none__s0"


def test_aggregate_rows_config_hash_three_seeds(rows):
    assert len(rows["-|cfpnet_m|none"]["config_hash"]) == 64


def test_aggregate_rows_onnx_variant_iou_mean_over_seeds():
    cells = []
    for seed, int8_iou in enumerate([0.70, 0.74]):
        cell = make_cell(seed=seed)
        cell["profile"]["onnx"] = {
            "fp32": {"mean_iou": 0.80},
            "int8": {"mean_iou": int8_iou},
            "fp16": {"mean_iou": None, "error": "export failed"},
        }
        cells.append(cell)

    (row,) = aggregate_rows(cells)

    assert row["onnx_fp32_iou"] == pytest.approx(0.80)
    assert row["onnx_int8_iou"] == pytest.approx(0.72)
    assert math.isnan(row["onnx_fp16_iou"])
