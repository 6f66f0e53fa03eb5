"""One dream as a `gym.Env`: the batched core (`dreamgym.envs.dream.DreamVectorEnv`) with one env.

There is no second stepping code path: `DreamEnv` checks one action, hands it to the core as a
batch of one and unbatches what comes back; `render_mode="human"` shows V's decoding of z in a
pygame window (`dreamgym.rendering`). It is the `entry_point` of the `Dream*-v0` ids (registered
as `dreamgym.envs.dream:DreamEnv`, which resolves to this class).
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from dreamgym.envs.dream import RENDER_FPS, DreamVectorEnv
from dreamgym.envs.settings import DreamSettings
from dreamgym.rendering import close_window, show_frame
from dreamgym.spaces import check_actions
from dreamgym.world import World


class DreamEnv(gym.Env):
    """One dream: the batched core with `num_envs=1` (no second code path).

    Same arguments as `DreamVectorEnv` (without `num_envs`/`autoreset_mode`: the dream's
    `DreamSettings` as `settings=` or as keywords), plus `render_mode` "rgb_array" or "human"
    (a pygame window). See `DreamVectorEnv` for the action/observation spaces, rewards and
    episode end.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array", "human"], "render_fps": RENDER_FPS}

    def __init__(
        self,
        world: str | os.PathLike | World,
        obs_mode: str = "zh",
        temperature: float | None = None,
        device: str | torch.device = "auto",
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        termination: str = "sample",
        done_threshold: float = 0.5,
        settings: DreamSettings | None = None,
        precision: str = "auto",
        ensemble: tuple[Any, ...] | list[Any] = (),
        uncertainty_penalty: float = 0.0,
        uncertainty_halt: float | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        settings = DreamSettings.from_arguments(
            settings,
            obs_mode=obs_mode,
            temperature=temperature,
            device=device,
            max_episode_steps=max_episode_steps,
            termination=termination,
            done_threshold=done_threshold,
            precision=precision,
            ensemble=tuple(ensemble),
            uncertainty_penalty=uncertainty_penalty,
            uncertainty_halt=uncertainty_halt,
        )
        self.core = DreamVectorEnv(
            world, num_envs=1, autoreset_mode=AutoresetMode.DISABLED, settings=settings
        )
        self.world = self.core.world
        self.observation_space = self.core.single_observation_space
        self.action_space = self.core.single_action_space
        self.render_mode = render_mode
        self._window: Any = None

    @property
    def temperature(self) -> float:
        return self.core.temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self.core.temperature = value  # the core checks it (a positive finite number)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        # An explicit seed reseeds the core; otherwise the first reset takes one from np_random.
        if seed is None and not self.core.seeded:
            seed = int(self.np_random.integers(0, 2**62))
        obs = self.core.reset_tensors(seed=seed)
        if self.render_mode == "human":
            self.render()
        return self.core.obs_to_numpy(obs)[0], {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        batch = check_actions(self.action_space, action)
        r = self.core.step_tensors(torch.as_tensor(batch, device=self.core.device), validate=False)
        if self.render_mode == "human":
            self.render()
        return (
            self.core.obs_to_numpy(r.obs)[0],
            float(r.reward[0]),
            bool(r.terminated[0]),
            bool(r.truncated[0]),
            {}
            if self.core.last_disagreement is None
            else {"disagreement": float(self.core.last_disagreement[0])},
        )

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; pass render_mode='rgb_array'")
            return None
        frame = self.core.render_tensors()[0].cpu().numpy()
        if self.render_mode == "rgb_array":
            return frame
        self._window = show_frame(self._window, frame, caption=f"dreamgym: {self.world.name}")
        return None

    def close(self) -> None:
        """Close the window (if any) and the core: `reset`/`step` then raise."""
        if self._window is not None:
            close_window(self._window)
            self._window = None
        self.core.close()
