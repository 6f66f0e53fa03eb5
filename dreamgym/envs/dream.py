"""The dream: one batched torch core that steps many copies of a learned world at once.

`DreamVectorEnv` is the only stepping code in dreamgym. `DreamEnv` is the same core with one env,
the SB3 adapter (`dreamgym.sb3.DreamVecEnv`) is a view of it with same-step resets, and in-process
trainers (CMA-ES) call its torch-level `reset_tensors` / `step_tensors` directly, so tensors stay
on the device and numpy appears only at the Gymnasium boundary.

One dream step, for every env in the batch (Ha & Schmidhuber 2018, §2.2 and §4.5):

1. M's LSTM reads [z_t, a_t] and moves (h, c) forward;
2. z_{t+1} is sampled from M's mixture at temperature τ;
3. the reward is M's reward head; termination is decided from M's done head (see below);
4. the episode is truncated at `max_episode_steps`.

Termination: `termination="sample"` (default) draws done ~ Bernoulli(p) with p the done
probability, the done head's training weight undone so that p is the model's estimate of the real
rate; `termination="threshold"` ends the episode when p > `done_threshold` (deterministic given the
state, as in the paper's Doom code).
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from dreamgym.models.mdnrnn import sample_mdn
from dreamgym.spaces import encode_actions_tensor
from dreamgym.world import World

OBS_MODES = ("zh", "z", "pixels")
TERMINATION_MODES = ("sample", "threshold")
RENDER_FPS = 50


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" → CUDA when available, else CPU; "cuda" without CUDA is a clear error."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but this torch build sees no CUDA device; "
            'use device="cpu", or device="auto" to fall back to the CPU'
        )
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from e


def observation_space_for(world: World, obs_mode: str) -> gym.spaces.Box:
    """The single-env observation space of `world` in `obs_mode`."""
    if obs_mode == "zh":
        dim = world.latent_dim + world.hidden_dim
        return gym.spaces.Box(-np.inf, np.inf, shape=(dim,), dtype=np.float32)
    if obs_mode == "z":
        return gym.spaces.Box(-np.inf, np.inf, shape=(world.latent_dim,), dtype=np.float32)
    if obs_mode == "pixels":
        size = world.preprocessing.size
        return gym.spaces.Box(0, 255, shape=(size, size, 3), dtype=np.uint8)
    raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {obs_mode!r}")


class DreamStep(NamedTuple):
    """What `step_tensors` returns; all tensors on the env's device, leading dim num_envs."""

    obs: torch.Tensor
    reward: torch.Tensor  # float32
    terminated: torch.Tensor  # bool
    truncated: torch.Tensor  # bool
    final_obs: torch.Tensor | None  # SAME_STEP only: obs before the reset, valid where done
    done: torch.Tensor  # terminated | truncated


