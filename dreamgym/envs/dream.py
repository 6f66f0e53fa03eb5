"""The dream: one batched torch core that steps many copies of a learned world at once.

`DreamVectorEnv` is the only stepping code in dreamgym. `DreamEnv` (`dreamgym.envs.single`,
importable from here too) is the same core with one env, the SB3 adapter (`dreamgym.sb3.DreamVecEnv`) is a view of it with same-step resets, and in-process
trainers (CMA-ES) call its torch-level `reset_tensors` / `step_tensors` directly, so tensors stay
on the device and numpy appears only at the Gymnasium boundary.

One dream step, for every env in the batch (Ha & Schmidhuber 2018, §2.2 and §4.5):

1. M's LSTM reads [z_t, a_t] and moves (h, c) forward;
2. z_{t+1} is sampled from M's mixture at temperature τ;
3. the reward is M's reward head; termination is decided from M's done head (see below);
4. the episode is truncated at `max_episode_steps`.

Steps 1–3 are `dreamgym.models.mdn_kernel.DreamKernel`: two matmuls on one row per env,
[z | h | 1 | a], and elementwise ops, with all of a step's noise drawn as one block of uniforms.
`precision` says what the matmuls run in (bfloat16 only where the hardware has it, by default);
the state and the sampling are float32 always. Same seed → same dream, within one precision.
An RSSM world's step is `dreamgym.models.rssm_kernel.RSSMKernel` (the prior's step on rows
[z | h | s], float32), chosen by `dreamgym.envs.kernels.dream_kernel`; the rest is the same.

Termination: `termination="sample"` (default) draws done ~ Bernoulli(p) with p the done
probability, the done head's training weight undone so that p is the model's estimate of the real
rate; `termination="threshold"` ends the episode when p > `done_threshold` (deterministic given the
state, as in the paper's Doom code).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from dreamgym.envs.device import DEVICE_TYPES, dream_precision, resolve_device
from dreamgym.envs.ensemble import EnsembleMembers
from dreamgym.envs.kernels import dream_kernel
from dreamgym.envs.observation import check_noise_groups, observation_space_for
from dreamgym.envs.settings import OBS_MODES, TERMINATION_MODES, DreamSettings, check_temperature
from dreamgym.models.mdn_kernel import split_rows
from dreamgym.models.noise import draw_uniforms, gaussian_width, normal_from_uniform
from dreamgym.spaces import check_actions, encode_actions_tensor
from dreamgym.utils.threads import torch_threads
from dreamgym.utils.validate import check_int, check_seed
from dreamgym.world import World

__all__ = [
    "DEVICE_TYPES",
    "OBS_MODES",
    "RENDER_FPS",
    "TERMINATION_MODES",
    "DreamSettings",
    "DreamStep",
    "DreamVectorEnv",
    "dream_precision",
    "observation_space_for",
    "resolve_device",
]

RENDER_FPS = 50
"""Frames per second a rendered dream is meant to be shown at."""


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
    A learned world model (V: ConvVAE, M: an MDN-RNN as in Ha & Schmidhuber 2018, or an RSSM)
    run as a vector env. No pixels unless asked for: the state is z and M's state.

    ## Action Space
    The real env's: `Box` actions (clipped to the bounds) or `Discrete` (integer indices).
    Wrong shapes or dtypes, NaN/inf and out-of-range indices raise a `ValueError`.

    ## Observation Space
    `obs_mode="zh"`: float32 [z, h] (the paper's controller input; an RSSM's h is [h, s]);
    `"z"`: float32 z; `"pixels"`: V's decoding of z, uint8 64×64×3; `"zch"`: float32 [z, c, h]
    (an MDN-RNN's LSTM cell too, the paper's Doom controller input).

    ## Rewards
    M's reward head, one prediction per step.

    ## Episode End
    Termination from M's done head (`termination`: "sample" or "threshold", see the module
    docstring); truncation at `max_episode_steps` (the world's limit unless given).
    Autoreset per `autoreset_mode` (NEXT_STEP by default, SAME_STEP with `infos["final_obs"]`,
    or DISABLED with `reset(options={"reset_mask": mask})`).

    ## Arguments
    `world` (bundle directory, bundled name or `World`), `num_envs`, `render_mode`
    ("rgb_array"), `autoreset_mode`, and the dream's settings (`DreamSettings`), given either as
    `settings=` or as the keywords `obs_mode`, `temperature` (τ; default: the world's), `device`
    ("auto" | "cpu" | "cuda"), `max_episode_steps`, `termination`, `done_threshold`,
    `precision` (M's matmuls: "auto" | "float32" | "bfloat16"; auto = bfloat16 only where the
    hardware has it; the resolved choice is `self.precision`).
    `noise_groups` R (optional, a divisor of `num_envs`): envs i ≡ j (mod R) draw the same random
    numbers at every reset and step (common random numbers, `dreamgym.models.noise`; the CMA-ES
    evaluator's P candidates × R rollouts layout).

    ## Version History
    * v0: initial version; since then: termination modes, calibration, noise groups, and
      `precision` with the inverse-CDF mixture draw (the same distribution as before, other
      random numbers: a seed dreams another dream than it did before that change).
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
        settings: DreamSettings | None = None,
        noise_groups: int | None = None,
        precision: str = "auto",
        ensemble: tuple[Any, ...] | list[Any] = (),
        uncertainty_penalty: float = 0.0,
        uncertainty_halt: float | None = None,
    ) -> None:
        check_int(num_envs, "num_envs", "DreamVectorEnv", minimum=1)
        self.noise_groups = check_noise_groups(noise_groups, int(num_envs))
        settings = DreamSettings.from_arguments(
            settings,
            obs_mode=obs_mode,
            temperature=temperature,
            device=device,
            max_episode_steps=max_episode_steps,
            termination=termination,
            done_threshold=done_threshold,
            precision=precision,
            ensemble=tuple(ensemble) if isinstance(ensemble, list) else ensemble,
            uncertainty_penalty=uncertainty_penalty,
            uncertainty_halt=uncertainty_halt,
        )
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode {render_mode!r} is not supported by the vector dream; "
                f"use one of {self.metadata['render_modes']}"
            )
        self.settings = settings
        self.device = resolve_device(settings.device)
        if isinstance(world, World):
            self.world = world if world.device == self.device else world.copy_to(self.device)
        else:
            self.world = World.load(world, device=self.device)
        self.num_envs = int(num_envs)
        self.obs_mode = settings.obs_mode
        resolved = settings.for_world(self.world)
        self.temperature = resolved.temperature
        self.max_episode_steps = resolved.max_episode_steps
        self.termination = settings.termination
        self.done_threshold = settings.done_threshold
        self.render_mode = render_mode
        self.autoreset_mode = (
            autoreset_mode
            if isinstance(autoreset_mode, AutoresetMode)
            else AutoresetMode(autoreset_mode)
        )
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}

        self.single_action_space = self.world.action_space
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.single_observation_space = observation_space_for(self.world, self.obs_mode)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._discrete = isinstance(self.single_action_space, gym.spaces.Discrete)
        if not self._discrete:
            self._low = torch.as_tensor(self.single_action_space.low, device=self.device)
            self._high = torch.as_tensor(self.single_action_space.high, device=self.device)

        self._init_state(settings)

    def _init_state(self, settings: DreamSettings) -> None:
        """The kernel (M's step at the resolved precision), the generator and the state rows."""
        self.kernel, self.precision = dream_kernel(self.world, settings, self.device)
        """What `settings.precision` means here: "float32" or "bfloat16" (M's matmuls; an RSSM
        world's dream runs float32)."""
        self._bank_sigma = torch.exp(0.5 * self.world.initial_logvar)
        self.ensemble = (
            EnsembleMembers(
                self.world,
                self.kernel,
                settings.ensemble,
                self.num_envs,
                self.device,
                settings.uncertainty_penalty,
                settings.uncertainty_halt,
            )
            if settings.ensemble
            else None
        )
        """An ensemble dream's other members (`DreamSettings.ensemble`); None: the world alone."""
        self.generator = torch.Generator(device=self.device)
        self._seeded = False
        n = self.num_envs
        # One row per env, [z | h | 1 | a] (see DreamKernel); a step makes new rows and never
        # writes into rows it has handed out as observations, so those views stay valid.
        self._x = self.kernel.new_rows(n, self.device)
        self._c = self.kernel.new_cell(n, self.device)
        self._t = torch.zeros(n, dtype=torch.long, device=self.device)
        self._needs_reset = torch.zeros(n, dtype=torch.bool, device=self.device)
        self._has_reset = False
        self.last_disagreement: torch.Tensor | None = None
        """The members' disagreement d of the last step (None without an ensemble)."""

    # --- torch level ------------------------------------------------------------------------
    @property
    def temperature(self) -> float:
        """Sampling temperature τ (a positive finite number; settable between steps)."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = check_temperature(value, "DreamVectorEnv")

    def _check_open(self) -> None:
        if self.closed:
            raise gym.error.ClosedEnvironmentError(
                "this dream env was closed; make a new one to reset or step it again"
            )

    @property
    def seeded(self) -> bool:
        """Whether the generator has been seeded (by `seed_generator` or a reset)."""
        return self._seeded

    def seed_generator(self, seed: int | None) -> None:
        """Reseed the env's torch.Generator (a fresh random seed when `seed` is None)."""
        check_seed(seed, "seed", "reset")
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> 1)
        self.generator.manual_seed(int(seed))
        if self.ensemble is not None:
            self.ensemble.seed(int(seed))
        self._seeded = True

    @property
    def _z(self) -> torch.Tensor:
        return self.kernel.z(self._x)

    @property
    def _h(self) -> torch.Tensor:
        return self.kernel.h(self._x)

    @torch.inference_mode()
    def reset_tensors(
        self, seed: int | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Reset all envs (or those in `mask`): z_0 from the world's latent bank, h_0 = c_0 = 0."""
        self._check_open()
        if seed is not None or not self._seeded:
            self.seed_generator(seed)
        if mask is None:
            mask = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._x = self._x.clone()  # the last observation may be a view of the old rows
        self._reset_where(mask)
        self._has_reset = True
        return self._observe()

    def _reset_where(self, mask: torch.Tensor) -> None:
        """z_0 = μ + σ·ε of a random bank latent, M's first state on it (`kernel.reset_rows`:
        the MDN-RNN's h = c = 0, the RSSM's posterior on z_0), t = 0 for the rows in `mask`.

        One block of uniforms for every env (the random stream does not depend on which envs
        reset): column 0 picks the bank entry, the rest give ε. The rows are written in place
        (much faster than masked ops over the whole batch when few envs reset); `_x` is never a
        block a caller holds (see `step_tensors` and `reset_tensors`).
        """
        bank = self.world.initial_mu
        latent = self.world.latent_dim
        u = draw_uniforms(
            self.num_envs,
            1 + gaussian_width(latent),
            self.generator,
            self.device,
            self.noise_groups,
        )
        rows = mask.nonzero().squeeze(1)
        u = u[rows]
        idx = (u[:, 0] * bank.shape[0]).long().clamp_(max=bank.shape[0] - 1)
        z0 = torch.addcmul(bank[idx], self._bank_sigma[idx], normal_from_uniform(u[:, 1:], latent))
        self.kernel.reset_rows(self._x, self._c, rows, z0)
        if self.ensemble is not None:
            self.ensemble.reset_where(rows, z0)
        self._t.index_fill_(0, rows, 0)
        self._needs_reset = self._needs_reset & ~mask

    def _observe(self) -> torch.Tensor:
        """The observation of the current rows: "zh" and "z" are views of them (never written
        again, see `step_tensors`), "zch" and "pixels" new tensors."""
        if self.obs_mode == "zh":
            return self.kernel.zh(self._x)
        if self.obs_mode == "zch":
            return torch.cat([self._z, self._c, self._h], dim=1)
        if self.obs_mode == "z":
            return self._z
        return self.world.vae.decode_uint8(self._z)

    def encode_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Validated raw actions → M's action input (Box clipped, Discrete one-hot)."""
        if self._discrete:
            return encode_actions_tensor(actions, self.single_action_space)
        return encode_actions_tensor(actions, self.single_action_space, self._low, self._high)

    def check_action_tensor(self, actions: torch.Tensor) -> None:
        """Raise a clear ValueError for a batch of actions that does not fit the action space."""
        check_actions(self.single_action_space, actions, self.num_envs)

    @torch.inference_mode()
    def step_tensors(self, actions: torch.Tensor, validate: bool = True) -> DreamStep:
        """One batched dream step, tensors in and out (no numpy). Honours autoreset_mode.

        The step's noise is one block of uniforms (`DreamKernel.noise`: mixture choices,
        Gaussians, the done draw), drawn for every env whether it resets or not. The new state
        goes into new rows; resets write into them before they are handed out.
        """
        self._check_open()
        if not self._has_reset:
            raise gym.error.ResetNeeded(
                "call reset() (or reset_tensors()) before stepping the dream"
            )
        actions = actions.to(self.device)
        if validate:
            self.check_action_tensor(actions)
        pending = self._needs_reset if self.autoreset_mode == AutoresetMode.NEXT_STEP else None
        parts = split_rows(self.num_envs, self.device)
        with torch_threads(1 if len(parts) > 1 else None):  # see split_rows
            return self._step(actions, pending, parts)

    def _step(
        self, actions: torch.Tensor, pending: torch.Tensor | None, parts: list[slice]
    ) -> DreamStep:
        """`step_tensors` after its checks: the kernel's step on `parts`, then the episode ends."""
        noise = self.kernel.noise
        u = draw_uniforms(
            self.num_envs, noise.width, self.generator, self.device, self.noise_groups
        )
        encoded = self.encode_actions(actions)
        spread = None
        if self.ensemble is None:
            self._x, reward, p_done = self.kernel.step(
                self._x, self._c, encoded, u, self.temperature, parts
            )
        else:
            self._x, reward, p_done, spread = self.ensemble.step(
                self._x, self._c, encoded, u, self.temperature, parts, self.noise_groups
            )
        self.last_disagreement = spread
        self._t.add_(1)
        if self.termination == "sample":
            terminated = u[:, noise.done] < p_done
        else:
            terminated = p_done > self.done_threshold
        halted = None if self.ensemble is None else self.ensemble.halted(spread)
        if halted is not None:
            terminated |= halted
        if self.max_episode_steps is not None:
            truncated = (self._t >= self.max_episode_steps) & ~terminated
        else:
            truncated = torch.zeros_like(terminated)

        final_obs = None
        if pending is not None and bool(pending.any()):
            # NEXT_STEP: envs that ended last step reset now; their action is ignored.
            self._reset_where(pending)
            reward = torch.where(pending, torch.zeros_like(reward), reward)
            if spread is not None:  # a reset is no prediction: nothing to disagree about
                spread = torch.where(pending, torch.zeros_like(spread), spread)
                self.last_disagreement = spread
            terminated = terminated & ~pending
            truncated = truncated & ~pending
        done = terminated | truncated
        obs = self._observe()
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            if bool(done.any()):
                final_obs = obs
                self._x = self._x.clone()  # final_obs is a view of the rows before the reset
                self._reset_where(done)
                obs = self._observe()
        elif self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._needs_reset = done
        return DreamStep(obs, reward, terminated, truncated, final_obs, done)

    # --- Gymnasium level ---------------------------------------------------------------------
    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every env (or `options["reset_mask"]`); an int seed reseeds the generator."""
        if isinstance(seed, (list, tuple)):
            # One generator drives the whole batch: the first seed seeds it.
            for i, s in enumerate(seed):
                check_seed(s, f"seed[{i}]", "reset")
            seed = next((s for s in seed if s is not None), None)
        mask = None
        if options and "reset_mask" in options:
            m = np.asarray(options["reset_mask"])
            if m.shape != (self.num_envs,) or m.dtype != np.bool_:
                raise ValueError(
                    f"options['reset_mask'] must be a bool array of shape ({self.num_envs},)"
                )
            mask = torch.as_tensor(m, device=self.device)
        obs = self.reset_tensors(seed=seed, mask=mask)
        return self.obs_to_numpy(obs), {}

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        result = self.step_tensors(self.actions_to_tensor(actions), validate=False)
        infos: dict[str, Any] = {}
        if result.final_obs is not None:
            done = result.done.cpu().numpy()
            final = self.obs_to_numpy(result.final_obs)
            final_obs = np.empty(self.num_envs, dtype=object)
            for i in np.flatnonzero(done):
                final_obs[i] = final[i]
            infos = {
                "final_obs": final_obs,
                "_final_obs": done,
                "final_info": {},
                "_final_info": done,
            }
        if self.last_disagreement is not None:
            infos["disagreement"] = self.last_disagreement.cpu().numpy()
            infos["_disagreement"] = np.ones(self.num_envs, dtype=bool)
        return (
            self.obs_to_numpy(result.obs),
            result.reward.cpu().numpy().astype(np.float32),
            result.terminated.cpu().numpy(),
            result.truncated.cpu().numpy(),
            infos,
        )

    def actions_to_tensor(self, actions: Any) -> torch.Tensor:
        """Validate a batch of actions (numpy, list or tensor) and move it to the device."""
        checked = check_actions(self.single_action_space, actions, self.num_envs)
        return torch.as_tensor(checked, device=self.device)

    def obs_to_numpy(self, obs: torch.Tensor) -> np.ndarray:
        """A batch of torch observations as the Gymnasium boundary hands them out."""
        arr = obs.cpu().numpy()
        if self.obs_mode == "pixels":
            return arr
        return np.ascontiguousarray(arr, dtype=np.float32)  # "zh": a view of the state rows

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


def __getattr__(name: str) -> Any:
    # DreamEnv lives in dreamgym.envs.single (a view over this core, which it imports); the
    # registered entry point "dreamgym.envs.dream:DreamEnv" and old imports still find it here.
    if name == "DreamEnv":
        from dreamgym.envs.single import DreamEnv

        return DreamEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
