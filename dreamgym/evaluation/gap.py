"""`dreamgym gap`: the same policy in the dream and in reality, and the gap between them.

A policy that scores much better in the dream than in reality has probably found a flaw of the
model to exploit — Ha & Schmidhuber (2018, §4.5) saw exactly that in Doom, and countered it by
training at a higher temperature τ. The report has bootstrap confidence intervals, a Markdown
table, and optional files (gap.csv, gap.json, gap.png).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamgym.envs.dream import dream_precision
from dreamgym.evaluation.jobs import returns_in
from dreamgym.evaluation.stats import BOOTSTRAP_RESAMPLES, summarize
from dreamgym.options import DreamAndRealOptions, threshold_note
from dreamgym.policies import POLICY_SPECS_HELP, load_policy
from dreamgym.utils.files import atomic_write_bytes, atomic_write_json
from dreamgym.utils.options import TRUST_AGENT_HELP, deprecated_aliases, option
from dreamgym.utils.validate import check_output_dir
from dreamgym.world import World

GAP_FILES = ("gap.csv", "gap.json", "gap.png")


@deprecated_aliases
@dataclass(kw_only=True)
class GapConfig(DreamAndRealOptions):
    """Options of `dreamgym gap`: the dream's and the real runs', and these."""

    policy: str = field(metadata={"help": POLICY_SPECS_HELP})
    episodes: int = option(16, "episodes in the dream and in reality each")
    seed: int = option(0, "seed of both evaluations and the bootstrap")
    out: str | None = option(None, "directory for gap.csv, gap.json and gap.png")
    margin: float = option(
        0.2, "warn when dream mean − real mean exceeds this fraction of |real mean|"
    )
    resamples: int = option(BOOTSTRAP_RESAMPLES, "bootstrap resamples")
    progress: bool = option(True, "show a progress bar (real episodes)")
    trust_agent: bool = option(False, TRUST_AGENT_HELP)


def gap(config: GapConfig) -> dict[str, Any]:
    """The same policy in the dream and in reality: the report, and its files with `out`.

    Returns the report dict (also written as gap.json with --out); the `dreamgym gap` command
    prints its table. `exploit_warning` is set when the dream mean exceeds the real mean by more
    than `margin` × |real mean|.
    """
    if config.out is not None:
        check_output_dir(config.out, inputs=[config.world])
    world = World.load(config.world)
    policy = load_policy(config.policy, world, seed=config.seed, trust=config.trust_agent)
    dream = returns_in("dream", world, policy, config, progress=config.progress)
    real = returns_in("real", world, config.policy, config, progress=config.progress)
    record = config.dream_record(world)
    report = gap_report(
        world,
        config.policy,
        dream,
        real,
        seed=config.seed,
        temperature=record["temperature"],
        precision=dream_precision(config.precision, config.device),
        margin=config.margin,
        resamples=config.resamples,
    )
    report["dream_settings"] = record
    if config.out is not None:
        write_gap_files(report, Path(config.out))
    return report


def gap_report(
    world: World,
    policy: str,
    dream: np.ndarray,
    real: np.ndarray,
    seed: int = 0,
    temperature: float | None = None,
    margin: float = 0.2,
    resamples: int = BOOTSTRAP_RESAMPLES,
    precision: str | None = None,
) -> dict[str, Any]:
    """Statistics of dream vs real returns (means, std, bootstrap CIs, difference, ratio)."""
    d, r = summarize(dream, seed, resamples), summarize(real, seed + 1, resamples)
    rng = np.random.default_rng(seed + 2)
    dream_a, real_a = np.asarray(dream, np.float64), np.asarray(real, np.float64)
    k = min(resamples, 2000)  # resampled difference of means (the two samples are independent)
    diffs = dream_a[rng.integers(0, dream_a.size, (k, dream_a.size))].mean(axis=1) - real_a[
        rng.integers(0, real_a.size, (k, real_a.size))
    ].mean(axis=1)
    diff = d["mean"] - r["mean"]
    ratio = d["mean"] / r["mean"] if r["mean"] != 0 else None
    exploit = diff > margin * abs(r["mean"])
    report: dict[str, Any] = {
        "world": world.name,
        "env_id": world.env_id,
        "policy": policy,
        "episodes": int(dream_a.size),
        "seed": seed,
        "temperature": temperature,
        "precision": precision,
        "dream": d,
        "real": r,
        "difference": {
            "dream_minus_real": diff,
            "ci95": [float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))],
        },
        "ratio": ratio,
        "margin": margin,
        "exploit_warning": bool(exploit),
    }
    if exploit:
        report["warning"] = (
            f"WARNING: the dream return ({d['mean']:.2f}) exceeds the real one ({r['mean']:.2f}) "
            f"by more than {margin:.0%} of |real|: the agent may be exploiting the model "
            "(Ha & Schmidhuber 2018, §4.5 saw this in Doom). Train at a higher temperature τ, or "
            "collect data with this policy and retrain M."
        )
    return report


def gap_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    d, r = report["dream"], report["real"]
    tau = f"{report.get('temperature')}{threshold_note(report.get('dream_settings'))}"
    ratio = "n/a (real mean is 0)" if report["ratio"] is None else f"{report['ratio']:.3f}"
    diff = report["difference"]
    lines = [
        f"### `{report['policy']}` in world `{report['world']}` ({report['env_id']})",
        "",
        f"| | dream (τ={tau}) | real |",
        "|---|---|---|",
        f"| episodes | {len(d['returns'])} | {len(r['returns'])} |",
        f"| mean ± std | {d['mean']:.2f} ± {d['std']:.2f} | {r['mean']:.2f} ± {r['std']:.2f} |",
        f"| 95% CI (bootstrap) | [{d['ci95'][0]:.2f}, {d['ci95'][1]:.2f}] | "
        f"[{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] |",
        "",
        f"dream − real: {diff['dream_minus_real']:.2f} (95% CI [{diff['ci95'][0]:.2f}, "
        f"{diff['ci95'][1]:.2f}]); dream / real: {ratio}",
    ]
    return "\n".join(lines)


def write_gap_files(report: dict[str, Any], out: Path) -> None:
    """gap.csv (per episode), gap.json (the report) and gap.png (both distributions), atomically."""
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["episode", "dream_return", "real_return"])
    for i, (d, r) in enumerate(
        zip(report["dream"]["returns"], report["real"]["returns"], strict=True)
    ):
        writer.writerow([i, repr(d), repr(r)])
    atomic_write_bytes(out / "gap.csv", buf.getvalue().encode())
    atomic_write_json(out / "gap.json", report)
    atomic_write_bytes(out / "gap.png", _gap_png(report))


def _gap_png(report: dict[str, Any]) -> bytes:
    """Both return distributions (jittered points, box plots, means): PNG bytes, no GUI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    data = [report["dream"]["returns"], report["real"]["returns"]]
    labels = [f"dream (τ={report.get('temperature')})", "real"]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks([1, 2], labels)
    for k, (values, color) in enumerate(zip(data, ("tab:purple", "tab:green"), strict=True)):
        x = k + 1 + rng.uniform(-0.12, 0.12, len(values))
        ax.scatter(x, values, s=14, alpha=0.7, color=color)
        ax.hlines(np.mean(values), k + 0.75, k + 1.25, colors=color, linestyles="--")
    ax.set_ylabel("episode return")
    title = f"{report['policy']} in {report['world']}: dream vs real"
    if report["exploit_warning"]:
        title += "\n(dream ≫ real: model exploitation?)"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
