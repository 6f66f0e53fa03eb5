"""The built-in exploration policy of `collect`: temporally correlated random actions.

World Models collects its first dataset under a random policy (Ha & Schmidhuber 2018, §3.1 and
§4.1). How that randomness is shaped decides what V and M ever see, so it is tuned per space
below. Manifests record it as RANDOM_POLICY ("random-correlated"); the name is part of the
dataset format (a resumed collection checks it), so it stays the same whatever the class is
called.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

RANDOM_POLICY = "random-correlated"
"""Name recorded in the manifest for the built-in exploration policy (see `ExplorationPolicy`)."""
COVERAGE_POLICY = "random-coverage"
"""Name recorded in the manifest for `CoveragePolicy` (`dreamgym collect --policy coverage`)."""
BUILTIN_POLICIES = {"random": RANDOM_POLICY, "coverage": COVERAGE_POLICY}
"""`--policy` names of the built-in exploration policies → the names manifests record."""

# The built-in random policy. Temporal correlation matters: i.i.d. uniform CarRacing actions cancel
# out (gas and brake together, steering jitter) and the car barely leaves the start, scoring -34.
# Correlated noise alone drives, but off the road: 3/4 of its frames are grass. Measured over
# 6-8 full episodes (return; share of frames with road under the car): i.i.d. -34 ± 4, 0.99 (it
# stands still on the road); OU noise, gas ≤ 0.2: -23 ± 43, 0.26; OU noise + road pull: +240 ± 95
# to +317 ± 158, 0.75-0.79. The policy below (per-episode pull and gas ceiling) scored +290 ± 107
# over the first 30 episodes of a 250-episode collection (seed 0), none leaving the playfield.
OU_THETA = 0.1
"""Ornstein-Uhlenbeck pull towards the middle of the box per step (correlation time ≈ 10 steps)."""
OU_SIGMA = 0.15
"""Ornstein-Uhlenbeck noise per step, in units of half the box width."""
CAR_GAS_MAX = (0.2, 0.5)
"""CarRacing: per episode a gas ceiling is drawn from this range; gas is held at U(0, ceiling)."""
CAR_GAS_CHANGE_P = 0.05
"""CarRacing: probability per step of drawing a new gas level (held ≈ 20 steps on average)."""
CAR_BRAKE_P = 0.01
"""CarRacing: probability per step of starting a brake pulse (gas released meanwhile)."""
CAR_BRAKE_STEPS = (3, 15)
"""CarRacing: a brake pulse lasts U{3..15} steps at a strength of U(0.2, 0.8)."""
CAR_ROAD_PULL = (0.5, 1.0)
"""CarRacing: per episode, the weight of the pull towards the road is drawn from this range."""
CAR_ROAD_GAIN = 2.0
"""CarRacing: steering pull per unit of road offset (offset 1 = road centre 16 px beside the car)."""
CAR_LOOKAHEAD_ROWS = (34, 48)
"""CarRacing: rows of the 64×64 frame ahead of the car (which sits at rows 51-57) to find road in."""
CAR_X = 31.5
"""CarRacing: the car's column in the 64×64 frame."""
CAR_STOP_P = 0.002
"""CarRacing coverage: probability per step of starting a stop (no gas, brake, then stand still)."""
CAR_STOP_STEPS = (30, 150)
"""CarRacing coverage: a stop lasts U{30..150} steps; the brake is held for its first 5-20."""
CAR_EXCURSION_P = 0.004
"""CarRacing coverage: probability per step of an excursion off the road (no road pull)."""
CAR_EXCURSION_STEPS = (15, 60)
"""CarRacing coverage: an excursion holds a steering of ±U(0.4, 1) for U{15..60} steps."""
CAR_RUSH_P = 0.004
"""CarRacing coverage: probability per step of a stretch of heavy gas U(0.6, 1)."""
CAR_RUSH_STEPS = (20, 80)
"""CarRacing coverage: a heavy-gas stretch lasts U{20..80} steps."""
DISCRETE_HOLD_MAX = 8
"""Discrete spaces: a uniformly drawn action is held for U{1..DISCRETE_HOLD_MAX} steps."""


