"""Pareto marking on hand-made tables (maximize IoU, minimize cost)."""

from __future__ import annotations

import math

from kdbench.report.pareto import mark_pareto, pareto_optimal


def test_pareto_optimal_hand_made_table():
    # (IoU, cost): A is cheapest, C is most accurate, B is between them, D is dominated by B
    # (less accurate and more expensive), E is dominated by C at equal cost.
    scores = [0.70, 0.80, 0.90, 0.75, 0.85]
    costs = [1.0, 2.0, 5.0, 3.0, 5.0]

    assert pareto_optimal(scores, costs) == [True, True, True, False, False]


def test_pareto_optimal_exact_ties_are_all_marked():
    assert pareto_optimal([0.8, 0.8, 0.7], [2.0, 2.0, 2.0]) == [True, True, False]


def test_pareto_optimal_equal_iou_keeps_cheaper():
    assert pareto_optimal([0.8, 0.8], [1.0, 2.0]) == [True, False]


def test_pareto_optimal_nan_is_never_marked():
    assert pareto_optimal([math.nan, 0.5, 0.6], [0.1, 1.0, math.nan]) == [False, True, False]


def test_mark_pareto_sets_each_axis():
    rows = [
        {
            "status": "ok",
            "mean_iou": 0.9,
            "state_dict_bytes": 100.0,
            "latency_median_ms": 9.0,
            "gmacs": 5.0,
        },
        {
            "status": "ok",
            "mean_iou": 0.8,
            "state_dict_bytes": 10.0,
            "latency_median_ms": 10.0,
            "gmacs": 1.0,
        },
        {
            "status": "failed",
            "mean_iou": math.nan,
            "state_dict_bytes": 1.0,
            "latency_median_ms": 1.0,
            "gmacs": 0.1,
        },
    ]

    mark_pareto(rows)

    assert [r["pareto_size"] for r in rows] == [True, True, False]
    assert [r["pareto_latency"] for r in rows] == [True, False, False]
    assert [r["pareto_gmacs"] for r in rows] == [True, True, False]
