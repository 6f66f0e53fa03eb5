"""Policies acting on real frames: V encodes each frame, M tracks h (`wrappers.LatentTracker`).

`dreamgym collect --policy FILE --world W` collects real data with a trained policy, the paper's
iterative procedure (Ha & Schmidhuber 2018, §5: collect again with the current controller,
retrain M). `FramePolicyFactory` is the picklable factory `data.collect` hands to its workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Any

import gymnasium as gym
import numpy as np

from dreamgym.policies.agent_trust import Trust
from dreamgym.policies.base import Policy, start_episode
from dreamgym.policies.loading import _recorded_world, load_policy, worker_trust
from dreamgym.utils.threads import set_worker_threads
from dreamgym.world import World
from dreamgym.wrappers import LatentTracker


class FramePolicyFactory:
    """Collect real data with a trained policy: `dreamgym collect --policy FILE --world W`.

    A picklable `factory(env_id, action_space) -> FramePolicy` for `data.collect`. Each worker
    loads the world and the policy itself; the frame policy encodes every frame with V and
    tracks h with M (`wrappers.LatentTracker`), exactly as in the real-env evaluation. `world`
    defaults to the world the policy file records.
    """

    def __init__(
        self, spec: str, world: str | os.PathLike | None = None, trust: Trust = False
    ) -> None:
        self.spec = str(spec)
        self.world = str(world) if world is not None else _recorded_world(self.spec)
        self.name = f"{self.spec} (world {self.world})"
        # Fail now, in the parent, on any mismatch; workers load the content checked here.
        self.trust = worker_trust(load_policy(self.spec, self.world, trust=trust), trust)

    def __call__(self, env_id: str, action_space: gym.Space) -> _FramePolicy:
        if mp.parent_process() is not None:
            # A collection worker: one frame per step, so extra torch threads only spin-wait beside
            # the env. Measured with 2 workers on 2 cores: 16 steps/s per worker at torch's
            # default, ~200 at 1. In-process collection leaves the caller's setting alone.
            set_worker_threads(1)
        world = World.load(self.world)
        if world.env_id != env_id:
            raise ValueError(
                f"policy {self.spec!r} acts through world {self.world!r}, learned from "
                f"{world.env_id}, but the collection env is {env_id}; pass --world for {env_id}"
            )
        return _FramePolicy(load_policy(self.spec, world, trust=self.trust), world)


class _FramePolicy:
    """A `Policy` over [z, h] turned into a `data.FramePolicy` over preprocessed frames."""

    def __init__(self, policy: Policy, world: World) -> None:
        self.policy = policy
        self.tracker = LatentTracker(world)

    def reset(self, seed: int) -> None:
        self.tracker.reset(seed)
        start_episode(self.policy)
        if hasattr(self.policy, "rng"):
            self.policy.rng = np.random.default_rng(seed)

    def act(self, frame: np.ndarray) -> Any:
        self.tracker.see(frame)
        action = np.asarray(self.policy.act(self.tracker.observation(self.policy.obs_mode)[None]))[
            0
        ]
        self.tracker.advance(self.tracker.encode_action(action))
        return action
