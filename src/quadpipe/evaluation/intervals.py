"""Confidence intervals for success rates and error ratios.

Wilson's score interval for a binomial proportion keeps its coverage near 95 % for small n and
rates near 0 or 1, where the normal approximation collapses to a zero-width interval (50 out of 50
successes is not a certainty). Error ratios are skewed, so their interval is a percentile
bootstrap; with several training seeds it resamples seeds and episodes (a two-way bootstrap, the
same episodes for every seed), so the interval includes the seed-to-seed spread, not only the
episode-to-episode one. The bootstrap has its own fixed seed: the same results give the same
interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Z95 = 1.959963984540054  # standard normal 97.5 % quantile
BOOTSTRAP_SEED = 20261125


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """(low, high) Wilson score interval of successes / n; (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap(values: np.ndarray, stat: Callable[[np.ndarray], float], resamples: int = 2000,
              seed: int = BOOTSTRAP_SEED) -> tuple[float, float] | None:
    """95 % percentile interval of stat over values (S, E): S seeds x E episodes, NaN = no pair.

    Each resample draws S seeds and E episodes with replacement and applies `stat` to the finite
    values of the crossed rows and columns. None when there is no finite value.
    """
    v = np.atleast_2d(np.asarray(values, dtype=float))
    if not np.isfinite(v).any():
        return None
    rng = np.random.default_rng(seed)
    s, e = v.shape
    out = np.empty(resamples)
    for b in range(resamples):
        rows = rng.integers(0, s, s) if s > 1 else np.zeros(1, dtype=int)
        pick = v[np.ix_(rows, rng.integers(0, e, e))]
        pick = pick[np.isfinite(pick)]
        out[b] = stat(pick) if len(pick) else np.nan
    out = out[np.isfinite(out)]
    return float(np.quantile(out, 0.025)), float(np.quantile(out, 0.975))
