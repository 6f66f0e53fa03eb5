"""Fitness of a whole CMA-ES population: P candidates × R rollouts as one batched dream.

A generation is ONE batch: the population × rollouts (64 × 16 = 1,024 envs for the paper's
settings, Ha & Schmidhuber 2018, appendix on evolution strategies) steps together in
`DreamVectorEnv`, through its torch-level `reset_tensors`/`step_tensors`, with each candidate's
parameters applied to its own rows by one batched matrix product (`PopulationController`).
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from dreamgym.envs.dream import DreamVectorEnv
from dreamgym.policies.linear import PopulationController, controller_obs_dim
from dreamgym.world import World

ALL_DONE_CHECK_EVERY_GPU = 32
"""On CUDA, `alive.any()` is a host sync: look only every this many steps (CPU: every step)."""


class PopulationEvaluator:
    """Dream returns of P candidates × R rollouts, stepped as one `DreamVectorEnv` of P·R envs.

    Each env's first episode is its sample: autoreset is off, and an `alive` mask stops counting
    reward after an env's first termination or truncation; the loop ends when every env is done.
    Candidates do not share random numbers (no common random numbers): each of the P·R envs
    draws its own reset and dream noise from the env's one generator, seeded per call.
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
    ) -> None:
        self.obs_dim = controller_obs_dim(world, obs_mode)
        max_steps = max_steps if max_steps is not None else world.max_episode_steps
        if max_steps is None:
            raise ValueError(
                f"world {world.name!r} has no max_episode_steps; pass max_steps (--max-steps) so "
                "that dream rollouts end"
            )
        self.popsize, self.rollouts, self.max_steps = int(popsize), int(rollouts), int(max_steps)
        self.env = DreamVectorEnv(
            world,
            num_envs=self.popsize * self.rollouts,
            obs_mode=obs_mode,
            temperature=temperature,
            device=device,
            max_episode_steps=self.max_steps,
            autoreset_mode=AutoresetMode.DISABLED,
            termination=termination,
        )
        self.action_space = self.env.single_action_space
        self.device = self.env.device
        self.check_every = 1 if self.device.type == "cpu" else ALL_DONE_CHECK_EVERY_GPU

    @property
    def temperature(self) -> float:
        return self.env.temperature

    @torch.inference_mode()
    def __call__(self, params: np.ndarray | torch.Tensor, seed: int) -> np.ndarray:
        """params (P, n_params) → returns (P, R) float64, one dream episode per (p, r)."""
        pop = PopulationController(self.obs_dim, self.action_space, params, self.device)
        if pop.popsize != self.popsize:
            raise ValueError(f"expected {self.popsize} candidates, got {pop.popsize}")
        env, P, R = self.env, self.popsize, self.rollouts
        n = P * R
        obs = env.reset_tensors(seed=seed)
        total = torch.zeros(n, dtype=torch.float64, device=self.device)
        alive = torch.ones(n, dtype=torch.bool, device=self.device)
        act_shape = (n, *self.action_space.shape)
        for t in range(self.max_steps):
            actions = pop.act(obs.view(P, R, -1)).reshape(act_shape)
            step = env.step_tensors(actions, validate=False)
            total += torch.where(alive, step.reward, 0.0)
            alive &= ~step.done
            obs = step.obs
            if (t + 1) % self.check_every == 0 and not bool(alive.any()):
                break
        return total.view(P, R).cpu().numpy()
