"""`dreamgym rank`'s report as Markdown: the panel, the agreement, the fitted line."""

from __future__ import annotations

from typing import Any


def _side(s: dict[str, Any]) -> str:
    lo, hi = s["ci95"]
    return f"{s['mean']:.1f} ± {s['std']:.1f} [{lo:.1f}, {hi:.1f}]"


def _ratio(row: dict[str, Any]) -> str:
    if row["ratio"] is None:
        return "n/a (real mean is 0)"
    ci = row["ratio_ci95"]
    return f"{row['ratio']:.2f}" + ("" if ci is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]")


def _value(x: float | None, ci: list[float] | None) -> str:
    if x is None:
        return "undefined"
    return f"{x:.2f}" + ("" if ci is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]")


def fit_line_text(fit: dict[str, Any] | None) -> str:
    """'real ≈ a × dream + b (LOO RMSE e, n policies)', or why there is no line."""
    if fit is None:
        return "undefined (fewer than 3 policies, or one dream score for all)"
    loo = "n/a" if fit["loo_rmse"] is None else f"{fit['loo_rmse']:.1f}"
    return (
        f"real ≈ {fit['slope']:.3f} × dream {fit['intercept']:+.1f} (leave-one-out RMSE {loo}, "
        f"in-sample {fit['rmse']:.1f}, {fit['n']} policies)"
    )


def rank_table(report: dict[str, Any]) -> str:
    """The report as Markdown: a row per policy, then ρ and r, then the dream → real lines."""
    seed, n = report["seed"], report["episodes"]
    lines = [
        f"### Panel of {len(report['policies'])} policies in world `{report['world']}` "
        f"({report['env_id']})",
        "",
        f"{n} real episodes (seeds {seed}–{seed + n - 1}) and {report['dream_episodes']} dreams "
        f"per policy (τ={report['temperature']:g}, termination {report['termination']}); "
        "means ± std [bootstrap 95% CI]",
        "",
        "| policy | kind | dream | real | dream/real [95% CI] | |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["policies"]:
        verdict = row["verdict"] if row["verdict"] in ("ok", "n/a") else f"**{row['verdict']}**"
        reused = " (real reused)" if row["real_reused"] else ""
        lines.append(
            f"| {row['label']} | {row['kind']}{reused} | {_side(row['dream'])} | "
            f"{_side(row['real'])} | {_ratio(row)} | {verdict} |"
        )
    lines += [
        "",
        "| policies | n | Spearman ρ [95% CI] | Pearson r [95% CI] |",
        "|---|---|---|---|",
    ]
    for name, a in report["agreement"].items():
        lines.append(
            f"| {name} | {a['n']} | {_value(a['spearman'], a['spearman_ci95'])} | "
            f"{_value(a['pearson'], a['pearson_ci95'])} |"
        )
    lines += [
        "",
        f"dream → real, all policies: {fit_line_text(report['fit'])}",
        f"dream → real, trained only: {fit_line_text(report['fit_trained'])}",
    ]
    reused = report.get("real_reused")
    if reused:
        lines += ["", f"real returns of {len(reused['specs'])} policies read from {reused['from']}"]
    return "\n".join(lines)
