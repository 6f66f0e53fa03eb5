"""`dreamgym evaluate`: its options, and returns of a policy in the dream or the real env."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dreamgym.evaluation.dream import evaluate_dream
from dreamgym.evaluation.real import evaluate_real
from dreamgym.evaluation.stats import summarize
from dreamgym.policies import POLICY_SPECS_HELP, Policy, load_policy
from dreamgym.runners import LOCAL
from dreamgym.utils.hardware import PRECISION_HELP, PRECISIONS
from dreamgym.utils.options import option
from dreamgym.world import World

MODES = ("dream", "real")
RAY_FIELD = {
    "help": "run the real episodes as Ray tasks: --ray alone starts or joins a local Ray, "
    '--ray auto or --ray HOST:PORT joins a cluster (pip install "dreamgym[ray]")',
    "const": LOCAL,
    "metavar": "ADDRESS",
}
"""The `--ray [ADDRESS]` option of the jobs that run real episodes (evaluate, gap, diagnose)."""


@dataclass
class EvaluateConfig:
    """Options of `dreamgym evaluate`."""

    world: str = option(help="world: a bundled name or a bundle directory")
    policy: str = field(metadata={"help": POLICY_SPECS_HELP})
    mode: str = option(
        "dream",
        "where to run the episodes (also --dream / --real)",
        choices=MODES,
        choice_flags=True,
    )
    episodes: int = option(16, "episodes to run")
    seed: int = option(0, "seed (real: episode i uses seed + i)")
    json: bool = option(False, "print the result as JSON")
    temperature: float | None = option(None, "dream temperature τ (default: the world's)")
    max_steps: int | None = option(None, "episode cap (default: the world's / the env's limit)")
    workers: int | None = option(None, "real-env worker processes (default: CPU count)")
    ray: str | None = field(default=None, metadata=RAY_FIELD)
    device: str = option("auto", "device of the dream: auto, cpu or cuda")
    precision: str = option(
        "auto",
        PRECISION_HELP,
        choices=PRECISIONS,
    )
    progress: bool = option(True, "show a progress bar (real episodes)")


def returns_in(
    mode: str,
    world: World,
    policy: Policy | str,
    config: Any,
    progress: bool,
    episodes: int | None = None,
) -> np.ndarray:
    """Returns of `policy` (a spec, or a loaded policy in the dream) in the dream or in reality,
    with `config`'s episodes (or `episodes`), seed, caps and devices (an `EvaluateConfig` or a
    `GapConfig`)."""
    n = config.episodes if episodes is None else episodes
    common = {"episodes": n, "seed": config.seed, "max_steps": config.max_steps}
    if mode == "dream":
        if isinstance(policy, str):
            policy = load_policy(policy, world, seed=config.seed)
        return evaluate_dream(
            world,
            policy,
            temperature=config.temperature,
            device=config.device,
            precision=getattr(config, "precision", "auto"),
            **common,
        )
    return evaluate_real(
        world,
        policy,
        workers=config.workers,
        progress=progress,
        ray_address=getattr(config, "ray", None),
        **common,
    )


def evaluate_from_config(config: EvaluateConfig) -> dict[str, Any]:
    """Run `dreamgym evaluate`: the returns and their summary, as a dict (printed by the command)."""
    if config.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {config.mode!r}")
    if config.ray is not None and config.mode != "real":
        raise ValueError("--ray runs real episodes: use it with --real (the dream is one batch)")
    world = World.load(config.world)
    returns = returns_in(
        config.mode, world, config.policy, config, progress=config.progress and not config.json
    )
    return {
        "world": world.name,
        "policy": config.policy,
        "mode": config.mode,
        "episodes": config.episodes,
        "seed": config.seed,
        **summarize(returns, config.seed),
    }
