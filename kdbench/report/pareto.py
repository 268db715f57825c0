"""Pareto marking of leaderboard rows: maximize mean IoU, minimize one cost.

A row is Pareto-optimal for a cost when no other row has a mean IoU at least as high and a cost
at least as low, with one of the two strictly better. Rows that tie exactly on both IoU and cost
are all marked, because neither dominates the other. Rows whose IoU or cost is NaN, and failed
rows, are never marked and do not dominate others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

# Frontier column name -> cost column it minimizes. ``pareto_size`` is the headline frontier.
PARETO_AXES = {
    "pareto_size": "state_dict_bytes",
    "pareto_latency": "latency_median_ms",
    "pareto_gmacs": "gmacs",
}
SCORE_COLUMN = "mean_iou"


def pareto_optimal(scores: Sequence[float], costs: Sequence[float]) -> list[bool]:
    """Return for each point whether it is Pareto-optimal (higher score, lower cost is better).

    Points with a NaN score or cost are False and do not dominate other points. O(n²), which is
    fine for leaderboards of a few hundred rows.
    """
    if len(scores) != len(costs):
        raise ValueError(f"scores and costs differ in length: {len(scores)} vs {len(costs)}")

    valid = [not (math.isnan(s) or math.isnan(c)) for s, c in zip(scores, costs, strict=True)]
    optimal = []
    for i in range(len(scores)):
        if not valid[i]:
            optimal.append(False)
            continue
        dominated = any(
            valid[j]
            and scores[j] >= scores[i]
            and costs[j] <= costs[i]
            and (scores[j] > scores[i] or costs[j] < costs[i])
            for j in range(len(scores))
        )
        optimal.append(not dominated)
    return optimal


def mark_pareto(rows: Sequence[dict[str, Any]]) -> None:
    """Set ``pareto_size``, ``pareto_latency`` and ``pareto_gmacs`` (bool) on every row in place."""
    for column, cost in PARETO_AXES.items():
        scores = [_score(row) for row in rows]
        costs = [float(row.get(cost, math.nan)) for row in rows]
        for row, flag in zip(rows, pareto_optimal(scores, costs), strict=True):
            row[column] = flag


def frontier_points(rows: Sequence[Mapping[str, Any]], column: str) -> list[Mapping[str, Any]]:
    """Return the rows marked in ``column`` sorted by increasing cost, to draw the frontier."""
    cost = PARETO_AXES[column]
    return sorted((row for row in rows if row.get(column)), key=lambda row: row[cost])


def _score(row: Mapping[str, Any]) -> float:
    if row.get("status") != "ok":
        return math.nan
    return float(row.get(SCORE_COLUMN, math.nan))
