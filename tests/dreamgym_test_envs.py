"""Tiny image envs for the worker, Ray and module-prefix tests (importable by workers by name).

Made with Gymnasium's `module:Env-vN` form, e.g. `gym.make("dreamgym_test_envs:TestImage-v0")`:
gym imports this module, which registers the ids below.

- `TestImage-v0`: 64×64×3 uint8 frames drawn from the reset seed, Discrete(3) actions, reward
  = action, `length` steps (default 12); `step_s` sleeps that long per step (a slow real env).
- `SlowImage-v0`: the same, 0.04 s per step (a 20-step episode lasts ~1 s), for killing workers
  mid-episode.
- `DriverOnly-v0`: the same, but it can only be made in the process whose pid is in
  $DREAMGYM_TEST_DRIVER_PID: a worker process or Ray node that "lacks the env's package".
"""

from __future__ import annotations

import os
import time
from typing import Any

import gymnasium as gym
import numpy as np

DRIVER_PID_VAR = "DREAMGYM_TEST_DRIVER_PID"
MISSING_MESSAGE = "DriverOnly-v0 needs the package fakesim: pip install fakesim"


class TestImageEnv(gym.Env):
    """A deterministic image env: frames from the reset seed, reward = action."""

    metadata = {"render_modes": []}

    def __init__(self, length: int = 12, step_s: float = 0.0, driver_only: bool = False) -> None:
        if driver_only and os.environ.get(DRIVER_PID_VAR) != str(os.getpid()):
            raise gym.error.DependencyNotInstalled(MISSING_MESSAGE)
        self.length, self.step_s = length, step_s
        self.observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self._t = 0
        self._frames = np.random.default_rng(0)

    def _frame(self) -> np.ndarray:
        return self._frames.integers(0, 256, (64, 64, 3), dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._frames = np.random.default_rng(seed)
        self._t = 0
        return self._frame(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self.step_s:
            time.sleep(self.step_s)
        self._t += 1
        return self._frame(), float(action), self._t >= self.length, False, {}


for _id, _kw in (
    ("TestImage-v0", {}),
    ("SlowImage-v0", {"length": 20, "step_s": 0.04}),
    ("DriverOnly-v0", {"driver_only": True}),
):
    if _id not in gym.envs.registry:
        gym.register(_id, entry_point=f"{__name__}:TestImageEnv", kwargs=_kw)
