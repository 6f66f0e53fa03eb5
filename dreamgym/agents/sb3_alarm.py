"""The exploitation alarm as an SB3 callback: add it to any `model.learn(callback=...)`.

Every `check_every` env steps the agent (`model.predict(deterministic=True)`) plays `episodes`
dreams with one fixed seed, twice: in the world's plain dream (the dream score) and in the
uncertainty-aware dream, the world stepped with `members`, reward r − λ·d, halted where d > h
(the predicted real score; `dreamgym.agents.alarm`). Both go to SB3's logger (`alarm/dream`,
`alarm/predicted_real`, `alarm/exploitation`); an `ExploitationWarning` says when the first rises
while the second does not; the best agent by each is saved (`best_predicted.zip`,
`best_dream.zip`, with signed sidecars, so `dreamgym evaluate --policy` loads them).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.callbacks import BaseCallback

from dreamgym.agents.alarm import AlarmConfig, Check, ExploitationTracker, ExploitationWarning
from dreamgym.envs.dream import DreamVectorEnv
from dreamgym.envs.settings import DreamSettings
from dreamgym.options import ALARM_EPISODES, ALARM_PENALTY
from dreamgym.policies.sb3_agent import agent_paths, save_agent
from dreamgym.world import World

BEST_PREDICTED = "best_predicted"
"""The agent with the best predicted real score so far: `{name_prefix}best_predicted.zip`."""
BEST_DREAM = "best_dream"
"""The agent with the best dream score so far (the same checks): `{name_prefix}best_dream.zip`."""


class ExploitationAlarmCallback(BaseCallback):
    """Track the dream score beside the predicted real score while an SB3 agent trains.

    Args:
        world: the world the agent trains in (a `World`, a bundle directory or a bundled name).
        members: the ensemble (worlds on the world's V, e.g. M trained with another `--seed`).
        check_every: env steps between checks (all envs together).
        episodes: dreams per check in each of the two dreams (the same seeds at every check).
        penalty: λ of the uncertainty-aware dream (reward − λ·d).
        halt: end an uncertainty-aware dream where d > this (None: never).
        obs_mode: what the agent sees ("zh", "z", "zch", "pixels"), as it was trained.
        settings: the rest of the dream (τ, termination, cap, device); its ensemble is replaced.
        seed: the checks' dream seed.
        save_path: folder of the two best agents (None: do not save).
        name_prefix: prepended to their file names (`dreamgym sb3` uses "OUT.").
        alarm: when to raise the alarm (`AlarmConfig`; default: over 3 checks).
        sidecar: more keys for the saved agents' sidecars.

    >>> from dreamgym.sb3 import ExploitationAlarmCallback  # doctest: +SKIP
    >>> alarm = ExploitationAlarmCallback("carracing", ["m1", "m2"], 10_000, save_path="ckpt")  # doctest: +SKIP
    >>> model.learn(200_000, callback=alarm)  # doctest: +SKIP
    """

    def __init__(
        self,
        world: World | str | os.PathLike,
        members: Sequence[World | str | os.PathLike],
        check_every: int,
        *,
        episodes: int = ALARM_EPISODES,
        penalty: float = ALARM_PENALTY,
        halt: float | None = None,
        obs_mode: str = "zh",
        settings: DreamSettings | None = None,
        seed: int = 0,
        save_path: str | os.PathLike | None = None,
        name_prefix: str = "",
        alarm: AlarmConfig | None = None,
        sidecar: dict[str, Any] | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if int(check_every) < 1 or int(episodes) < 1:
            raise ValueError(
                f"need check_every ≥ 1 and episodes ≥ 1, got {check_every}, {episodes}"
            )
        if not members:
            raise ValueError(
                "the alarm needs ensemble members to predict the real score: pass worlds trained "
                "on this world's V (`dreamgym train --vae-epochs 0 --vae-from WORLD --seed N`)"
            )
        self.world = world if isinstance(world, World) else World.load(world)
        base = (settings or DreamSettings()).replace(obs_mode=obs_mode)
        self.settings = {
            "dream": base.replace(ensemble=(), uncertainty_penalty=0.0, uncertainty_halt=None),
            "predicted": base.replace(
                ensemble=tuple(members), uncertainty_penalty=penalty, uncertainty_halt=halt
            ),
        }
        self.obs_mode, self.episodes, self.seed = obs_mode, int(episodes), int(seed)
        self.check_every = int(check_every)
        self.save_path = None if save_path is None else Path(save_path)
        self.name_prefix, self.sidecar = name_prefix, dict(sidecar or {})
        self.tracker = ExploitationTracker(alarm or AlarmConfig())
        self.history: list[dict[str, Any]] = []
        """Every check: step, both scores (and their standard errors), and the alarm."""
        self._envs: dict[str, DreamVectorEnv] = {}
        self._next: int | None = None

    def path(self, which: str) -> Path | None:
        """The zip of the best agent by `which` ("predicted" or "dream"); None when not saving."""
        if self.save_path is None:
            return None
        name = BEST_PREDICTED if which == "predicted" else BEST_DREAM
        return agent_paths(self.save_path / f"{self.name_prefix}{name}")[0]

    def restore(self) -> None:
        """Carry on from saved best agents (a resumed run): only better checks replace them."""
        for which in ("predicted", "dream"):
            path = self.path(which)
            if path is None or not path.is_file():
                continue
            record = json.loads(agent_paths(path)[1].read_text()).get("alarm") or {}
            if "predicted_real" in record:
                check = Check(record["step"], record["dream"], record["predicted_real"])
                setattr(self.tracker, f"best_{which}", check)

    def _init_callback(self) -> None:
        for which, settings in self.settings.items():
            env = DreamVectorEnv(
                self.world,
                num_envs=self.episodes,
                autoreset_mode=AutoresetMode.DISABLED,
                settings=settings,
            )
            if env.max_episode_steps is None:
                raise ValueError(
                    f"world {self.world.name!r} has no max_episode_steps; give the alarm's "
                    "settings a max_episode_steps so that its dreams end"
                )
            self._envs[which] = env

    def _on_step(self) -> bool:
        steps = self.model.num_timesteps
        if self._next is None:
            self._next = (steps // self.check_every + 1) * self.check_every
        if steps >= self._next:
            self.check()
            while self._next <= steps:
                self._next += self.check_every
        return True

    @torch.inference_mode()
    def _returns(self, env: DreamVectorEnv) -> np.ndarray:
        """The agent's returns in one dream, every env's first episode (fixed seed)."""
        obs = env.reset_tensors(seed=self.seed)
        total = torch.zeros(env.num_envs, dtype=torch.float64, device=env.device)
        alive = torch.ones(env.num_envs, dtype=torch.bool, device=env.device)
        for _ in range(int(env.max_episode_steps or 0)):
            actions, _ = self.model.predict(obs.cpu().numpy(), deterministic=True)
            step = env.step_tensors(torch.as_tensor(actions, device=env.device))
            total += torch.where(alive, step.reward, 0.0)
            alive &= ~step.done
            if not bool(alive.any()):
                break
            obs = step.obs
        return total.cpu().numpy()

    def check(self) -> Check:
        """Score the agent in both dreams now: log, warn, save the new bests."""
        steps = int(self.model.num_timesteps)
        check = Check.from_returns(
            steps, self._returns(self._envs["dream"]), self._returns(self._envs["predicted"])
        )
        verdict = self.tracker.record(check)
        record = {"step": steps, **check.record(), "exploitation": verdict.alarm is not None}
        self.history.append(record)
        self.logger.record("alarm/dream", check.dream)
        self.logger.record("alarm/predicted_real", check.predicted)
        self.logger.record("alarm/exploitation", int(verdict.alarm is not None))
        if verdict.alarm is not None:
            warnings.warn(verdict.alarm.message("step"), ExploitationWarning, stacklevel=2)
        for which, best in (("predicted", verdict.best_predicted), ("dream", verdict.best_dream)):
            path = self.path(which)
            if best and path is not None:
                save_agent(
                    self.model, path, self.world, self.obs_mode, **self.sidecar, alarm=record
                )
        return check

    def summary(self) -> dict[str, Any]:
        """The best check by each score (what a shipped agent's sidecar records)."""
        return {
            f"best_{which}": (
                None
                if c is None
                else {"step": c.step, "dream": c.dream, "predicted_real": c.predicted}
            )
            for which, c in (
                ("predicted", self.tracker.best_predicted),
                ("dream", self.tracker.best_dream),
            )
        }
