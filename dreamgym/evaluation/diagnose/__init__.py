"""`dreamgym diagnose`: is a world faithful? The fast fidelity loop, no controller training.

Two checks (docs: "Fidelity: how we judge a world"):

1. **Fixed-policy suite** (`suite`): simple policies (each constant action, random,
   alternating; for CarRacing no action, gas, steering, brake, ...) plus any `--policy` run in
   the dream and in the real env on the same seeds; per policy the dream and real means with
   std and bootstrap 95% CIs, their ratio, and a flag when the dream is off the real mean by
   more than ±rel_tol of it and more than abs_tol (near-zero returns).
2. **Teacher forcing** (`teacher`): M, of either family, reads real episodes (held-out ones
   of `--data`, or fresh ones) from its initial state through the memory seam; its predicted
   return and termination count per episode against the real ones, and the per-step done AUC.

Comparing many trial worlds of one env, or one world at several τ or termination rules, needs
the dream side alone: `--dream-only --real-from REPORT --no-teacher` dreams the suite and judges
it against an earlier report's real returns, playing no real episode.

`diagnose(config)` returns the report (also OUT/diagnose.json) and prints nothing; the command
(`dreamgym.commands.diagnose`) prints the table. Figures: see `figures`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dreamgym.envs.dream import dream_precision
from dreamgym.evaluation.diagnose.config import (
    ABSOLUTE_TOLERANCE,
    RELATIVE_TOLERANCE,
    DiagnoseConfig,
)
from dreamgym.evaluation.diagnose.figures import write_figures
from dreamgym.evaluation.diagnose.reuse import REPORT_FILE, load_real_returns
from dreamgym.evaluation.diagnose.suite import (
    fidelity_check,
    fixed_suite,
    run_suite,
    suite_row,
    suite_table,
)
from dreamgym.evaluation.diagnose.teacher import (
    TEACHER_SEED_OFFSET,
    done_auc,
    run_teacher,
    teacher_force_episode,
    teacher_force_episodes,
)
from dreamgym.policies import load_policy
from dreamgym.utils.files import atomic_write_json
from dreamgym.utils.validate import check_output_dir
from dreamgym.world import World

DEFAULT_OUT = "diagnose"
"""Reports go to diagnose/<world name> unless --out says otherwise."""

__all__ = [
    "ABSOLUTE_TOLERANCE",
    "DEFAULT_OUT",
    "RELATIVE_TOLERANCE",
    "REPORT_FILE",
    "TEACHER_SEED_OFFSET",
    "DiagnoseConfig",
    "diagnose",
    "diagnose_table",
    "done_auc",
    "fidelity_check",
    "fixed_suite",
    "load_real_returns",
    "run_suite",
    "suite_row",
    "suite_table",
    "teacher_force_episode",
    "teacher_force_episodes",
]


def diagnose(config: DiagnoseConfig) -> dict[str, Any]:
    """Run the suite and teacher forcing on `config.world`; the report (also OUT/diagnose.json).

    Every policy spec is loaded (and checked) before anything runs. Real episodes run in
    `config.workers` processes (`evaluation.real`), dream episodes as one batch per policy.
    """
    config.check()
    world = World.load(config.world)
    policies = fixed_suite(world, config.alternate_every) if config.suite else []
    policies += [(spec, spec) for spec in (config.policy or []) if config.suite]
    for _, spec in policies:  # bad specs fail now, with a clear message
        load_policy(spec, world, seed=config.seed, trust=config.trust_agent)
    out = Path(config.out) if config.out is not None else Path(DEFAULT_OUT) / world.name
    check_output_dir(out, inputs=[config.world])
    dream = config.dream_record(world)
    temperature = dream["temperature"]
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    known_real = {}
    if config.real_from is not None and policies:
        known_real = load_real_returns(
            config.real_from,
            world.env_id,
            int(config.seed),
            int(config.episodes),
            config.max_steps,
        )
    reused = [spec for _, spec in policies if spec in known_real]
    rows = (
        run_suite(world, policies, config, config.progress, known_real, config.dream_only)
        if policies
        else []
    )
    seconds["suite"] = time.perf_counter() - t0
    teacher, episodes, forced = None, [], []
    if config.teacher:
        t1 = time.perf_counter()
        teacher, episodes, forced = run_teacher(world, config, config.progress)
        seconds["teacher"] = time.perf_counter() - t1
    files = [REPORT_FILE]
    if config.figures:
        t2 = time.perf_counter()
        files += write_figures(
            world, out, rows, teacher, episodes, forced, temperature, config.seed
        )
        seconds["figures"] = time.perf_counter() - t2
    seconds["total"] = time.perf_counter() - t0
    report: dict[str, Any] = {
        "world": world.name,
        "env_id": world.env_id,
        "episodes": int(config.episodes),
        "dream_episodes": int(config.dream_episodes),
        "seed": int(config.seed),
        "dream_seed": int(config.seed if config.dream_seed is None else config.dream_seed),
        "temperature": temperature,
        "precision": dream_precision(config.precision, config.device),
        "max_steps": config.max_steps,
        "dream_settings": dream,
        "dream_only": bool(config.dream_only),
        "tolerance": {"relative": config.rel_tol, "absolute": config.abs_tol},
        "suite": rows,
        "real_reused": {"from": config.real_from, "specs": reused} if reused else None,
        "suite_ok": all(r["ok"] is not False for r in rows),
        "flagged": [r["policy"] for r in rows if r["ok"] is False],
        "teacher": teacher,
        "out": str(out),
        "files": files,
        "seconds": seconds,
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / REPORT_FILE, report)
    return report


def _seeds(report: dict[str, Any]) -> str:
    """How the two sides were seeded, for the table's heading."""
    sides = "no real episode played" if report.get("dream_only") else "same seeds in both"
    dream_seed = report.get("dream_seed", report["seed"])
    return sides if dream_seed == report["seed"] else f"{sides}, dreams from seed {dream_seed}"


