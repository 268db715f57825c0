"""Statistics for the leaderboard: seed summaries with t intervals and paired comparisons.

Seed summary: the sample mean and sample standard deviation (ddof=1) over seeds, with the 95%
Student t interval ``mean ± t_{0.975, n-1} * sd / sqrt(n)``. With one seed the standard deviation
and the interval are undefined and come back as NaN.

Paired comparison of two configurations over the same test cases: the two-sided Wilcoxon
signed-rank test (``scipy.stats.wilcoxon``) gives the p-value, and a percentile bootstrap of the
mean difference gives a 95% interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
_BOOTSTRAP_CHUNK = 1_000  # resamples drawn at once, bounds memory to chunk * n_pairs floats


@dataclass(frozen=True)
class SeedSummary:
    """Mean, sample standard deviation and 95% t interval of one metric over seeds.

    ``std``, ``ci_low``, ``ci_high`` and ``ci_half_width`` are NaN when ``n`` < 2. All are NaN
    when ``n`` is 0.
    """

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    ci_half_width: float


@dataclass(frozen=True)
class PairedComparison:
    """Paired difference ``a - b`` over matched observations.

    ``p_value`` comes from the two-sided Wilcoxon signed-rank test and is 1.0 when every
    difference is zero. ``ci_low``/``ci_high`` bound the mean difference (95% percentile
    bootstrap). Every field but ``n_pairs`` is NaN when there are no pairs.
    """

    n_pairs: int
    mean_difference: float
    p_value: float
    ci_low: float
    ci_high: float


def summarize_seeds(values: Sequence[float]) -> SeedSummary:
    """Summarize one value per seed; NaN values are dropped before counting."""
    array = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    n = int(array.size)
    if n == 0:
        return SeedSummary(0, math.nan, math.nan, math.nan, math.nan, math.nan)

    mean = float(array.mean())
    if n == 1:
        return SeedSummary(1, mean, math.nan, math.nan, math.nan, math.nan)

    std = float(array.std(ddof=1))
    t_quantile = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df=n - 1))
    half_width = t_quantile * std / math.sqrt(n)
    return SeedSummary(n, mean, std, mean - half_width, mean + half_width, half_width)


def compare_paired(
    differences: Sequence[float],
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> PairedComparison:
    """Test whether paired differences ``a_i - b_i`` are centred on zero.

    The p-value is ``scipy.stats.wilcoxon(d, alternative="two-sided")`` with SciPy's defaults:
    zero differences are dropped (``zero_method="wilcox"``), and ``method="auto"`` computes the
    exact null distribution up to 50 pairs and the normal approximation above that. With ties or
    zeros SciPy switches to exhaustive permutations up to 13 pairs. The interval resamples the
    pairs with replacement ``n_resamples`` times from ``numpy.random.default_rng(seed)``, so the
    same input always gives the same interval.

    NOTE: both methods assume independent pairs. Pairs that share a test case across seeds are
    correlated, so the p-value and the interval are somewhat optimistic.
    """
    d = np.asarray([v for v in differences if not math.isnan(v)], dtype=np.float64)
    n = int(d.size)
    if n == 0:
        return PairedComparison(0, math.nan, math.nan, math.nan, math.nan)

    if np.count_nonzero(d) == 0:
        p_value = 1.0  # SciPy returns NaN or warns here; no difference is no evidence of one
    else:
        p_value = float(stats.wilcoxon(d, alternative="two-sided").pvalue)

    ci_low, ci_high = _bootstrap_mean_interval(d, n_resamples, seed)
    return PairedComparison(n, float(d.mean()), p_value, ci_low, ci_high)


def _bootstrap_mean_interval(d: np.ndarray, n_resamples: int, seed: int) -> tuple[float, float]:
    """Return the 95% percentile bootstrap interval of the mean of ``d``."""
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, _BOOTSTRAP_CHUNK):
        stop = min(start + _BOOTSTRAP_CHUNK, n_resamples)
        indices = rng.integers(0, d.size, size=(stop - start, d.size))
        means[start:stop] = d[indices].mean(axis=1)

    tail = (1.0 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)
