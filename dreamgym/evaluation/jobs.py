"""`dreamgym evaluate`: its options, and returns of a policy in the dream or the real env."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dreamgym.evaluation.dream import evaluate_dream
from dreamgym.evaluation.real import evaluate_real
from dreamgym.evaluation.stats import summarize
from dreamgym.options import DreamAndRealOptions
from dreamgym.policies import POLICY_SPECS_HELP, Policy, load_policy
from dreamgym.utils.options import TRUST_AGENT_HELP, deprecated_aliases, option
from dreamgym.world import World

MODES = ("dream", "real")


@deprecated_aliases
@dataclass(kw_only=True)
class EvaluateConfig(DreamAndRealOptions):
    """Options of `dreamgym evaluate`: the dream's and the real runs', and these."""

    policy: str = field(metadata={"help": POLICY_SPECS_HELP})
    mode: str = option(
        "dream",
        "where to run the episodes (also --dream / --real)",
        choices=MODES,
        choice_flags=True,
    )
    json: bool = option(False, "print the result as JSON")
    progress: bool = option(True, "show a progress bar (real episodes)")
    trust_agent: bool = option(False, TRUST_AGENT_HELP)


def returns_in(
    mode: str,
    world: World,
    policy: Policy | str,
    options: DreamAndRealOptions,
    *,
    progress: bool,
    episodes: int | None = None,
    seed: int | None = None,
) -> np.ndarray:
    """Returns of `policy` (a spec, or a loaded policy in the dream) in the dream or in reality,
    with `options`' episodes and seed (or `episodes`, `seed`), cap, dream settings and real
    workers."""
    n = options.episodes if episodes is None else episodes
    seed = options.seed if seed is None else seed
    trust = getattr(options, "trust_agent", False)
    if mode == "dream":
        if isinstance(policy, str):
            policy = load_policy(policy, world, seed=seed, trust=trust)
        settings = options.dream_settings(obs_mode=policy.obs_mode)
        return evaluate_dream(world, policy, n, seed, settings=settings)
    return evaluate_real(
        world,
        policy,
        episodes=n,
        seed=seed,
        max_steps=options.max_steps,
        workers=options.workers,
        progress=progress,
        ray_address=options.ray,
        trust=trust,
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
        **(config.dream_record(world) if config.mode == "dream" else {}),
        **summarize(returns, config.seed),
    }
