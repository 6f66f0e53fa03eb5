"""What `dreamgym rank` writes: rank.json (the report), rank.csv (a row per policy), rank.png.

The scatter plot is the yardstick at a glance: each policy at (dream mean, real mean) with both
95% CIs; on the diagonal the dream is right, above it the dream undersells a policy, below it
flatters one. The fitted dream → real line is drawn beside the diagonal.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from dreamgym.evaluation.rank.correlation import predict_real
from dreamgym.evaluation.rank.reuse import REPORT_FILE
from dreamgym.utils.files import atomic_write_bytes, atomic_write_json

CSV_FILE = "rank.csv"
PLOT_FILE = "rank.png"
KIND_COLORS = {"fixed": "tab:gray", "controller": "tab:blue", "sb3": "tab:orange"}


def _csv(report: dict[str, Any]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        ["policy", "spec", "kind", "dream_mean", "dream_ci_low", "dream_ci_high", "real_mean"]
        + ["real_ci_low", "real_ci_high", "ratio", "ratio_ci_low", "ratio_ci_high"]
        + ["predicted_real", "real_reused"]
    )
    fit = report.get("fit")
    for row in report["policies"]:
        d, r = row["dream"], row["real"]
        ratio_ci = row["ratio_ci95"] or [None, None]
        predicted = predict_real(d["mean"], fit) if fit is not None else None
        writer.writerow(
            [row["label"], row["spec"], row["kind"], d["mean"], *d["ci95"], r["mean"], *r["ci95"]]
            + [row["ratio"], *ratio_ci, predicted, row["real_reused"]]
        )
    return buf.getvalue().encode()


def _scatter_png(report: dict[str, Any]) -> bytes:
    """Dream mean vs real mean per policy with 95% CIs, the diagonal and the fitted line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rows = report["policies"]
    xs = np.array([row["dream"]["mean"] for row in rows])
    ys = np.array([row["real"]["mean"] for row in rows])
    for kind, color in KIND_COLORS.items():
        picked = [i for i, row in enumerate(rows) if row["kind"] == kind]
        if not picked:
            continue
        xerr = np.abs(np.array([rows[i]["dream"]["ci95"] for i in picked]).T - xs[picked])
        yerr = np.abs(np.array([rows[i]["real"]["ci95"] for i in picked]).T - ys[picked])
        ax.errorbar(
            xs[picked], ys[picked], xerr=xerr, yerr=yerr, fmt="o", color=color, label=kind,
            capsize=3, alpha=0.85,
        )  # fmt: skip
    for x, y, row in zip(xs, ys, rows, strict=True):
        ax.annotate(row["label"], (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    lo, hi = float(min(xs.min(), ys.min(), 0.0)), float(max(xs.max(), ys.max())) * 1.05
    ax.plot([lo, hi], [lo, hi], "k:", lw=1, label="dream = real")
    fit = report.get("fit")
    if fit is not None:
        line = np.array([lo, hi])
        ax.plot(line, predict_real(line, fit), "tab:red", lw=1, label=_fit_label(fit))
    ax.set_xlabel(f"dream mean return (τ={report.get('temperature')})")
    ax.set_ylabel("real mean return")
    agree = report["agreement"]["all"]
    ax.set_title(
        f"{report['world']}: {len(rows)} policies, ρ = {_num(agree['spearman'])}, "
        f"r = {_num(agree['pearson'])}",
        fontsize=10,
    )
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _fit_label(fit: dict[str, Any]) -> str:
    loo = fit.get("loo_rmse")
    err = "" if loo is None else f" (LOO RMSE {loo:.0f})"
    return f"real ≈ {fit['slope']:.2f}·dream {fit['intercept']:+.0f}{err}"


def write_rank_files(report: dict[str, Any], out: Path, figures: bool) -> list[str]:
    """rank.json, rank.csv and (with `figures`) rank.png in `out`, atomically; their names."""
    out.mkdir(parents=True, exist_ok=True)
    names = [REPORT_FILE, CSV_FILE] + ([PLOT_FILE] if figures else [])
    report["files"] = names
    atomic_write_bytes(out / CSV_FILE, _csv(report))
    if figures:
        atomic_write_bytes(out / PLOT_FILE, _scatter_png(report))
    atomic_write_json(out / REPORT_FILE, report)
    return names
