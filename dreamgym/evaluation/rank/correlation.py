"""Does the dream rank policies as reality does? Rank and linear correlations, and a line.

A world can be wrong about every policy's score and still useful, as long as it orders them
as reality does (Spearman ρ) and its errors are predictable (Pearson r, and a fitted dream → real
line whose leave-one-out error says how well a new policy's real score can be guessed from its
dream score). WorldGym (2025) reports r ≈ 0.78 between a learned world's and reality's policy
scores. Plain numpy: no scipy dependency for a few tens of lines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

CORRELATION_RESAMPLES = 2_000
"""Bootstrap resamples of the episodes behind ρ and r (each resample recomputes every mean)."""


def average_ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing the mean of the ranks they span (what Spearman's ρ needs).

    >>> average_ranks([10.0, 20.0, 20.0, 5.0]).tolist()
    [2.0, 3.5, 3.5, 1.0]
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts + 1  # the rank of each distinct value's first copy
    return (first + (counts - 1) / 2.0)[inverse].astype(np.float64)


def pearson(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Pearson's r; None when it is undefined (fewer than 2 points, or a side is constant)."""
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    b = np.asarray(y, dtype=np.float64).reshape(-1)
    if a.size != b.size:
        raise ValueError(f"pearson needs two samples of one size, got {a.size} and {b.size}")
    if a.size < 2:
        return None
    da, db = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(da @ da) * float(db @ db))
    if denom == 0.0 or not math.isfinite(denom):
        return None
    return float(np.clip(float(da @ db) / denom, -1.0, 1.0))


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Spearman's ρ: Pearson's r of the tie-averaged ranks; None when undefined."""
    a, b = np.asarray(x).reshape(-1), np.asarray(y).reshape(-1)
    if a.size != b.size:
        raise ValueError(f"spearman needs two samples of one size, got {a.size} and {b.size}")
    return pearson(average_ranks(a), average_ranks(b))


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """Least-squares (slope, intercept) of y on x; None when x is constant."""
    dx = x - x.mean()
    sxx = float(dx @ dx)
    if x.size < 2 or sxx == 0.0:
        return None
    slope = float(dx @ (y - y.mean())) / sxx
    return slope, float(y.mean() - slope * x.mean())


def fit_dream_to_real(
    dream: Sequence[float] | np.ndarray, real: Sequence[float] | np.ndarray
) -> dict[str, Any] | None:
    """Least-squares line real ≈ slope · dream + intercept, with its errors.

    `loo_rmse` is the leave-one-out error: each policy's real score predicted by the line
    fitted to the others — the honest error of predicting a policy the fit has not seen (what an
    exploitation alarm compares against). `rmse` is the in-sample error. None when the line is
    undefined (fewer than 3 policies, or every dream score the same).
    """
    x = np.asarray(dream, dtype=np.float64).reshape(-1)
    y = np.asarray(real, dtype=np.float64).reshape(-1)
    if x.size != y.size:
        raise ValueError(f"the fit needs one real score per dream score, got {x.size}, {y.size}")
    line = _line(x, y) if x.size >= 3 else None
    if line is None:
        return None
    slope, intercept = line
    errors = []
    for i in range(x.size):
        keep = np.arange(x.size) != i
        other = _line(x[keep], y[keep])
        if other is None:
            errors = []
            break
        errors.append(other[0] * x[i] + other[1] - y[i])
    residuals = slope * x + intercept - y
    return {
        "slope": slope,
        "intercept": intercept,
        "loo_rmse": float(np.sqrt(np.mean(np.square(errors)))) if errors else None,
        "rmse": float(np.sqrt(np.mean(np.square(residuals)))),
        "n": int(x.size),
    }


def predict_real(dream_score: float | np.ndarray, fit: dict[str, Any]) -> float | np.ndarray:
    """The real score the fitted line predicts for a dream score (`fit_dream_to_real`'s dict,
    or the `fit` of a rank.json); ± `fit["loo_rmse"]` is its typical error.

    >>> predict_real(100.0, {"slope": 0.5, "intercept": 20.0, "loo_rmse": 7.0})
    70.0
    """
    pred = float(fit["slope"]) * np.asarray(dream_score, dtype=np.float64) + float(fit["intercept"])
    return float(pred) if np.ndim(pred) == 0 else pred


def ratio_ci(
    dream: np.ndarray, real: np.ndarray, seed: int, resamples: int, level: float = 0.95
) -> list[float] | None:
    """Percentile bootstrap CI of mean(dream) / mean(real), the two samples resampled apart.

    None when the real mean is 0 (no ratio); a resample whose real mean is 0 is dropped.
    """
    d = np.asarray(dream, dtype=np.float64).reshape(-1)
    r = np.asarray(real, dtype=np.float64).reshape(-1)
    if r.size == 0 or d.size == 0 or r.mean() == 0:
        return None
    rng = np.random.default_rng(seed)
    dm = d[rng.integers(0, d.size, (resamples, d.size))].mean(axis=1)
    rm = r[rng.integers(0, r.size, (resamples, r.size))].mean(axis=1)
    ok = rm != 0
    ratios = dm[ok] / rm[ok]
    lo, hi = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def agreement(
    dream: Sequence[np.ndarray],
    real: Sequence[np.ndarray],
    seed: int,
    resamples: int = CORRELATION_RESAMPLES,
) -> dict[str, Any]:
    """ρ and r between the policies' dream and real mean returns, with bootstrap 95% CIs.

    `dream[i]`, `real[i]`: policy i's episode returns. The CIs resample every policy's
    episodes (dream and real apart) and recompute the means and the correlations: how much of
    the agreement the episode noise could make or hide. A CI is None when fewer than half the
    resamples give a defined value.
    """
    dm = np.array([np.mean(d) for d in dream], dtype=np.float64)
    rm = np.array([np.mean(r) for r in real], dtype=np.float64)
    rng = np.random.default_rng(seed)
    rhos, rs = np.full(resamples, np.nan), np.full(resamples, np.nan)
    if len(dm) >= 2 and resamples > 0:
        dboot = np.stack([_boot_means(d, rng, resamples) for d in dream], axis=1)
        rboot = np.stack([_boot_means(r, rng, resamples) for r in real], axis=1)
        for k in range(resamples):
            rho, r = spearman(dboot[k], rboot[k]), pearson(dboot[k], rboot[k])
            rhos[k] = np.nan if rho is None else rho
            rs[k] = np.nan if r is None else r
    return {
        "n": len(dm),
        "spearman": spearman(dm, rm) if len(dm) else None,
        "spearman_ci95": _ci(rhos),
        "pearson": pearson(dm, rm) if len(dm) else None,
        "pearson_ci95": _ci(rs),
    }


def _boot_means(x: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    v = np.asarray(x, dtype=np.float64).reshape(-1)
    return v[rng.integers(0, v.size, (resamples, v.size))].mean(axis=1)


def _ci(values: np.ndarray, level: float = 0.95) -> list[float] | None:
    ok = values[np.isfinite(values)]
    if ok.size == 0 or ok.size < values.size / 2:
        return None
    lo, hi = np.quantile(ok, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]
