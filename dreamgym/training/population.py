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
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from dreamgym.envs.dream import DreamVectorEnv
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
    (`DreamSettings`); `action_head` is the controllers' (`dreamgym.policies.linear`).
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
    ) -> None:
        self.obs_dim = controller_obs_dim(world, obs_mode)
        max_steps = max_steps if max_steps is not None else world.max_episode_steps
        if max_steps is None:
            raise ValueError(
                f"world {world.name!r} has no max_episode_steps; pass max_steps (--max-steps) so "
                "that dream rollouts end"
            )
        self.popsize, self.rollouts, self.max_steps = int(popsize), int(rollouts), int(max_steps)
        self.crn, self.action_head = bool(crn), action_head
        self.env = DreamVectorEnv(
            world,
            num_envs=self.popsize * self.rollouts,
            obs_mode=obs_mode,
            temperature=temperature,
            device=device,
            max_episode_steps=self.max_steps,
            autoreset_mode=AutoresetMode.DISABLED,
            termination=termination,
            done_threshold=done_threshold,
            noise_groups=self.rollouts if self.crn else None,
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
        pop = PopulationController(
            self.obs_dim, self.action_space, params, self.device, action_head=self.action_head
        )
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
