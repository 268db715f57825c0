"""Seed summaries and paired comparisons against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kdbench.report.stats import compare_paired, summarize_seeds

T_975_DF2 = 4.302652729749462  # Student t quantile 0.975 with 2 degrees of freedom (tables: 4.303)


def test_summarize_seeds_three_values():
    summary = summarize_seeds([0.80, 0.82, 0.84])
    half_width = T_975_DF2 * 0.02 / math.sqrt(3)  # 4.303 * 0.011547 = 0.04968

    assert summary.n == 3
    assert summary.mean == pytest.approx(0.82)
    assert summary.std == pytest.approx(0.02)
    assert summary.ci_half_width == pytest.approx(half_width)
    assert summary.ci_half_width == pytest.approx(0.04968, abs=1e-5)
    assert summary.ci_low == pytest.approx(0.82 - half_width)
    assert summary.ci_high == pytest.approx(0.82 + half_width)


def test_summarize_seeds_one_seed_has_undefined_interval():
    summary = summarize_seeds([0.7])

    assert summary.mean == pytest.approx(0.7)
    assert math.isnan(summary.std)
    assert math.isnan(summary.ci_low)
    assert math.isnan(summary.ci_high)


def test_summarize_seeds_drops_nan():
    summary = summarize_seeds([0.5, math.nan, 0.7])

    assert summary.n == 2
    assert summary.mean == pytest.approx(0.6)


def test_summarize_seeds_empty_is_nan():
    summary = summarize_seeds([])

    assert summary.n == 0
    assert math.isnan(summary.mean)


def test_compare_paired_all_positive_six_pairs():
    # Exact two-sided Wilcoxon: only the all-positive and all-negative sign patterns are as
    # extreme as the observed one, so p = 2 / 2**6.
    comparison = compare_paired([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])

    assert comparison.n_pairs == 6
    assert comparison.p_value == pytest.approx(2 / 64)
    assert comparison.mean_difference == pytest.approx(0.035)


def test_compare_paired_bootstrap_matches_independent_resampling():
    differences = np.array([0.01, -0.02, 0.03, 0.05, 0.00, 0.04, 0.02])
    rng = np.random.default_rng(0)
    means = np.array([rng.choice(differences, size=differences.size).mean() for _ in range(10_000)])

    comparison = compare_paired(differences.tolist())

    # Same seed but a different drawing routine, so the bounds agree only statistically.
    assert comparison.ci_low == pytest.approx(np.percentile(means, 2.5), abs=0.004)
    assert comparison.ci_high == pytest.approx(np.percentile(means, 97.5), abs=0.004)


def test_compare_paired_bootstrap_is_reproducible():
    differences = [0.01, -0.02, 0.03, 0.05, 0.04]

    assert compare_paired(differences) == compare_paired(differences)


def test_compare_paired_constant_differences_give_point_interval():
    comparison = compare_paired([0.02] * 4)

    assert comparison.ci_low == pytest.approx(0.02)
    assert comparison.ci_high == pytest.approx(0.02)


def test_compare_paired_all_zero_has_p_one():
    assert compare_paired([0.0, 0.0, 0.0]).p_value == 1.0


def test_compare_paired_no_pairs_is_nan():
    comparison = compare_paired([])

    assert comparison.n_pairs == 0
    assert math.isnan(comparison.p_value)
