"""One episode of the real env under a frame policy: the unit of work of a collection.

Episode `i` of a collection with base seed `S` resets the env with `seed=S + i` and seeds its
policy from `(S, i)`, so every episode is reproducible on its own, whatever process computes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from dreamgym.data.exploration import make_exploration_policy
from dreamgym.envs.real import make_real_env
from dreamgym.preprocessing import FramePreprocessing

PARENT_CHECK_EVERY = 50
"""Workers check every this many steps that the collecting process is alive, and stop if not."""


@runtime_checkable
class FramePolicy(Protocol):
    """What `collect` needs from a policy: the hook a trained controller plugs into.

    `reset(seed)` starts an episode (seed derived from the collection seed and the episode index);
    `act(frame)` maps the episode's current 64×64×3 uint8 frame (preprocessed exactly as stored)
    to an action of the env's action space. A policy that needs M's hidden state keeps it itself:
    it saw every frame and chose every action.
    """

    def reset(self, seed: int) -> None: ...

    def act(self, frame: np.ndarray) -> Any: ...


PolicyFactory = Callable[[str, gym.Space], FramePolicy]
"""`factory(env_id, action_space) -> FramePolicy`, called once in every worker (must pickle)."""


class ParentGone(Exception):
    """The collecting process died; a worker stops instead of writing on its own."""


@dataclass(frozen=True)
class RolloutSpec:
    """Everything a process needs to compute any episode of one collection (pickled to workers)."""

    env_id: str
    max_steps: int | None
    """Truncate episodes after this many steps (None: the env's own limit)."""
    policy: str | PolicyFactory
    """A str names a built-in exploration policy (`exploration.BUILTIN_POLICIES`); else a factory."""
    seed: int
    prep: FramePreprocessing

    def make_env(self) -> gym.Env:
        return make_real_env(self.env_id, max_episode_steps=self.max_steps)

    def make_policy(self, action_space: gym.Space) -> FramePolicy:
        if isinstance(self.policy, str):
            return make_exploration_policy(self.policy, self.env_id, action_space)
        made = self.policy(self.env_id, action_space)
        if not isinstance(made, FramePolicy):
            raise TypeError(
                f"policy {self.policy!r} gave {made!r}, which lacks reset(seed) and act(frame)"
            )
        return made


def policy_seed(seed: int, index: int) -> int:
    """The policy RNG seed of episode `index`: a hash of (collection seed, index)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0])


def as_action(a: Any, space: gym.Space) -> Any:
    """The policy's output as an action of `space`; a clear error if it is not one."""
    if isinstance(space, gym.spaces.Discrete):
        arr = np.asarray(a)
        if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"policy returned {a!r}; expected one integer action of {space}")
        return int(arr.reshape(()))
    arr = np.asarray(a, dtype=np.float32)
    if arr.shape != space.shape or not np.all(np.isfinite(arr)):
        raise ValueError(f"policy returned {a!r}; expected a finite action of shape {space.shape}")
    return np.clip(arr, space.low, space.high)


def run_episode(
    env: gym.Env,
    prep: FramePreprocessing,
    policy: FramePolicy,
    seed: int,
    index: int,
    alive: Callable[[], bool] | None = None,
) -> dict[str, np.ndarray]:
    """Roll out episode `index`; `env` enforces max_steps through its TimeLimit.

    With `alive`, stop (raise ParentGone) once it turns false, checked every PARENT_CHECK_EVERY
    steps.
    """
    space = env.action_space
    obs, _ = env.reset(seed=seed + index)
    policy.reset(policy_seed(seed, index))
    frames = [prep(obs)]
    actions: list[Any] = []
    rewards: list[float] = []
    terms: list[bool] = []
    truncs: list[bool] = []
    while True:
        a = as_action(policy.act(frames[-1]), space)
        obs, r, term, trunc, _ = env.step(a)
        frames.append(prep(obs))
        actions.append(a)
        rewards.append(float(r))
        terms.append(bool(term))
        truncs.append(bool(trunc))
        if term or trunc:
            break
        if alive is not None and len(actions) % PARENT_CHECK_EVERY == 0 and not alive():
            raise ParentGone
    discrete = isinstance(space, gym.spaces.Discrete)
    return {
        "frames": np.stack(frames).astype(np.uint8, copy=False),
        "actions": np.asarray(actions, dtype=np.int64 if discrete else np.float32).reshape(
            (len(actions),) if discrete else (len(actions), -1)
        ),
        "rewards": np.asarray(rewards, dtype=np.float32),
        "terminated": np.asarray(terms, dtype=bool),
        "truncated": np.asarray(truncs, dtype=bool),
        "seed": np.asarray(seed + index, dtype=np.int64),
    }
