"""What a policy is to dreamgym: batched observations in, batched actions out.

The dream, the real env (through `wrappers.WorldModelObservation`) and the evaluation code all
talk to policies through this one small protocol, so a CMA-ES controller, an SB3 agent and the
random baseline are interchangeable. `dreamgym.policies.load_policy` builds one from a spec string.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Policy(Protocol):
    """A batched, stateless-between-calls policy over a world's observations."""

    obs_mode: str
    """The observation mode it was trained on ("zh", "z" or "pixels")."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """(N, *obs_shape) observations → (N, *action_shape) actions in the action space."""
        ...


def start_episode(policy: Policy) -> None:
    """Tell a policy that every row starts a new episode, where it has `start_episode` (the
    alternating fixed policies: their phase); the others need not know."""
    start = getattr(policy, "start_episode", None)
    if callable(start):
        start()
