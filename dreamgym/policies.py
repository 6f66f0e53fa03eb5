"""What a policy is to dreamgym: batched observations in, batched actions out.

The dream, the real env (through `wrappers.WorldModelObservation`) and the evaluation code all
talk to policies through this one small protocol, so a CMA-ES controller, an SB3 agent and the
random baseline are interchangeable. `load_policy` (evaluation.py) builds one from a spec string.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import gymnasium as gym
import numpy as np


@runtime_checkable
class Policy(Protocol):
    """A batched, stateless-between-calls policy over a world's observations."""

    obs_mode: str
    """The observation mode it was trained on ("zh", "z" or "pixels")."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """(N, *obs_shape) observations → (N, *action_shape) actions in the action space."""
        ...


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