class DreamVectorEnv(VectorEnv):
    """Many dreams of one world, stepped as one batch.

    ## Description
    A learned world model (V: ConvVAE, M: MDN-RNN; Ha & Schmidhuber 2018) run as a vector env.
    There are no pixels unless asked for: the state is M's latent z and hidden (h, c).

    ## Action Space
    The real env's: `Box` actions (clipped to the bounds) or `Discrete` (integer indices).
    Wrong shapes or dtypes, NaN/inf and out-of-range indices raise a `ValueError`.

    ## Observation Space
    `obs_mode="zh"`: float32 [z, h] (the paper's controller input); `"z"`: float32 z;
    `"pixels"`: V's decoding of z, uint8 64×64×3.

    ## Rewards
    M's reward head, one prediction per step.

    ## Episode End
    Termination from M's done head (`termination`: "sample" or "threshold", see the module
    docstring); truncation at `max_episode_steps` (the world's limit unless given).
    Autoreset per `autoreset_mode` (NEXT_STEP by default, SAME_STEP with `infos["final_obs"]`,
    or DISABLED with `reset(options={"reset_mask": mask})`).

    ## Arguments
    `world` (bundle directory, bundled name or `World`), `num_envs`, `obs_mode`, `temperature`
    (τ; default: the world's), `device` ("auto" | "cpu" | "cuda"), `max_episode_steps`,
    `render_mode` ("rgb_array"), `autoreset_mode`, `termination`, `done_threshold`.

    ## Version History
    * v0: initial version.
    """

    metadata: dict[str, Any] = {
        "render_modes": ["rgb_array"],
        "render_fps": RENDER_FPS,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        world: str | os.PathLike | World,
        num_envs: int = 1,
        obs_mode: str = "zh",
        temperature: float | None = None,
        device: str | torch.device = "auto",
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
        termination: str = "sample",
        done_threshold: float = 0.5,
    ) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be ≥ 1, got {num_envs}")
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {obs_mode!r}")
        if termination not in TERMINATION_MODES:
            raise ValueError(f"termination must be one of {TERMINATION_MODES}, got {termination!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode {render_mode!r} is not supported by the vector dream; "
                f"use one of {self.metadata['render_modes']}"
            )
        self.device = resolve_device(device)
        if isinstance(world, World):
            self.world = world if world.device == self.device else world.copy_to(self.device)
        else:
            self.world = World.load(world, device=self.device)
        self.num_envs = int(num_envs)
        self.obs_mode = obs_mode
        self.temperature = float(self.world.temperature if temperature is None else temperature)
        if not self.temperature > 0 or not math.isfinite(self.temperature):
            raise ValueError(f"temperature must be a positive number, got {temperature}")
        self.max_episode_steps = (
            int(max_episode_steps) if max_episode_steps is not None else self.world.max_episode_steps
        )
        self.termination = termination
        self.done_threshold = float(done_threshold)
        self.render_mode = render_mode
        self.autoreset_mode = (
            autoreset_mode if isinstance(autoreset_mode, AutoresetMode) else AutoresetMode(autoreset_mode)
        )
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}

        self.single_action_space = self.world.action_space
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.single_observation_space = observation_space_for(self.world, obs_mode)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._discrete = isinstance(self.single_action_space, gym.spaces.Discrete)
        if not self._discrete:
            self._low = torch.as_tensor(self.single_action_space.low, device=self.device)
            self._high = torch.as_tensor(self.single_action_space.high, device=self.device)

        self.generator = torch.Generator(device=self.device)
        self._seeded = False
        n, z, h = self.num_envs, self.world.latent_dim, self.world.hidden_dim
        self._z = torch.zeros(n, z, device=self.device)
        self._h = torch.zeros(n, h, device=self.device)
        self._c = torch.zeros(n, h, device=self.device)
        self._t = torch.zeros(n, dtype=torch.long, device=self.device)
        self._needs_reset = torch.zeros(n, dtype=torch.bool, device=self.device)
        self._has_reset = False

    # --- torch level ------------------------------------------------------------------------
    def seed_generator(self, seed: int | None) -> None:
        """Reseed the env's torch.Generator (a fresh random seed when `seed` is None)."""
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> 1)
        self.generator.manual_seed(int(seed))
        self._seeded = True

    @torch.inference_mode()
    def reset_tensors(self, seed: int | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Reset all envs (or those in `mask`): z_0 from the world's latent bank, h_0 = c_0 = 0."""
        if seed is not None or not self._seeded:
            self.seed_generator(seed)
        if mask is None:
            mask = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._reset_where(mask)
        self._has_reset = True
        return self._observe()

    def _reset_where(self, mask: torch.Tensor) -> None:
        bank_mu, bank_logvar = self.world.initial_mu, self.world.initial_logvar
        idx = torch.randint(
            bank_mu.shape[0], (self.num_envs,), generator=self.generator, device=self.device
        )
        eps = torch.randn(self._z.shape, generator=self.generator, device=self.device)
        # Draws are made for every env (the random stream does not depend on which envs reset);
        # the state is written in place, row by row (much faster than masked ops over the whole
        # batch when few envs reset): z, h, c and t are the core's own tensors and never handed
        # out (observations are copies).
        rows = mask.nonzero().squeeze(1)
        idx = idx[rows]
        z0 = bank_mu[idx] + torch.exp(0.5 * bank_logvar[idx]) * eps[rows]
        self._z.index_copy_(0, rows, z0)
        self._h.index_fill_(0, rows, 0.0)
        self._c.index_fill_(0, rows, 0.0)
        self._t.index_fill_(0, rows, 0)
        self._needs_reset = self._needs_reset & ~mask

    def _observe(self) -> torch.Tensor:
        if self.obs_mode == "zh":
            return torch.cat([self._z, self._h], dim=1)
        if self.obs_mode == "z":
            return self._z.clone()
        return self.world.vae.decode_uint8(self._z)

    def encode_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Validated raw actions → M's action input (Box clipped, Discrete one-hot)."""
        if self._discrete:
            return encode_actions_tensor(actions, self.single_action_space)
        return encode_actions_tensor(actions, self.single_action_space, self._low, self._high)

    def check_action_tensor(self, actions: torch.Tensor) -> None:
        """Raise a clear ValueError for a batch of actions that does not fit the action space."""
        n = self.num_envs
        if self._discrete:
            if actions.shape != (n,) or actions.dtype.is_floating_point or actions.dtype == torch.bool:
                raise ValueError(
                    f"expected {n} integer Discrete actions of shape ({n},), got dtype "
                    f"{actions.dtype} and shape {tuple(actions.shape)}"
                )
            space = self.single_action_space
            lo, hi = int(space.start), int(space.start) + int(space.n)
            if bool(((actions < lo) | (actions >= hi)).any()):
                bad = actions[(actions < lo) | (actions >= hi)][:5].tolist()
                raise ValueError(f"Discrete actions must lie in [{lo}, {hi}), got {bad}")
        else:
            shape = (n, *self.single_action_space.shape)
            if tuple(actions.shape) != shape or not actions.dtype.is_floating_point:
                raise ValueError(
                    f"expected float actions of shape {shape}, got dtype {actions.dtype} and "
                    f"shape {tuple(actions.shape)}"
                )
            if not bool(torch.isfinite(actions).all()):
                raise ValueError("actions contain NaN or inf; check the policy's output")

    @torch.inference_mode()
    def step_tensors(self, actions: torch.Tensor, validate: bool = True) -> DreamStep:
        """One batched dream step, tensors in and out (no numpy). Honours autoreset_mode."""
        if not self._has_reset:
            raise gym.error.ResetNeeded("call reset() (or reset_tensors()) before stepping the dream")
        actions = actions.to(self.device)
        if validate:
            self.check_action_tensor(actions)
        pending = self._needs_reset if self.autoreset_mode == AutoresetMode.NEXT_STEP else None

        out, (h, c) = self.world.mdnrnn.step(self._z, self.encode_actions(actions), (self._h, self._c))
        self._z = sample_mdn(out.logpi, out.mu, out.logsigma, self.temperature, self.generator)
        self._h, self._c = h, c
        self._t = self._t + 1
        p_done = self.world.mdnrnn.done_probability(out.done_logit)
        if self.termination == "sample":
            u = torch.rand(p_done.shape, generator=self.generator, device=self.device)
            terminated = u < p_done
        else:
            terminated = p_done > self.done_threshold
        if self.max_episode_steps is not None:
            truncated = (self._t >= self.max_episode_steps) & ~terminated
        else:
            truncated = torch.zeros_like(terminated)
        reward = out.reward.float()

        final_obs = None
        if pending is not None and bool(pending.any()):
            # NEXT_STEP: envs that ended last step reset now; their action is ignored.
            self._reset_where(pending)
            reward = torch.where(pending, torch.zeros_like(reward), reward)
            terminated = terminated & ~pending
            truncated = truncated & ~pending
        done = terminated | truncated
        obs = self._observe()
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            if bool(done.any()):
                final_obs = obs
                self._reset_where(done)
                obs = self._observe()
        elif self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._needs_reset = done.clone()
        return DreamStep(obs, reward, terminated, truncated, final_obs, done)

    # --- Gymnasium level ---------------------------------------------------------------------
    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every env (or `options["reset_mask"]`); an int seed reseeds the generator."""
        if isinstance(seed, (list, tuple)):
            # One generator drives the whole batch: the first seed seeds it.
            seed = next((s for s in seed if s is not None), None)
        mask = None
        if options and "reset_mask" in options:
            m = np.asarray(options["reset_mask"])
            if m.shape != (self.num_envs,) or m.dtype != np.bool_:
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},)")
            mask = torch.as_tensor(m, device=self.device)
        obs = self.reset_tensors(seed=seed, mask=mask)
        return self._to_numpy_obs(obs), {}

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        result = self.step_tensors(self._actions_to_tensor(actions), validate=False)
        infos: dict[str, Any] = {}
        if result.final_obs is not None:
            done = result.done.cpu().numpy()
            final = self._to_numpy_obs(result.final_obs)
            final_obs = np.empty(self.num_envs, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = final[i]
            infos = {
                "final_obs": final_obs,
                "_final_obs": done,
                "final_info": {},
                "_final_info": done,
            }
        return (
            self._to_numpy_obs(result.obs),
            result.reward.cpu().numpy().astype(np.float32),
            result.terminated.cpu().numpy(),
            result.truncated.cpu().numpy(),
            infos,
        )

    def _actions_to_tensor(self, actions: Any) -> torch.Tensor:
        """Validate numpy/list actions at the boundary and move them to the device."""
        n = self.num_envs
        if isinstance(actions, torch.Tensor):
            t = actions.to(self.device)
            self.check_action_tensor(t)
            return t
        arr = np.asarray(actions)
        if self._discrete:
            if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(
                    f"expected {n} integer Discrete actions of shape ({n},), got dtype "
                    f"{arr.dtype} and shape {arr.shape}"
                )
            t = torch.as_tensor(arr.astype(np.int64), device=self.device)
        else:
            shape = (n, *self.single_action_space.shape)
            if arr.shape != shape or not np.issubdtype(arr.dtype, np.floating):
                raise ValueError(
                    f"expected float actions of shape {shape} (num_envs × action size), got dtype "
                    f"{arr.dtype} and shape {arr.shape}"
                )
            t = torch.as_tensor(arr.astype(np.float32), device=self.device)
        self.check_action_tensor(t)
        return t

    def _to_numpy_obs(self, obs: torch.Tensor) -> np.ndarray:
        arr = obs.cpu().numpy()
        return arr if self.obs_mode == "pixels" else arr.astype(np.float32, copy=False)

    @torch.inference_mode()
    def render_tensors(self) -> torch.Tensor:
        """V's decoding of every env's current z: uint8 (num_envs, 64, 64, 3)."""
        return self.world.vae.decode_uint8(self._z)

    def render(self) -> tuple[np.ndarray, ...] | None:
        """rgb_array: a tuple with each env's decoded frame (uint8 64×64×3)."""
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; pass render_mode='rgb_array'")
            return None
        frames = self.render_tensors().cpu().numpy()
        return tuple(frames)

    def close_extras(self, **kwargs: Any) -> None:
        pass


class DreamEnv(gym.Env):
    """One dream: the batched core with `num_envs=1` (no second code path).

    Same arguments as `DreamVectorEnv` (without `num_envs`/`autoreset_mode`), plus
    `render_mode` "rgb_array" or "human" (a pygame window). See `DreamVectorEnv` for the
    action/observation spaces, rewards and episode end.
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
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.core = DreamVectorEnv(
            world,
            num_envs=1,
            obs_mode=obs_mode,
            temperature=temperature,
            device=device,
            max_episode_steps=max_episode_steps,
            autoreset_mode=AutoresetMode.DISABLED,
            termination=termination,
            done_threshold=done_threshold,
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
        if not value > 0:
            raise ValueError(f"temperature must be > 0, got {value}")
        self.core.temperature = float(value)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        # An explicit seed reseeds the core; otherwise the first reset takes one from np_random.
        if seed is None and not self.core._seeded:
            seed = int(self.np_random.integers(0, 2**62))
        obs = self.core.reset_tensors(seed=seed)
        if self.render_mode == "human":
            self.render()
        return self.core._to_numpy_obs(obs)[0], {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if isinstance(self.action_space, gym.spaces.Discrete):
            arr = np.asarray(action)
            if arr.shape not in ((), (1,)) or not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(
                    f"expected one integer action for {self.action_space}, got {action!r} "
                    f"(dtype {arr.dtype}, shape {arr.shape})"
                )
            batch = arr.reshape(1)
        else:
            arr = np.asarray(action)
            if arr.shape != self.action_space.shape or not np.issubdtype(arr.dtype, np.floating):
                raise ValueError(
                    f"expected a float action of shape {self.action_space.shape}, got dtype "
                    f"{arr.dtype} and shape {arr.shape}"
                )
            batch = arr[None]
        r = self.core.step_tensors(self.core._actions_to_tensor(batch), validate=False)
        if self.render_mode == "human":
            self.render()
        return (
            self.core._to_numpy_obs(r.obs)[0],
            float(r.reward[0]),
            bool(r.terminated[0]),
            bool(r.truncated[0]),
            {},
        )

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without render_mode; pass render_mode='rgb_array'")
            return None
        frame = self.core.render_tensors()[0].cpu().numpy()
        if self.render_mode == "rgb_array":
            return frame
        from dreamgym.rendering import show_frame

        self._window = show_frame(self._window, frame, caption=f"dreamgym: {self.world.name}")
        return None

    def close(self) -> None:
        if self._window is not None:
            from dreamgym.rendering import close_window

            close_window(self._window)
            self._window = None
