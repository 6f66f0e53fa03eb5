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
