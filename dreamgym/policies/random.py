"""The random baseline every gap table reports: uniform actions, seeded explicitly."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class RandomPolicy:
    """Uniform random actions (the baseline every gap table reports); seeded explicitly."""

    def __init__(
        self, action_space: gym.Space, seed: int | None = None, obs_mode: str = "zh"
    ) -> None:
        self.action_space = action_space
        self.obs_mode = obs_mode
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        n = len(obs)
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            return self.rng.integers(space.start, space.start + space.n, size=n).astype(np.int64)
        low, high = np.asarray(space.low), np.asarray(space.high)
        return self.rng.uniform(low, high, size=(n, *space.shape)).astype(np.float32)
