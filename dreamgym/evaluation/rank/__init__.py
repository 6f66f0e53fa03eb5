"""`dreamgym rank`: does the dream rank a panel of policies as reality does?

The yardstick of a world (docs: "Fidelity: how we judge a world", point 3): a panel of policies
— fixed ones, controllers of several search lengths and seeds, SB3 agents — each scored in the
dream (one batch) and in reality (worker processes or Ray) on the same seeds. Per policy: both
means with bootstrap 95% CIs and dream/real with its CI (a warning where that CI excludes 1: the
dream flatters or undersells the policy). Over the panel and over the trained policies alone:
Spearman ρ and Pearson r, with CIs from resampled episodes; and a fitted dream → real line with
its leave-one-out error, the "predicted real score" of a policy only the dream has seen
(`predict_real`).

`rank(config)` returns the report (also OUT/rank.json, rank.csv, rank.png) and prints nothing;
the command (`dreamgym.commands.rank`) prints the table.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from dreamgym.evaluation.jobs import returns_in
from dreamgym.evaluation.rank.config import RankConfig
from dreamgym.evaluation.rank.correlation import (
    agreement,
    average_ranks,
    fit_dream_to_real,
    pearson,
    predict_real,
    ratio_ci,
    spearman,
)
from dreamgym.evaluation.rank.files import write_rank_files
from dreamgym.evaluation.rank.panel import PanelEntry, build_panel, policies_in
from dreamgym.evaluation.rank.reuse import REPORT_FILE, load_real_returns
from dreamgym.evaluation.rank.table import rank_table
from dreamgym.evaluation.stats import summarize
from dreamgym.policies import load_policy
from dreamgym.utils.threads import torch_threads
from dreamgym.world import World

DEFAULT_OUT = "rank"
"""Reports go to rank/<world name> unless --out says otherwise."""

__all__ = [
    "DEFAULT_OUT",
    "REPORT_FILE",
    "PanelEntry",
    "RankConfig",
    "agreement",
    "average_ranks",
    "build_panel",
    "fit_dream_to_real",
    "load_real_returns",
    "pearson",
    "policies_in",
    "predict_real",
    "rank",
    "rank_table",
    "ratio_ci",
    "spearman",
]


def _verdict(ci: list[float] | None, tolerance: float, real_mean: float) -> str:
    """ "dream high" / "dream low" when the ratio's CI lies wholly outside 1 ± tolerance; with a
    negative real mean (CarRacing's idle policies) a ratio below 1 means the dream pays more."""
    if ci is None:
        return "n/a"
    above, below = ci[0] > 1 + tolerance, ci[1] < 1 - tolerance
    if real_mean < 0:
        above, below = below, above
    return "dream high" if above else ("dream low" if below else "ok")


def score_policy(
    world: World, entry: PanelEntry, config: RankConfig, known_real: np.ndarray | None
) -> dict[str, Any]:
    """One row: the policy's dream and real returns (or `known_real`), summaries and ratio."""
    t0 = time.perf_counter()
    policy = load_policy(entry.spec, world, seed=config.seed, trust=config.trust_agent)
    with torch_threads(config.threads):
        dream = returns_in(
            "dream", world, policy, config, progress=False, episodes=int(config.dream_episodes)
        )
    t1 = time.perf_counter()
    real = known_real
    if real is None:
        real = returns_in("real", world, entry.spec, config, progress=config.progress)
    d = summarize(dream, config.seed, config.resamples)
    r = summarize(real, config.seed + 1, config.resamples)
    ci = ratio_ci(dream, real, config.seed + 2, config.resamples)
    return {
        "label": entry.label,
        "spec": entry.spec,
        "kind": entry.kind,
        "trained": entry.trained,
        "sha256": entry.sha256,
        "dream": d,
        "real": r,
        "ratio": d["mean"] / r["mean"] if r["mean"] != 0 else None,
        "ratio_ci95": ci,
        "verdict": _verdict(ci, config.ratio_tolerance, r["mean"]),
        "real_reused": known_real is not None,
        "seconds": {
            "dream": t1 - t0,
            "real": 0.0 if known_real is not None else time.perf_counter() - t1,
        },
    }


def panel_agreement(rows: list[dict[str, Any]], seed: int, resamples: int) -> dict[str, Any]:
    """ρ, r (with CIs) and the dream → real fit over all rows and over the trained ones."""
    out: dict[str, Any] = {"agreement": {}, "fit": None, "fit_trained": None}
    for name, picked in (("all", rows), ("trained", [r for r in rows if r["trained"]])):
        dream = [np.asarray(r["dream"]["returns"]) for r in picked]
        real = [np.asarray(r["real"]["returns"]) for r in picked]
        out["agreement"][name] = agreement(dream, real, seed + 3, resamples)
        fit = fit_dream_to_real(
            [r["dream"]["mean"] for r in picked], [r["real"]["mean"] for r in picked]
        )
        out["fit" if name == "all" else "fit_trained"] = fit
    return out


def _warnings(rows: list[dict[str, Any]], tolerance: float) -> list[str]:
    lines = []
    for r in rows:
        if r["verdict"] in ("dream high", "dream low"):
            lo, hi = r["ratio_ci95"]
            what = "flatters" if r["verdict"] == "dream high" else "undersells"
            lines.append(
                f"WARNING: {r['label']}: dream/real {r['ratio']:.2f} (95% CI [{lo:.2f}, {hi:.2f}]) "
                f"excludes 1 (and 1 ± {tolerance:g}): the dream {what} it"
            )
    return lines


def rank(config: RankConfig) -> dict[str, Any]:
    """Score the panel in the dream and in reality; the report (also OUT/rank.json, ...).

    Every policy is loaded (and checked) before any episode runs; real returns found in
    `config.real_from` (see `reuse`) are not played again.
    """
    config.check()
    world = World.load(config.world)
    panel = build_panel(
        world, config.policies, config.panel_dir, config.fixed, config.alternate_every, config.seed
    )
    if len(panel) < 2:
        raise ValueError(
            f"a panel ranks at least 2 policies, got {len(panel)}; add --policies, --panel-dir "
            "or --fixed"
        )
    t0 = time.perf_counter()
    known: dict[str, np.ndarray] = {}
    if config.real_from is not None:
        known = load_real_returns(
            config.real_from,
            panel,
            world.env_id,
            world.weights_sha256,
            int(config.seed),
            int(config.episodes),
            config.max_steps,
        )
    rows = [score_policy(world, e, config, known.get(e.spec)) for e in panel]
    out = Path(config.out) if config.out is not None else Path(DEFAULT_OUT) / world.name
    report: dict[str, Any] = {
        "world": world.name,
        "env_id": world.env_id,
        "world_sha256": world.weights_sha256,
        "episodes": int(config.episodes),
        "dream_episodes": int(config.dream_episodes),
        "seed": int(config.seed),
        "temperature": config.dream_record(world)["temperature"],
        "termination": config.termination,
        "done_threshold": config.done_threshold,
        "dream_settings": config.dream_record(world),
        "max_steps": config.max_steps,
        "policies": rows,
        **panel_agreement(rows, int(config.seed), int(config.correlation_resamples)),
        "ratio_tolerance": config.ratio_tolerance,
        "warnings": _warnings(rows, config.ratio_tolerance),
        "real_reused": ({"from": config.real_from, "specs": sorted(known)} if known else None),
        "out": str(out),
        "seconds": {"total": time.perf_counter() - t0},
    }
    write_rank_files(report, out, config.figures)
    return report
