"""Returns of a policy in the dream: N episodes as ONE batched `DreamVectorEnv`."""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from dreamgym.envs.dream import DreamVectorEnv
from dreamgym.envs.settings import DreamSettings
from dreamgym.policies import Policy, load_policy
from dreamgym.policies.agent_trust import Trust
from dreamgym.policies.base import start_episode
from dreamgym.utils.validate import check_int, check_seed
from dreamgym.world import World


class DreamEpisodes(NamedTuple):
    """One batch of dream episodes: returns (float64) and lengths in steps (int64)."""

    returns: np.ndarray
    lengths: np.ndarray


def evaluate_dream(
    world: World | str | os.PathLike,
    policy: Policy | str,
    episodes: int,
    seed: int,
    temperature: float | None = None,
    max_steps: int | None = None,
    device: str | torch.device = "auto",
    termination: str = "sample",
    done_threshold: float = 0.5,
    *,
    precision: str = "auto",
    settings: DreamSettings | None = None,
    trust: Trust = False,
) -> np.ndarray:
    """Returns (float64, `episodes`) of the policy in the dream, all episodes in one batch.

    Every env's first episode is one sample (autoreset off; reward stops counting at an env's
    first termination or truncation). The same seed gives the same returns (on CPU).
    `termination` / `done_threshold`: how M's done head ends an episode (`DreamVectorEnv`).
    `precision`: M's matmuls (`DreamSettings.precision`).
    `trust`: for an SB3 agent spec, see `dreamgym.policies.load_policy`.
    The dream is set either by these keywords or by `settings` (e.g.
    `DreamOptions.dream_settings()`), whose `obs_mode` gives way to the policy's.

    >>> from dreamgym.envs.settings import DreamSettings
    >>> settings = DreamSettings(termination="threshold", done_threshold=0.9, device="cpu")
    >>> evaluate_dream("doom_takecover", "constant:0", 2, seed=0, settings=settings).shape
    (2,)
    """
    return dream_episodes(
        world,
        policy,
        episodes,
        seed,
        temperature,
        max_steps,
        device,
        termination,
        done_threshold,
        precision=precision,
        settings=settings,
        trust=trust,
    ).returns


def dream_episodes(
    world: World | str | os.PathLike,
    policy: Policy | str,
    episodes: int,
    seed: int,
    temperature: float | None = None,
    max_steps: int | None = None,
    device: str | torch.device = "auto",
    termination: str = "sample",
    done_threshold: float = 0.5,
    *,
    precision: str = "auto",
    settings: DreamSettings | None = None,
    trust: Trust = False,
) -> DreamEpisodes:
    """`evaluate_dream` with the episodes' lengths too (what `dreamgym calibrate` matches)."""
    check_int(episodes, "episodes", minimum=1)
    check_seed(seed, "seed", optional=False)
    settings = DreamSettings.from_arguments(
        settings,
        temperature=temperature,
        device=device,
        max_episode_steps=max_steps,
        termination=termination,
        done_threshold=done_threshold,
        precision=precision,
    )
    if isinstance(policy, str):
        policy = load_policy(policy, world, seed=seed, trust=trust)
    env = DreamVectorEnv(
        world,
        num_envs=int(episodes),
        autoreset_mode=AutoresetMode.DISABLED,
        settings=settings.replace(obs_mode=policy.obs_mode),
    )
    if env.max_episode_steps is None:
        raise ValueError(
            f"world {env.world.name!r} has no max_episode_steps; pass max_steps so that dream "
            "episodes end"
        )
    obs = env.reset_tensors(seed=seed)
    start_episode(policy)
    total = torch.zeros(env.num_envs, dtype=torch.float64, device=env.device)
    length = torch.zeros(env.num_envs, dtype=torch.int64, device=env.device)
    alive = torch.ones(env.num_envs, dtype=torch.bool, device=env.device)
    for _ in range(env.max_episode_steps):
        actions = np.asarray(policy.act(obs.cpu().numpy()))
        step = env.step_tensors(torch.as_tensor(actions, device=env.device))
        total += torch.where(alive, step.reward, 0.0)
        length += alive.long()
        alive &= ~step.done
        if not bool(alive.any()):
            break
        obs = step.obs
    return DreamEpisodes(total.cpu().numpy(), length.cpu().numpy())
