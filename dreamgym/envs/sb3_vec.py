"""stable-baselines3's `VecEnv` as a view of the batched dream core (`DreamVecEnv`).

ONE `DreamVectorEnv(autoreset_mode=SAME_STEP)` behind SB3's API: no subprocesses and no per-env
stepping loop, so PPO with 16 or 1,024 dreams costs one batched torch step per vector step.
Public path: `dreamgym.sb3.DreamVecEnv`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from dreamgym.envs.dream import DreamVectorEnv
from dreamgym.envs.settings import DreamSettings
from dreamgym.world import World


class DreamVecEnv(VecEnv):
    """SB3's `VecEnv` over one batched dream core with same-step resets.

    ## Description
    `num_envs` dreams of one world (see `DreamVectorEnv`), stepped as one torch batch. SB3 wants a
    finished env reset in the same step, its last observation in
    `infos[i]["terminal_observation"]`, and `infos[i]["TimeLimit.truncated"]` (truncated and not
    terminated) for bootstrapping; the core's SAME_STEP autoreset gives exactly that.

    ## Spaces
    Per-env spaces, as SB3 expects: the world's action space and the dream's observation space
    for `obs_mode` (`observation_space_for`). Actions are validated at the boundary (shape,
    dtype, NaN, Discrete range) with a clear `ValueError`.

    ## Seeding
    One `torch.Generator` drives the batch, so `seed(s)` (SB3 stores `s + i` per env) seeds it with
    the first env's seed `s` at the next `reset()`; same seed → same trajectories on CPU.

    ## Shared attributes
    There is one core, so `get_attr`, `set_attr` and `env_method` act on it: `get_attr` returns its
    value once per requested index, `set_attr` applies to all envs (indices must cover them all),
    and `env_method` calls the core's method once and repeats the result per index.

    ## Arguments
    `world`, `num_envs` (`n_envs`: its deprecated old name), `obs_mode`, `temperature`, `device`, `max_episode_steps`, `render_mode`
    ("rgb_array": `get_images`/`render` decode each env's z with V), `termination`,
    `done_threshold` as in `DreamVectorEnv` (or all of them as one `settings=DreamSettings`);
    `seed` seeds the first reset.
    """

    def __init__(
        self,
        world: World | str | os.PathLike,
        num_envs: int = 16,
        obs_mode: str = "zh",
        temperature: float | None = None,
        device: str | torch.device = "auto",
        max_episode_steps: int | None = None,
        seed: int | None = None,
        render_mode: str | None = None,
        termination: str = "sample",
        done_threshold: float = 0.5,
        settings: DreamSettings | None = None,
        n_envs: int | None = None,
        precision: str = "auto",
        ensemble: tuple[Any, ...] | list[Any] = (),
        uncertainty_penalty: float = 0.0,
        uncertainty_halt: float | None = None,
    ) -> None:
        if n_envs is not None:
            warnings.warn(
                "DreamVecEnv: n_envs is deprecated, use num_envs", DeprecationWarning, stacklevel=2
            )
            num_envs = n_envs
        self.core = DreamVectorEnv(
            world,
            num_envs=num_envs,
            obs_mode=obs_mode,
            temperature=temperature,
            device=device,
            max_episode_steps=max_episode_steps,
            render_mode=render_mode,
            autoreset_mode=AutoresetMode.SAME_STEP,
            termination=termination,
            done_threshold=done_threshold,
            settings=settings,
            precision=precision,
            ensemble=ensemble,
            uncertainty_penalty=uncertainty_penalty,
            uncertainty_halt=uncertainty_halt,
        )
        self.world = self.core.world
        self.obs_mode = self.core.obs_mode
        super().__init__(
            self.core.num_envs, self.core.single_observation_space, self.core.single_action_space
        )
        self.metadata["autoreset_mode"] = AutoresetMode.SAME_STEP
        self._actions: torch.Tensor | None = None
        if seed is not None:
            self.seed(seed)

    @property
    def temperature(self) -> float:
        return self.core.temperature

    # --- stepping ---------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        """Reset every dream; a pending `seed()` reseeds the core's generator first."""
        if any(self._options):
            raise ValueError(
                f"the dream takes no reset options, got {self._options[0] or self._options}; "
                "call set_options(None)"
            )
        seed = next((s for s in self._seeds if s is not None), None)
        obs = self.core.reset_tensors(seed=seed)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._actions = None
        return self.core.obs_to_numpy(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = self.core.actions_to_tensor(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() without a pending step_async(actions)")
        result = self.core.step_tensors(self._actions, validate=False)
        self._actions = None
        obs = self.core.obs_to_numpy(result.obs)
        rewards = result.reward.cpu().numpy().astype(np.float32)
        dones = result.done.cpu().numpy()
        # The core's `truncated` already excludes terminated envs: SB3's "truncated and not terminated".
        truncated = result.truncated.cpu().numpy()
        infos: list[dict[str, Any]] = [{"TimeLimit.truncated": t} for t in truncated.tolist()]
        if self.core.last_disagreement is not None:  # an ensemble dream: d per env
            for info, d in zip(infos, self.core.last_disagreement.tolist(), strict=True):
                info["disagreement"] = d
        if result.final_obs is not None:
            final = self.core.obs_to_numpy(result.final_obs)
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = final[i]
        return obs, rewards, dones, infos

    def close(self) -> None:
        self.core.close()

    # --- rendering --------------------------------------------------------------------------
    def get_images(self) -> Sequence[np.ndarray | None]:
        if self.render_mode != "rgb_array":
            warnings.warn(
                f"get_images() needs render_mode='rgb_array', the render mode is {self.render_mode!r}",
                stacklevel=2,
            )
            return [None] * self.num_envs
        return list(self.core.render_tensors().cpu().numpy())

    # --- attributes of the one core ----------------------------------------------------------
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.core, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if sorted(set(self._get_indices(indices))) != list(range(self.num_envs)):
            raise ValueError(
                f"set_attr({attr_name!r}) on some envs only: the dreams share one batched core, "
                "so attributes apply to all of them; pass indices=None"
            )
        setattr(self.core, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        result = getattr(self.core, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
