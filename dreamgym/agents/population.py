"""Fitness of a whole CMA-ES population: P candidates × R rollouts as one batched dream.

A generation is ONE batch: the population × rollouts (64 × 16 = 1,024 envs for the paper's
settings, Ha & Schmidhuber 2018, appendix on evolution strategies) steps together in
`DreamVectorEnv`, through its torch-level `reset_tensors`/`step_tensors`, with each candidate's
parameters applied to its own rows by one batched matrix product (`PopulationController`).

Common random numbers (CRN, on by default): every candidate's r-th rollout meets the same dream:
the same initial latent, the same mixture noise and the same done draws at every step, so that
candidates are ranked by what their parameters do, not by the luck of their rollouts (the
generation's seed changes from one generation to the next). It is exact and cheap: the batch is
laid out as P candidates × R rollouts (row p·R + r) and the core draws each random tensor once
for R rows from its one generator and repeats it P times (`DreamVectorEnv(noise_groups=R)`,
`dreamgym.models.noise`); no per-row generators. Without CRN each of the P·R rows draws its own.
Rows still diverge wherever the candidates' actions do: CRN shares the noise, not the states.

Ensembles (`EnsembleEvaluator`, `dreamgym controller --ensemble`): a candidate can also be scored
in the dreams of other M's trained on the same V. The controller reads [z, h] of ITS world's M
(the one it ships with), so in another member's dream that M's LSTM runs beside the dream on the
dream's z and the actions, exactly as the transfer wrapper tracks h on real frames: each member
is an "other reality" for the controller. A controller that farms one M's private errors scores
badly in the others' dreams, which is what model ensembles are for (Kurutach et al. 2018,
ME-TRPO; Chua et al. 2018, PETS). Measured on the bundled worlds (their model cards, 2026-12-02):
other M's rank existing TakeCover controllers as reality does, but a search in a two- or
three-M ensemble still found their shared errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from dreamgym.envs.dream import DreamVectorEnv
from dreamgym.envs.members import check_ensemble_member
from dreamgym.envs.settings import DreamSettings
from dreamgym.models.memory import Memory, memory_of
from dreamgym.options import precision_setting
from dreamgym.policies.linear import DEFAULT_ACTION_HEAD, PopulationController, controller_obs_dim
from dreamgym.world import World

ALL_DONE_CHECK_EVERY_GPU = 32
"""On CUDA, `alive.any()` is a host sync: look only every this many steps (CPU: every step)."""


class PopulationEvaluator:
    """Dream returns of P candidates × R rollouts, stepped as one `DreamVectorEnv` of P·R envs.

    Each env's first episode is its sample: autoreset is off, and an `alive` mask stops counting
    reward after an env's first termination or truncation; the loop ends when every env is done.
    With `crn` (default) the candidates share their random numbers rollout by rollout (see the
    module docstring); without it each of the P·R envs draws its own reset and dream noise. The
    env's one generator is seeded per call. `termination` and `done_threshold` are the dream's
    (`DreamSettings`), and so is `precision` (M's matmuls); `action_head` is the controllers'
    (`dreamgym.policies.linear`).

    `dream_world` (default: `world`) makes the dream; the controller still reads `world`'s h,
    which `world`'s LSTM tracks on the dream's z and the actions (see the module docstring).
    """

    def __init__(
        self,
        world: World,
        popsize: int,
        rollouts: int,
        obs_mode: str = "zh",
        temperature: float | None = None,
        max_steps: int | None = None,
        device: str | torch.device = "auto",
        termination: str = "sample",
        done_threshold: float = 0.5,
        crn: bool = True,
        action_head: str = DEFAULT_ACTION_HEAD,
        dream_world: World | None = None,
        precision: str = "auto",
        ensemble: Sequence[Any] = (),
        uncertainty_penalty: float = 0.0,
        uncertainty_halt: float | None = None,
    ) -> None:
        self.obs_dim = controller_obs_dim(world, obs_mode)
        self.obs_mode = obs_mode
        foreign = dream_world is not None and dream_world is not world
        if foreign:
            check_ensemble_member(world, dream_world)
        max_steps = max_steps if max_steps is not None else world.max_episode_steps
        if max_steps is None:
            raise ValueError(
                f"world {world.name!r} has no max_episode_steps; pass max_steps (--max-steps) so "
                "that dream rollouts end"
            )
        self.popsize, self.rollouts, self.max_steps = int(popsize), int(rollouts), int(max_steps)
        self.crn, self.action_head = bool(crn), action_head
        settings = DreamSettings(
            obs_mode="z" if foreign else obs_mode,
            temperature=temperature,
            device=device,
            max_episode_steps=self.max_steps,
            termination=termination,
            done_threshold=done_threshold,
            **precision_setting(precision),
            ensemble=tuple(ensemble),
            uncertainty_penalty=uncertainty_penalty,
            uncertainty_halt=uncertainty_halt,
        )
        self.env = DreamVectorEnv(
            dream_world if foreign else world,
            num_envs=self.popsize * self.rollouts,
            autoreset_mode=AutoresetMode.DISABLED,
            noise_groups=self.rollouts if self.crn else None,
            settings=settings,
        )
        self.action_space = self.env.single_action_space
        self.device = self.env.device
        self.check_every = 1 if self.device.type == "cpu" else ALL_DONE_CHECK_EVERY_GPU
        self.tracker: Memory | None = (
            memory_of(world if world.device == self.device else world.copy_to(self.device))
            if foreign
            else None
        )
        """The controller's own memory, observing a member's dream as it would reality."""

    def _controller_obs(self, z: torch.Tensor, state: Any) -> torch.Tensor:
        """What the controller reads in a member's dream: the dream's z and the tracked h (c)."""
        assert self.tracker is not None
        if self.obs_mode == "zh":
            return torch.cat([z, self.tracker.features(state)], dim=1)
        if self.obs_mode == "zch":
            return torch.cat([z, state.c, self.tracker.features(state)], dim=1)
        return z

    @property
    def temperature(self) -> float:
        return self.env.temperature

    @torch.inference_mode()
    def __call__(self, params: np.ndarray | torch.Tensor, seed: int) -> np.ndarray:
        """params (P, n_params) → returns (P, R) float64, one dream episode per (p, r)."""
        pop = PopulationController(
            self.obs_dim, self.action_space, params, self.device, action_head=self.action_head
        )
        if pop.popsize != self.popsize:
            raise ValueError(f"expected {self.popsize} candidates, got {pop.popsize}")
        env, P, R = self.env, self.popsize, self.rollouts
        n = P * R
        obs = env.reset_tensors(seed=seed)
        tracker = self.tracker
        if tracker is not None:
            state = tracker.initial_state(n, device=self.device)
            first = torch.zeros(n, tracker.action_dim, device=self.device)
            state = tracker.observe(state, obs, first)
            obs = self._controller_obs(obs, state)
        total = torch.zeros(n, dtype=torch.float64, device=self.device)
        alive = torch.ones(n, dtype=torch.bool, device=self.device)
        act_shape = (n, *self.action_space.shape)
        for t in range(self.max_steps):
            actions = pop.act(obs.view(P, R, -1)).reshape(act_shape)
            step = env.step_tensors(actions, validate=False)
            total += torch.where(alive, step.reward, 0.0)
            alive &= ~step.done
            obs = step.obs
            if tracker is not None:
                state = tracker.observe(state, obs, env.encode_actions(actions))
                obs = self._controller_obs(obs, state)
            if (t + 1) % self.check_every == 0 and not bool(alive.any()):
                break
        return total.view(P, R).cpu().numpy()


class EnsembleEvaluator:
    """Dream returns of P candidates × R rollouts in each of K worlds: (P, K·R), world by world.

    The first world is the controller's own (its M gives the controller's h); the others are
    members trained on the same V (`check_ensemble_member`), stepped with the first world's LSTM
    tracking h beside them. Member k's dreams are seeded from (seed, k); member 0 uses `seed`
    itself, so an ensemble of one is exactly `PopulationEvaluator`. Every member runs at the same
    τ and step cap (the first world's unless given).
    """

    def __init__(
        self,
        world: World,
        members: Sequence[World],
        popsize: int,
        rollouts: int,
        temperature: float | None = None,
        **kwargs: object,
    ) -> None:
        first = PopulationEvaluator(world, popsize, rollouts, temperature=temperature, **kwargs)
        # an ensemble dream (members stepped together, `DreamSettings.ensemble`) is the world's
        # own dream; the other worlds here each dream alone
        kwargs = {**kwargs, "max_steps": first.max_steps}
        for key in ("ensemble", "uncertainty_penalty", "uncertainty_halt"):
            kwargs.pop(key, None)
        self.evaluators = [first] + [
            PopulationEvaluator(
                world, popsize, rollouts, temperature=first.temperature, dream_world=m, **kwargs
            )
            for m in members
        ]
        self.popsize, self.rollouts, self.max_steps = first.popsize, first.rollouts, first.max_steps
        self.obs_dim, self.device = first.obs_dim, first.device

    @property
    def temperature(self) -> float:
        return self.evaluators[0].temperature

    @property
    def size(self) -> int:
        """K, the number of dreams a candidate is scored in (1 + members)."""
        return len(self.evaluators)

    def __call__(self, params: np.ndarray | torch.Tensor, seed: int) -> np.ndarray:
        """params (P, n_params) → returns (P, K·R): world 0's R rollouts, then world 1's, ..."""
        return np.concatenate(
            [ev(params, seed=member_seed(seed, k)) for k, ev in enumerate(self.evaluators)],
            axis=1,
        )


def member_seed(seed: int, k: int) -> int:
    """The dream seed of ensemble member k in a call seeded `seed` (member 0: `seed` itself)."""
    if k == 0:
        return int(seed)
    ss = np.random.SeedSequence(int(seed), spawn_key=(int(k),))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)
