"""Fixed simple policies (constant and alternating actions), built from spec strings.

A world is faithful when such policies score in the dream what they score in reality
(`dreamgym diagnose`). They travel to real-env worker processes as spec strings, like every
policy (`load_policy`):

- `constant:A`: always action A. Discrete: an index (`constant:0`); Box: one number per
  dimension, comma-separated (`constant:0,1,0`).
- `alternate:A/B[/C...]@K`: A for K steps, then B for K steps, ..., then A again. Discrete
  actions may also be comma-separated (`alternate:1,2@10`); `@K` defaults to 10.

Phase of an alternating policy: a counter per batch row, restarted where the observation's h
part is all zeros, and for every row by `start_episode()`. In an MDN-RNN world h = 0 exactly on
an episode's first observation — in the dream (h_0 = 0) and in the real env through
`WorldModelObservation` (its tracker resets h) — and is non-zero after any LSTM step, so the
phase follows episode starts without the caller telling the policy anything, in the batched
dream (one row per env) and in real workers that reuse one policy object for many episodes (one
row). That is why these policies observe in "zh" mode (the only mode that shows h). An RSSM's
features are its posterior on the first frame, not zeros: there the callers that start
episodes (a real episode, a batch of dreams: `dreamgym.evaluation`) call `start_episode`. A
change of batch size restarts every row.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from dreamgym.world import World

FIXED_KINDS = ("constant", "alternate")
DEFAULT_ALTERNATE_EVERY = 10
FIXED_SPECS_HELP = (
    "constant:A (e.g. constant:0, constant:0,1,0) | alternate:A/B@K (alternate:1,2@10)"
)


def is_fixed_spec(spec: str) -> bool:
    """Whether `spec` names a fixed policy (`constant:...` or `alternate:...`)."""
    return isinstance(spec, str) and spec.split(":", 1)[0] in FIXED_KINDS and ":" in spec


class ConstantPolicy:
    """The same action for every observation."""

    obs_mode = "zh"

    def __init__(self, action: np.ndarray) -> None:
        self.action = np.asarray(action)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.repeat(self.action[None], len(obs), axis=0)


class AlternatingPolicy:
    """Cycles through `actions`, each held `every` steps; phase per row (see the module doc)."""

    obs_mode = "zh"

    def __init__(self, actions: np.ndarray, every: int, latent_dim: int) -> None:
        if int(every) < 1:
            raise ValueError(f"an alternating policy holds each action ≥ 1 step, got @{every}")
        self.actions = np.asarray(actions)
        self.every = int(every)
        self.latent_dim = int(latent_dim)
        self._t: np.ndarray | None = None

    def start_episode(self) -> None:
        """Every row starts a new episode: the phase restarts (see the module docstring)."""
        self._t = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        n = len(obs)
        if self._t is None or len(self._t) != n:
            self._t = np.zeros(n, dtype=np.int64)
        fresh = ~np.any(obs.reshape(n, -1)[:, self.latent_dim :] != 0, axis=1)
        self._t[fresh] = 0
        idx = (self._t // self.every) % len(self.actions)
        self._t += 1
        return self.actions[idx]


def fixed_policy(spec: str, world: World) -> ConstantPolicy | AlternatingPolicy:
    """The fixed policy a spec names, its actions checked against the world's action space."""
    kind, _, rest = spec.partition(":")
    space = world.action_space
    if kind == "constant":
        return ConstantPolicy(parse_action(rest, space, spec))
    body, _, every = rest.partition("@")
    try:
        k = int(every) if every else DEFAULT_ALTERNATE_EVERY
    except ValueError:
        raise ValueError(f"policy {spec!r}: @{every} is not a whole number of steps") from None
    if "/" in body:
        parts = body.split("/")
    elif isinstance(space, gym.spaces.Discrete):
        parts = body.split(",")
    else:
        raise ValueError(
            f"policy {spec!r}: separate the Box actions with '/', e.g. alternate:-1,1,0/1,1,0@10"
        )
    if len(parts) < 2:
        raise ValueError(f"policy {spec!r}: alternate between at least two actions")
    actions = np.stack([parse_action(p, space, spec) for p in parts])
    return AlternatingPolicy(actions, k, world.latent_dim)


def parse_action(text: str, space: gym.Space, spec: str) -> np.ndarray:
    """One action written as text ("1" or "0,1,0"), checked against `space`."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(
            f"policy {spec!r}: {text!r} is not an action of {space} ({FIXED_SPECS_HELP})"
        ) from None
    if isinstance(space, gym.spaces.Discrete):
        ok = len(values) == 1 and values[0].is_integer()
        action = np.asarray(int(values[0]) if ok else -1, dtype=np.int64)
        if not ok or not space.contains(action):
            raise ValueError(f"policy {spec!r}: {text!r} is not an action of {space}")
        return action
    if isinstance(space, gym.spaces.Box):
        action = np.asarray(values, dtype=space.dtype)
        if action.shape != space.shape or not space.contains(action):
            raise ValueError(
                f"policy {spec!r}: {text!r} is not an action of {space} (one number per "
                f"dimension, within [{space.low.tolist()}, {space.high.tolist()}])"
            )
        return action
    raise ValueError(f"policy {spec!r}: fixed policies support Discrete and Box, not {space}")
