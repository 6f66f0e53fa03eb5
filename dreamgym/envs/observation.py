"""What a dream shows and how its batch is laid out: the observation space per `obs_mode`, and the
rows that share their noise (common random numbers)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from dreamgym.envs.settings import OBS_MODES
from dreamgym.utils.validate import check_int
from dreamgym.world import World


def observation_space_for(world: World, obs_mode: str) -> gym.spaces.Box:
    """The single-env observation space of `world` in `obs_mode`.

    "zh" is [z, the memory's features]: the MDN-RNN's h, the RSSM's [h, s]; "zch" (the LSTM's
    c too) exists for MDN-RNN worlds only.
    """
    if obs_mode == "zh":
        dim = world.latent_dim + world.feature_dim
        return gym.spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)
    if obs_mode == "z":
        return gym.spaces.Box(-np.inf, np.inf, shape=(world.latent_dim,), dtype=np.float32)
    if obs_mode == "zch":
        if world.memory_kind != "mdnrnn":
            raise ValueError(
                f"obs_mode 'zch' shows an LSTM's cell state; world {world.name!r} has a "
                f"{world.memory_kind} memory: use obs_mode 'zh' (z and its features [h, s])"
            )
        dim = world.latent_dim + 2 * world.hidden_dim
        return gym.spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)
    if obs_mode == "pixels":
        size = world.preprocessing.size
        return gym.spaces.Box(0, 255, shape=(size, size, 3), dtype=np.uint8)
    raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {obs_mode!r}")


def check_noise_groups(noise_groups: int | None, num_envs: int) -> int | None:
    """None (independent noise), or a group count R that divides num_envs (shared noise)."""
    if noise_groups is None:
        return None
    check_int(noise_groups, "noise_groups", "DreamVectorEnv", minimum=1)
    if num_envs % int(noise_groups):
        raise ValueError(
            f"noise_groups must divide num_envs ({num_envs}), got {noise_groups}; pass "
            "noise_groups=None for independent noise in every env"
        )
    return int(noise_groups)
