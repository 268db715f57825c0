"""Known-answer tests for per-case IoU and Dice."""

import math

import numpy as np
import pytest

from kdbench.evaluate import evaluate_predictions, iou_dice

NAMES = ["background", "a", "b", "c"]


def test_iou_dice_hand_computed_masks():
    pred = np.array([[1, 1, 0], [0, 2, 2]])
    target = np.array([[1, 0, 0], [0, 2, 0]])

    iou, dice = iou_dice(pred, target, 3)

    # class 1: intersection 1, predicted 2, truth 1 -> IoU 1/2, Dice 2/3; class 2 the same.
    assert iou[1] == pytest.approx(0.5)
    assert dice[1] == pytest.approx(2 / 3)
    assert iou[2] == pytest.approx(0.5)
    assert dice[2] == pytest.approx(2 / 3)


def test_iou_dice_absent_from_both_is_nan():
    pred = np.array([[1, 0]])
    target = np.array([[1, 0]])

    iou, dice = iou_dice(pred, target, 3)

    assert math.isnan(iou[2])
    assert math.isnan(dice[2])


def test_iou_dice_false_positive_scores_zero():
    pred = np.array([[2, 0]])
    target = np.array([[0, 0]])

    iou, dice = iou_dice(pred, target, 3)

    assert iou[2] == 0.0
    assert dice[2] == 0.0


def test_iou_dice_shape_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 2\) and \(2, 3\)"):
        iou_dice(np.zeros((2, 2), int), np.zeros((2, 3), int), 2)


def test_evaluate_predictions_accumulates_pixels_per_case():
    # Case "x" has two slices; its counts add up before the ratio is taken.
    # Class a, slice 1: predicted 1 px, truth 1 px, overlap 1.
    # Class a, slice 2: predicted 3 px, truth 1 px, overlap 1.
    # Accumulated: intersection 2, predicted 4, truth 2 -> IoU 2/4 = 0.5 (the mean of per-slice
    # ratios would be (1 + 1/3) / 2 = 0.667, so this distinguishes the two).
    pred = np.array([[[1, 0], [0, 0]], [[1, 1], [1, 0]]])
    target = np.array([[[1, 0], [0, 0]], [[1, 0], [0, 0]]])

    metrics = evaluate_predictions(pred, target, ["x", "x"], NAMES)

    assert metrics["n_cases"] == 1
    assert metrics["per_case"][0]["iou"]["a"] == pytest.approx(0.5)
    assert metrics["per_case"][0]["dice"]["a"] == pytest.approx(2 * 2 / 6)


def test_evaluate_predictions_averages_over_cases_then_structures():
    # Case p: a perfect (IoU 1), b absent from both (excluded), c false positive (IoU 0).
    # Case q: a IoU 1/2, b perfect, c absent from both.
    pred = np.array([[[1, 3, 0, 0]], [[1, 1, 2, 0]]])
    target = np.array([[[1, 0, 0, 0]], [[1, 0, 2, 0]]])

    metrics = evaluate_predictions(pred, target, ["p", "q"], NAMES)

    structures = metrics["per_structure"]
    assert structures["a"]["iou"] == pytest.approx((1.0 + 0.5) / 2)
    assert structures["b"]["iou"] == pytest.approx(1.0)  # case p excluded
    assert structures["c"]["iou"] == pytest.approx(0.0)  # false positive counts, case q excluded
    assert metrics["mean_iou"] == pytest.approx((0.75 + 1.0 + 0.0) / 3)
    assert metrics["per_case"][0]["mean_iou"] == pytest.approx(0.5)  # (1 + 0) / 2, b excluded
    assert metrics["per_case"][0]["iou"]["b"] is None


def test_evaluate_predictions_structure_absent_everywhere_is_null():
    pred = np.array([[[1, 0]]])
    target = np.array([[[1, 0]]])

    metrics = evaluate_predictions(pred, target, ["p"], NAMES)

    assert metrics["per_structure"]["b"]["iou"] is None
    assert metrics["mean_iou"] == pytest.approx(1.0)


def test_evaluate_predictions_empty_input_gives_null_scores():
    metrics = evaluate_predictions(np.zeros((0, 2, 2), int), np.zeros((0, 2, 2), int), [], NAMES)

    assert metrics["n_cases"] == 0
    assert metrics["mean_iou"] is None