def _flag(check: dict[str, Any]) -> str:
    return "ok" if check["ok"] else f"**{check['flag'].upper()}**"


def diagnose_table(report: dict[str, Any]) -> str:
    """The report as Markdown: the suite's table and teacher forcing's summary."""
    tol = report["tolerance"]
    lines = [f"### Fidelity of world `{report['world']}` ({report['env_id']})", ""]
    if report["suite"]:
        lines += [
            f"Fixed policies, {report['episodes']} real episodes and "
            f"{report.get('dream_episodes', report['episodes'])} dreams each, {_seeds(report)} "
            f"(flag: |dream − real| > max({tol['relative']:.0%} of |real|, {tol['absolute']:g}))",
            "",
            suite_table(report["suite"], report["temperature"], report.get("dream_settings")),
            "",
        ]
        reused = report.get("real_reused")
        if reused:
            lines += [
                f"Real returns of {len(reused['specs'])} world-independent policies read from "
                f"{reused['from']} (same env, seeds, episodes and cap).",
                "",
            ]
    t = report.get("teacher")
    if t is not None:
        err, term = t["return_error"], t["terminations"]
        auc = "n/a (no termination)" if t["done_auc"] is None else f"{t['done_auc']:.3f}"
        check = _flag(t["return_check"])
        lines += [
            f"Teacher forcing along {t['episodes']} real episodes ({t['source']['kind']}, "
            f"{t['steps']} steps):",
            "",
            "| | real | M (teacher-forced) |",
            "|---|---|---|",
            f"| mean return | {t['real_return']['mean']:.1f} | "
            f"{t['predicted_return']['mean']:.1f} ({check}) |",
            f"| terminations | {term['real']} | {term['predicted']:.2f} ({_flag(term['check'])}) |",
            "",
            f"return error per episode: mean {err['mean']:+.1f}, mean |error| "
            f"{err['mean_abs']:.1f} ({err['mean_abs_relative']:.0%}); reward MSE per step "
            f"{t['reward_mse_per_step']:.4f}; per-step done AUC {auc}",
        ]
    return "\n".join(lines)