class ExplorationPolicy:
    """Temporally correlated random actions ("random-correlated"), seeded per episode.

    - **CarRacing** (Box steer, gas, brake): steering is an Ornstein-Uhlenbeck process
      (θ = OU_THETA, σ = OU_SIGMA) plus a pull of random per-episode weight towards the grey road
      seen ahead of the car in the frame, so the car sweeps along the track, drifts off it and
      comes back, and V and M see road, curves and grass. Gas is held at a level drawn from
      U(0, ceiling), the ceiling drawn per episode from CAR_GAS_MAX, and redrawn with probability
      CAR_GAS_CHANGE_P per step; rare brake pulses (CAR_BRAKE_P per step) release the gas.
      Returns: i.i.d. uniform actions -34 ± 4 (the car barely moves), OU noise alone about -23
      (mostly on grass), this policy about +290 ± 107 (3/4 of its frames on the road).
    - **Other Box spaces**: an independent Ornstein-Uhlenbeck process per dimension in the box
      normalised to [-1, 1] (unbounded dimensions: unit scale), clipped to the box.
    - **Discrete**: a uniformly drawn action held for U{1..DISCRETE_HOLD_MAX} steps, so ViZDoom's
      agent actually moves left or right for a while instead of dithering in place.
    """

    name = RANDOM_POLICY

    def __init__(self, env_id: str, action_space: gym.Space) -> None:
        self.action_space = action_space
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.car = (
            not self.discrete
            and env_id.startswith("CarRacing")
            and tuple(action_space.shape) == (3,)
        )
        if not self.discrete:
            low = np.asarray(action_space.low, dtype=np.float64)
            high = np.asarray(action_space.high, dtype=np.float64)
            bounded = np.isfinite(low) & np.isfinite(high)
            self._mid = np.where(bounded, (low + high) / 2, 0.0)
            self._half = np.where(bounded, (high - low) / 2, 1.0)
            self._low, self._high = low, high
        self.reset(0)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self._hold = 0
        self._action: Any = None
        if self.discrete:
            return
        self._u = np.zeros(self.action_space.shape, dtype=np.float64)
        self._gas_max = self.rng.uniform(*CAR_GAS_MAX)
        self._gas = self.rng.uniform(0.0, self._gas_max)
        self._pull = self.rng.uniform(*CAR_ROAD_PULL)
        self._brake_left = 0
        self._brake = 0.0

    def act(self, frame: np.ndarray) -> Any:
        rng = self.rng
        if self.discrete:
            if self._hold <= 0:
                n, start = int(self.action_space.n), int(self.action_space.start)
                self._action = start + int(rng.integers(n))
                self._hold = int(rng.integers(1, DISCRETE_HOLD_MAX + 1))
            self._hold -= 1
            return self._action
        self._u += -OU_THETA * self._u + OU_SIGMA * rng.standard_normal(self._u.shape)
        np.clip(self._u, -1.0, 1.0, out=self._u)
        if not self.car:
            a = self._mid + self._half * self._u
            return np.clip(a, self._low, self._high).astype(np.float32)
        if rng.random() < CAR_GAS_CHANGE_P:
            self._gas = rng.uniform(0.0, self._gas_max)
        if self._brake_left > 0:
            self._brake_left -= 1
        elif rng.random() < CAR_BRAKE_P:
            self._brake_left = int(rng.integers(CAR_BRAKE_STEPS[0], CAR_BRAKE_STEPS[1] + 1))
            self._brake = rng.uniform(0.2, 0.8)
        braking = self._brake_left > 0
        steer = np.clip(self._u[0] + self._pull * _road_offset(frame), -1.0, 1.0)
        return np.array(
            [steer, 0.0 if braking else self._gas, self._brake if braking else 0.0],
            dtype=np.float32,
        )


def _road_offset(frame: np.ndarray) -> float:
    """CarRacing: where the grey road ahead lies relative to the car, in [-1, 1] (0: no road)."""
    ahead = np.asarray(frame[CAR_LOOKAHEAD_ROWS[0] : CAR_LOOKAHEAD_ROWS[1]], dtype=np.int16)
    r, g, b = ahead[..., 0], ahead[..., 1], ahead[..., 2]
    road = (np.abs(r - g) < 15) & (np.abs(g - b) < 15) & (r > 80) & (r < 140)
    if road.sum() <= 3:
        return 0.0
    offset = (np.nonzero(road)[1].mean() - CAR_X) / 16.0
    return float(np.clip(CAR_ROAD_GAIN * offset, -1.0, 1.0))


