"""The exploitation alarm of `dreamgym controller` (`--alarm-every K`).

Every K generations the CMA-ES mean (what the run is converging to) is scored on
`alarm_episodes` dreams with one fixed seed for the whole run, twice: in the world's plain dream
(the dream score) and in the uncertainty-aware dream, the world stepped with `alarm_members`,
reward r − λ·d, halted where d > h (the predicted real score; `dreamgym.agents.alarm`). Both go
into the generation's history entry; the best mean by each is kept in the state file (resume)
and written as `controller_best_predicted.*` and `controller_best_dream.*`; `--keep
best-predicted` (the default with the alarm on) ships the first as `controller.*`.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dreamgym.agents.alarm import AlarmConfig, Check, ExploitationTracker, ExploitationWarning
from dreamgym.agents.population import PopulationEvaluator
from dreamgym.world import World

ALARM_SEED_KEY = 0x616C726D
"""Spawn key of the alarm's fixed dream seed (the mean's re-scoring uses its own)."""
BEST_PREDICTED = "controller_best_predicted"
"""OUT/controller_best_predicted.safetensors + .json: the best mean by predicted real score."""
BEST_DREAM = "controller_best_dream"
"""OUT/controller_best_dream.safetensors + .json: the best mean by the alarm's dream score."""
STATE_KEYS = {"predicted": "alarm_best_predicted_params", "dream": "alarm_best_dream_params"}
"""The state file's tensors of the two kept means."""


def alarm_seed(seed: int) -> int:
    """The dream seed of every alarm check: one fixed set of dreams for the run."""
    ss = np.random.SeedSequence(int(seed), spawn_key=(ALARM_SEED_KEY,))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


class ControllerAlarm:
    """Both dreams of the alarm (1 controller × `episodes` rows each), the tracker, the kept
    parameters. `common` are `PopulationEvaluator`'s dream keywords (τ, cap, device, ...)."""

    def __init__(self, config: Any, world: World, **common: Any) -> None:
        episodes = config.alarm_episodes
        plain = {k: v for k, v in common.items() if k not in ("ensemble",)}
        plain.update(ensemble=(), uncertainty_penalty=0.0, uncertainty_halt=None)
        self.dream = PopulationEvaluator(world, 1, episodes, **plain)
        aware = {**plain, **config.alarm_settings(), "max_steps": self.dream.max_steps}
        self.aware = PopulationEvaluator(world, 1, episodes, **aware)
        self.seed = alarm_seed(config.seed)
        self.tracker = ExploitationTracker(AlarmConfig(window=config.alarm_window))
        self.params: dict[str, np.ndarray | None] = {"predicted": None, "dream": None}

    def check(self, generation: int, mean: np.ndarray) -> dict[str, Any]:
        """Score the mean in both dreams; the history entry's "alarm" (warns on an alarm)."""
        t0 = time.perf_counter()
        params = np.asarray(mean, dtype=np.float64)[None]
        dream = self.dream(params, seed=self.seed)[0]
        predicted = self.aware(params, seed=self.seed)[0]
        check = Check.from_returns(generation, dream, predicted)
        verdict = self._record(check, params[0])
        if verdict.alarm is not None:
            warnings.warn(verdict.alarm.message("generation"), ExploitationWarning, stacklevel=4)
        return {
            **check.record(),
            "exploitation": verdict.alarm is not None,
            "seconds": time.perf_counter() - t0,
        }

    def _record(self, check: Check, params: np.ndarray) -> Any:
        verdict = self.tracker.record(check)
        if verdict.best_predicted:
            self.params["predicted"] = params.copy()
        if verdict.best_dream:
            self.params["dream"] = params.copy()
        return verdict

    def restore(self, history: list[dict[str, Any]], tensors: dict[str, np.ndarray]) -> None:
        """A resumed run's checks and kept means, from its history and state file."""
        for entry in history:
            if "alarm" in entry:
                a = entry["alarm"]
                self.tracker.record(
                    Check(
                        entry["generation"],
                        a["dream"],
                        a["predicted_real"],
                        a["dream_se"],
                        a["predicted_real_se"],
                    )
                )
        for which, key in STATE_KEYS.items():
            if key in tensors:
                self.params[which] = np.asarray(tensors[key], dtype=np.float64)

    def state_tensors(self) -> dict[str, np.ndarray | None]:
        """What the state file keeps of the alarm (the two best means)."""
        return {key: self.params[which] for which, key in STATE_KEYS.items()}

    def best(self, which: str) -> dict[str, Any]:
        """The best check by `which` ("predicted" or "dream") as a sidecar/summary record."""
        check = self.tracker.best_predicted if which == "predicted" else self.tracker.best_dream
        if check is None:
            return {"generation": -1, "dream": None, "predicted_real": None}
        return {"generation": check.step, "dream": check.dream, "predicted_real": check.predicted}

    def summary(self) -> dict[str, Any]:
        """history.json's record of the alarm's two best means."""
        return {"best_predicted": self.best("predicted"), "best_dream": self.best("dream")}

    def files(self, out: Path) -> dict[str, tuple[Path, np.ndarray | None]]:
        """Where each kept mean is written, and its parameters (None before the first check)."""
        return {
            "predicted": (out / f"{BEST_PREDICTED}.safetensors", self.params["predicted"]),
            "dream": (out / f"{BEST_DREAM}.safetensors", self.params["dream"]),
        }
