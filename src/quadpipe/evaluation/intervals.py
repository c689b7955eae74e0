"""Confidence intervals and tests for success rates and error ratios.

Wilson's score interval for a binomial proportion keeps its coverage near 95 % for small n and
rates near 0 or 1, where the normal approximation collapses to a zero-width interval (50 out of 50
successes is not a certainty). Error ratios are skewed, so their interval is a percentile
bootstrap; with several training seeds it resamples seeds and episodes (a two-way bootstrap, the
same episodes for every seed), so the interval includes the seed-to-seed spread, not only the
episode-to-episode one. The bootstrap has its own fixed seed: the same results give the same
interval.

Success outcomes of S seeds on E shared episodes are not S * E independent trials: an episode that
is hard (a steep slope, a late kick) is hard for every seed and for the expert. The episode is the
independent unit (the cluster), so paired and pooled figures resample or count episodes:
`cluster_bootstrap` resamples per-episode values, `effective_n` shrinks S * E to the number of
independent trials the clustered outcomes are worth, and `mcnemar_exact` tests one seed against
the expert over episodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Z95 = 1.959963984540054  # standard normal 97.5 % quantile
BOOTSTRAP_SEED = 20261125


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """(low, high) Wilson score interval of successes / n; (0, 1) when n = 0.

    Counts may be fractional: with an effective number of trials (`effective_n`) the successes
    are rate * n_eff. At 0 or n successes the bound on that side is exactly 0 or 1 (the formula
    gives it up to rounding: 0.9999999999999998 for 300 of 300).
    """
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if p <= 0 else max(0.0, centre - half)
    return lo, 1.0 if p >= 1 else min(1.0, centre + half)


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


def cluster_bootstrap(values: np.ndarray, resamples: int = 2000,
                      seed: int = BOOTSTRAP_SEED) -> tuple[float, float] | None:
    """95 % percentile interval of the mean of values (E,): one value per episode (cluster).

    Each resample draws E episodes with replacement; an episode's value already summarises all
    that moves together on it (the seeds' mean success, minus the expert's), so resampling
    episodes keeps seeds and the expert paired. All resamples are drawn at once, (resamples, E)
    indices, so 2000 resamples of 1000 episodes cost one 16 MB array and no Python loop. The
    interval collapses to the point when every episode has the same value (no spread to
    resample). None when there are no episodes. The bounds are rounded to 1e-12: a bound that is
    0 in exact arithmetic but reached through sums of thirds (three seeds) came out as -1e-18
    and read "-0", as if the interval crossed 0.
    """
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (resamples, v.size))].mean(axis=1)
    lo, hi = np.round(np.quantile(means, [0.025, 0.975]), 12) + 0.0  # + 0.0: no -0.0
    return float(lo), float(hi)


def effective_n(outcomes: np.ndarray) -> float:
    """Independent trials worth of outcomes (S, E): S seeds x E episodes, 1 = success.

    Korn and Graubard's (1998) effective sample size p (1 - p) / Var(p), with Var(p) the
    between-episode variance of the per-episode success (mean over seeds) divided by E: episodes
    are independent, seeds on one episode are not. It lies between E (seeds always agree on an
    episode: they add no independent trial) and S * E (seeds as independent as fresh episodes);
    values outside, from sampling noise, are clipped. When every outcome is equal (p = 0 or 1)
    the variance says nothing about clustering and, as Korn and Graubard and the NCHS standards
    do, the count is S * E, so that one failure more never narrows the interval.
    """
    o = np.atleast_2d(np.asarray(outcomes, dtype=float))
    s, e = o.shape
    p = float(o.mean())
    if p in (0.0, 1.0):
        return float(s * e)
    if e < 2:  # one episode: no between-episode variance to estimate, assume the worst
        return float(e)
    var = float(np.var(o.mean(axis=0), ddof=1)) / e
    return float(np.clip(p * (1 - p) / var, e, s * e)) if var > 0 else float(s * e)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value of discordant counts b and c.

    Under the null hypothesis (the same success rate for both) each discordant pair is equally
    likely to go either way, so min(b, c) is a tail of Bin(b + c, 1/2):
    p = min(1, 2 P(X <= min(b, c))); 1 when there is no discordant pair. Exact in integers (the
    normal approximation is poor for the few discordant pairs a good policy leaves).
    """
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2 ** n)