class CoveragePolicy(ExplorationPolicy):
    """`ExplorationPolicy` plus the states a controller reaches and random driving rarely does.

    A dream learned from random driving alone has never seen a car that stops, stands, leaves the
    road on purpose or drives fast, so it guesses there, and a controller finds the guesses (the
    bundled CarRacing dream pays a parked car +322; reality −93). On CarRacing this policy drives
    like `ExplorationPolicy` and, at random moments, switches for a while to one of:

    - **stop** (CAR_STOP_P per step, CAR_STOP_STEPS long): no gas, braking at first, then standing
      still, so M learns that a parked car earns −0.1 a step and sees no new tiles;
    - **excursion** (CAR_EXCURSION_P, CAR_EXCURSION_STEPS): the road pull is off and the steering
      held to one side, so the car leaves the road; the normal driving after it is the recovery;
    - **rush** (CAR_RUSH_P, CAR_RUSH_STEPS): gas U(0.6, 1), the speeds a greedy controller drives.

    Measured on 4 real episodes each (seeds 900-903; "still": frames unchanged over 5 steps): the
    random policy stands still on 1-2 % of its frames and scores 279 on average; with stops at
    0.004 per step of 40-200 steps this policy stood still on 5-43 % and scored 98, so stops were
    halved to the rates below. Other spaces: exactly `ExplorationPolicy`'s actions (only the
    recorded name differs).
    """

    name = COVERAGE_POLICY

    def reset(self, seed: int) -> None:
        super().reset(seed)
        self._mode = "drive"
        self._mode_left = 0
        self._brake_steps = 0
        self._mode_value = 0.0

    def act(self, frame: np.ndarray) -> Any:
        action = super().act(frame)
        if not self.car:
            return action
        self._next_mode()
        if self._mode == "stop":
            braking = self._brake_steps > 0
            self._brake_steps -= 1
            return np.array(
                [action[0] * 0.2, 0.0, self._mode_value if braking else 0.0], dtype=np.float32
            )
        if self._mode == "excursion":
            return np.array([self._mode_value, action[1], action[2]], dtype=np.float32)
        if self._mode == "rush":
            return np.array([action[0], self._mode_value, 0.0], dtype=np.float32)
        return action

    def _next_mode(self) -> None:
        """Count down the current stretch; in normal driving, maybe start a new one."""
        rng = self.rng
        if self._mode_left > 0:
            self._mode_left -= 1
            if self._mode_left > 0:
                return
            self._mode = "drive"
        u = rng.random()
        if u < CAR_STOP_P:
            self._mode, steps = "stop", CAR_STOP_STEPS
            self._brake_steps = int(rng.integers(5, 21))
            self._mode_value = float(rng.uniform(0.3, 1.0))
        elif u < CAR_STOP_P + CAR_EXCURSION_P:
            self._mode, steps = "excursion", CAR_EXCURSION_STEPS
            self._mode_value = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 1.0))
        elif u < CAR_STOP_P + CAR_EXCURSION_P + CAR_RUSH_P:
            self._mode, steps = "rush", CAR_RUSH_STEPS
            self._mode_value = float(rng.uniform(0.6, 1.0))
        else:
            return
        self._mode_left = int(rng.integers(steps[0], steps[1] + 1))


def recorded_policy_name(name: str) -> str | None:
    """The manifest name of the built-in policy `name` (its `--policy` name or its recorded name);
    None if `name` is not a built-in policy."""
    if name in BUILTIN_POLICIES:
        return BUILTIN_POLICIES[name]
    return name if name in BUILTIN_POLICIES.values() else None


def make_exploration_policy(name: str, env_id: str, action_space: gym.Space) -> ExplorationPolicy:
    """The built-in policy `name` ("random", "coverage" or the name a manifest records)."""
    recorded = recorded_policy_name(name)
    if recorded == COVERAGE_POLICY:
        return CoveragePolicy(env_id, action_space)
    if recorded == RANDOM_POLICY:
        return ExplorationPolicy(env_id, action_space)
    raise ValueError(
        f"unknown built-in policy {name!r}; pass one of {sorted(BUILTIN_POLICIES)} or a policy FILE"
    )
