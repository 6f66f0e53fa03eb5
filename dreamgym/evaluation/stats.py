"""Statistics of returns: seeded percentile-bootstrap confidence intervals, summaries."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000


def bootstrap_ci(
    values: np.ndarray, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (seeded, so reports reproduce)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // x.size)
    for s in range(0, resamples, chunk):
        k = min(chunk, resamples - s)
        means[s : s + k] = x[rng.integers(0, x.size, (k, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def summarize(
    returns: np.ndarray, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES
) -> dict[str, Any]:
    """Mean, std, bootstrap 95% CI and the returns themselves: one side of every report."""
    r = np.asarray(returns, dtype=np.float64)
    return {
        "mean": float(r.mean()),
        "std": float(r.std()),
        "ci95": list(bootstrap_ci(r, seed, resamples)),
        "returns": r.tolist(),
    }


def spread_check(dream: np.ndarray, real: np.ndarray) -> dict[str, float | None]:
    """How the dream's returns are spread against reality's, beyond their means.

    A dream whose episodes are 3× as varied as reality's is wrong even when its mean is right
    (a policy that reality keeps at 150–250 steps dies at 20 and lives to 900 in such a dream).
    `sd_ratio` (dream std / real std; None when reality's is 0), `ks` (the two-sample
    Kolmogorov–Smirnov statistic, the largest gap between the two empirical CDFs, 0–1) and
    `wasserstein` (the earth mover's distance W₁ between the two, in return units: the area
    between the CDFs; it counts both a shifted mean and a wrong spread).
    """
    d = np.sort(np.asarray(dream, dtype=np.float64).reshape(-1))
    r = np.sort(np.asarray(real, dtype=np.float64).reshape(-1))
    if d.size == 0 or r.size == 0:
        return {"sd_ratio": None, "ks": None, "wasserstein": None}
    grid = np.concatenate([d, r])
    grid.sort(kind="mergesort")
    cdf_d = np.searchsorted(d, grid, side="right") / d.size
    cdf_r = np.searchsorted(r, grid, side="right") / r.size
    gaps = np.abs(cdf_d - cdf_r)
    real_sd = float(r.std())
    return {
        "sd_ratio": float(d.std()) / real_sd if real_sd > 0 else None,
        "ks": float(gaps.max()),
        "wasserstein": float((gaps[:-1] * np.diff(grid)).sum()),
    }
