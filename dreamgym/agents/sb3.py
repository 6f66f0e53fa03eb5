"""Training a stable-baselines3 agent inside a world (`dreamgym sb3`).

`train_agent(SB3Config)`: PPO / A2C / SAC with an MLP policy (CNN for pixels) in a
`DreamVecEnv`, a progress bar, periodic checkpoints (re-running the same command resumes), and
the agent's sidecar JSON (`dreamgym.policies.sb3_agent.save_agent`).

Training the agent entirely inside the learned model and deploying it in reality is the paper's
main experiment (Ha & Schmidhuber 2018, §4); here the controller is an SB3 agent instead of
CMA-ES (the policy-gradient variant they suggest in §6).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecMonitor
from tqdm.auto import tqdm

from dreamgym.agents.alarm import AlarmConfig
from dreamgym.agents.sb3_alarm import ExploitationAlarmCallback
from dreamgym.envs.dream import OBS_MODES, resolve_device
from dreamgym.envs.sb3_vec import DreamVecEnv
from dreamgym.options import AlarmOptions, DreamOptions, check_choice, check_int
from dreamgym.policies.agent_trust import UntrustedAgentError, check_agent_trust
from dreamgym.policies.sb3_agent import ALGOS, agent_paths, save_agent, world_sha256
from dreamgym.utils.options import deprecated_aliases, option
from dreamgym.world import World

PPO_ROLLOUT_STEPS = 2048
"""PPO collects about this many transitions per update, whatever n_envs (SB3's single-env default)."""
PPO_BATCH_SIZE = 256
SB3_KEEP_MODES = ("last", "best-predicted")
"""Which agent `dreamgym sb3` ships as OUT.zip: the last one, or the alarm's best-predicted."""


@deprecated_aliases
@dataclass(kw_only=True)
class SB3Config(AlarmOptions, DreamOptions):
    """Options of `dreamgym sb3`: the dream's, the exploitation alarm's, and these."""

    world: str = option(help="world bundle directory or bundled name (carracing, doom_takecover)")
    out: str = option(help="agent path: writes OUT.zip (SB3) and OUT.json (sidecar)")
    algo: str = option("ppo", "SB3 algorithm", choices=sorted(ALGOS))
    steps: int = option(100_000, "dream env steps to train for (all envs together)")
    num_envs: int = option(16, "dreams stepped together in one batch", aliases=("n_envs",))
    obs_mode: str = option("zh", "what the agent sees", choices=list(OBS_MODES))
    agent_device: str = field(
        default="auto",
        metadata={
            "help": "device of the agent's networks (auto: CPU for PPO/A2C MLPs, as SB3 advises)"
        },
    )
    policy: str = option("auto", "SB3 policy class (auto: CnnPolicy for pixels, else MlpPolicy)")
    seed: int = option(0, "seed of the dream, the agent and SB3's global RNGs")
    algo_kwargs: str = field(
        default="",
        metadata={
            "help": "JSON of extra SB3 algorithm arguments, e.g. '{\"learning_rate\": 1e-4}'"
        },
    )
    checkpoint_every: int = option(
        50_000, "env steps between checkpoints (OUT.partial.zip) that a re-run resumes"
    )
    progress: bool = option(True, "show a progress bar")
    verbose: int = option(0, "SB3 verbosity (0, 1 or 2)")
    force: bool = option(False, "overwrite an existing agent and ignore checkpoints")
    alarm_every: int = option(
        0,
        "every K env steps run the exploitation alarm: OUT.best_predicted.zip, "
        "OUT.best_dream.zip (0: off)",
    )
    keep: str | None = option(
        None,
        "agent shipped as OUT.zip: the last, or the alarm's best-predicted (default: "
        "best-predicted with --alarm-every, else last)",
        choices=SB3_KEEP_MODES,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.keep is None:
            self.keep = "best-predicted" if self.alarm_every else "last"
        check_choice("keep", self.keep, SB3_KEEP_MODES)
        if self.keep == "best-predicted" and not self.alarm_every:
            raise ValueError(
                "--keep best-predicted needs the exploitation alarm: set --alarm-every K (and "
                "--alarm-members or --members), or pass --keep last"
            )


def default_algo_kwargs(algo: str, n_envs: int, steps: int) -> dict[str, Any]:
    """Our defaults on top of SB3's: PPO's rollout ≈ PPO_ROLLOUT_STEPS whatever n_envs (larger
    minibatches: dream steps are cheap, gradient steps are not); SAC's replay buffer no larger
    than the run (SB3's 10^6 × [z, h] would take gigabytes)."""
    if algo == "ppo":
        n_steps = max(16, PPO_ROLLOUT_STEPS // n_envs)
        return {"n_steps": n_steps, "batch_size": min(PPO_BATCH_SIZE, n_steps * n_envs)}
    if algo == "sac":
        return {"buffer_size": int(min(1_000_000, max(steps, 10_000)))}
    return {}


def _parse_algo_kwargs(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"--algo-kwargs must be a JSON object, e.g. '{{\"learning_rate\": 1e-4}}' ({e})"
        ) from e
    if not isinstance(value, dict):
        raise ValueError(f"--algo-kwargs must be a JSON object, got {text!r}")
    return value


class ProgressCallback(BaseCallback):
    """A tqdm bar over env steps with the recent mean episode return (SB3's own needs `rich`)."""

    def __init__(self, total: int, initial: int = 0) -> None:
        super().__init__()
        self.total, self.initial = total, initial
        self.bar: Any = None

    def _on_training_start(self) -> None:
        self.bar = tqdm(
            total=self.total, initial=self.initial, unit="step", desc="sb3 in the dream"
        )

    def _on_step(self) -> bool:
        self.bar.update(max(0, min(self.training_env.num_envs, self.total - self.bar.n)))
        infos = self.model.ep_info_buffer
        if infos and self.n_calls % 50 == 0:
            self.bar.set_postfix(ep_return=f"{np.mean([e['r'] for e in infos]):.1f}", refresh=False)
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


class CheckpointCallback(BaseCallback):
    """Every `every` env steps, save the agent as OUT.partial (zip + sidecar) for resuming."""

    def __init__(self, every: int, save: Any) -> None:
        super().__init__()
        self.every = max(1, int(every))
        self.save = save
        self._next: int | None = None

    def _on_step(self) -> bool:
        if self._next is None:
            self._next = (self.model.num_timesteps // self.every + 1) * self.every
        if self.model.num_timesteps >= self._next:
            self.save(self.model)
            self._next += self.every
        return True


def _run_identity(config: SB3Config, world: World, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What must agree for a checkpoint to be resumed (keys as checkpoints have always had them;
    the dream's newer options only when they differ from their defaults)."""
    return {
        "world_sha256": world_sha256(world),
        "algo": config.algo,
        "obs_mode": config.obs_mode,
        "n_envs": config.num_envs,
        "temperature": config.temperature,
        "max_episode_steps": config.max_steps,
        "seed": config.seed,
        "algo_kwargs": kwargs,
        **_dream_extras(config),
        **config.alarm_record(),
    }


def _dream_extras(config: SB3Config) -> dict[str, Any]:
    """Termination and precision when not the defaults (agents from before them match)."""
    extras: dict[str, Any] = {}
    if config.termination != "sample":
        extras.update(termination=config.termination, done_threshold=config.done_threshold)
    if config.precision != "auto":
        extras["precision"] = config.precision
    return extras


def _quiet(message: str) -> None:
    """The default `log`: the library prints nothing (the `dreamgym sb3` command prints)."""


def train_agent(
    config: SB3Config,
    callback: BaseCallback | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Train an SB3 agent (MlpPolicy) inside the world and save it; returns the .zip path.

    A checkpoint (OUT.partial.zip/.json) is written every `checkpoint_every` steps and on Ctrl-C;
    re-running the same command resumes from it (networks, optimiser and step count; SAC's
    replay buffer starts empty again), so a resumed run is not bit-identical to an uninterrupted
    one. `callback`: an extra SB3 callback (e.g. `EvalCallback`). `log` receives the run's
    messages (resuming, interrupted, the final summary); by default nothing is printed.
    """
    log = log or _quiet
    algo = _check_config(config)
    zip_path, json_path = agent_paths(config.out)
    partial = zip_path.with_name(zip_path.name.removesuffix(".zip") + ".partial")
    _prepare_out(zip_path, partial, config.force)
    world = _load_world(config, algo)
    kwargs = {
        **default_algo_kwargs(algo, config.num_envs, config.steps),
        **_parse_algo_kwargs(config.algo_kwargs),
    }
    venv = _dream_venv(config, world)
    identity = _run_identity(config, world, kwargs)
    extra = _sidecar_extra(config, venv, kwargs)
    model, resumed_from, previous_wall = _new_or_resumed_model(
        config, algo, venv, kwargs, partial, identity, log
    )
    start = time.perf_counter()

    def save_checkpoint(m: BaseAlgorithm) -> None:
        wall = previous_wall + time.perf_counter() - start
        save_agent(m, partial, world, config.obs_mode, **extra, run=identity, wall_time_s=wall)

    callbacks: list[BaseCallback] = [CheckpointCallback(config.checkpoint_every, save_checkpoint)]
    alarm = _alarm_callback(config, world, zip_path, extra, resumed=resumed_from > 0)
    if alarm is not None:
        callbacks.append(alarm)
    if config.progress:
        callbacks.append(ProgressCallback(config.steps, initial=resumed_from))
    if callback is not None:
        callbacks.append(callback)
    remaining = max(0, config.steps - resumed_from)
    if remaining > 0:
        try:
            model.learn(remaining, callback=callbacks, reset_num_timesteps=resumed_from == 0)
        except KeyboardInterrupt:
            save_checkpoint(model)
            log(f"\ninterrupted at {model.num_timesteps} steps; saved {agent_paths(partial)[0]}")
            raise
    wall = previous_wall + time.perf_counter() - start
    returns = [float(e["r"]) for e in model.ep_info_buffer]
    shipped = _ship_best_predicted(model, config, alarm)
    save_agent(
        model,
        zip_path,
        world,
        config.obs_mode,
        **extra,
        **shipped,
        wall_time_s=round(wall, 3),
        steps_per_s=round(
            (model.num_timesteps - resumed_from) / max(time.perf_counter() - start, 1e-9), 1
        ),
        resumed_from=resumed_from,
        recent_dream_return=float(np.mean(returns)) if returns else None,
        command=_command_line(config, algo),
    )
    for p in agent_paths(partial):
        p.unlink(missing_ok=True)
    venv.close()
    mean = f"{np.mean(returns):.2f}" if returns else "n/a (no episode finished)"
    log(
        f"trained {algo.upper()} for {model.num_timesteps} dream steps in {wall:.0f}s "
        f"(recent dream return {mean}); wrote {zip_path} and {json_path.name}"
    )
    return zip_path


def _check_config(config: SB3Config) -> str:
    """The algorithm's lower-case name, once the options are valid."""
    algo = config.algo.lower()
    if algo not in ALGOS:
        raise ValueError(f"--algo must be one of {sorted(ALGOS)}, got {config.algo!r}")
    check_choice("obs_mode", config.obs_mode, OBS_MODES)
    check_int("steps", config.steps, 1)
    check_int("num_envs", config.num_envs, 1)
    return algo


def _prepare_out(zip_path: Path, partial: Path, force: bool) -> None:
    """Refuse to overwrite a finished agent; with `force`, forget any checkpoint too."""
    if zip_path.exists() and not force:
        raise FileExistsError(f"{zip_path} already holds an agent; pass --force to overwrite it")
    if force:
        for p in agent_paths(partial):
            p.unlink(missing_ok=True)


def _load_world(config: SB3Config, algo: str) -> World:
    world = World.load(config.world, device=resolve_device(config.device))
    if algo == "sac" and not isinstance(world.action_space, gym.spaces.Box):
        raise ValueError(
            f"SAC needs continuous (Box) actions, but world {world.name!r} ({world.env_id}) has "
            f"{world.action_space}; use --algo ppo or --algo a2c"
        )
    return world


def _dream_venv(config: SB3Config, world: World) -> VecMonitor:
    """The `DreamVecEnv` the agent trains in, under SB3's episode-statistics monitor."""
    return VecMonitor(
        DreamVecEnv(
            world,
            num_envs=config.num_envs,
            seed=config.seed,
            settings=config.dream_settings(obs_mode=config.obs_mode).replace(device=world.device),
        )
    )


def _sidecar_extra(config: SB3Config, venv: VecMonitor, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What every sidecar of the run records besides `save_agent`'s own keys."""
    return {
        "steps": config.steps,
        "seed": config.seed,
        "n_envs": config.num_envs,
        "temperature": venv.unwrapped.temperature,  # type: ignore[attr-defined]
        "max_episode_steps": venv.unwrapped.core.max_episode_steps,  # type: ignore[attr-defined]
        "policy": config.policy,
        "algo_kwargs": kwargs,
        **_dream_extras(config),
    }


def _command_line(config: SB3Config, algo: str) -> str:
    return f"dreamgym sb3 --world {config.world} --algo {algo} --steps {config.steps} --out {config.out}"


def _check_checkpoint_trust(meta: dict[str, Any], partial_zip: Path) -> None:
    """Resuming unpickles the checkpoint with SB3's loader: only one this machine signed."""
    try:
        check_agent_trust(meta, partial_zip)
    except UntrustedAgentError as e:
        raise FileExistsError(
            f"cannot resume from {partial_zip}: {e} — SB3 unpickles a checkpoint to resume it, so "
            "only this machine's own are resumed; pass --force to start over"
        ) from None


def _new_or_resumed_model(
    config: SB3Config,
    algo: str,
    venv: VecMonitor,
    kwargs: dict[str, Any],
    partial: Path,
    identity: dict[str, Any],
    log: Callable[[str], None],
) -> tuple[BaseAlgorithm, int, float]:
    """(model, steps already done, wall seconds already spent): resumed from OUT.partial if any."""
    agent_device = config.agent_device
    if agent_device == "auto" and algo in ("ppo", "a2c"):
        agent_device = "cpu"
    partial_zip, partial_json = agent_paths(partial)
    if partial_zip.is_file() and partial_json.is_file():
        meta = json.loads(partial_json.read_text())
        if meta.get("run") != identity:
            raise FileExistsError(
                f"{partial_zip} is a checkpoint of a run with other options ({meta.get('run')}); "
                "pass --force to start over, or re-run with the same options to resume it"
            )
        _check_checkpoint_trust(meta, partial_zip)
        model = ALGOS[algo].load(partial_zip, env=venv, device=agent_device)
        log(f"resuming {partial_zip} at {int(model.num_timesteps)} steps")
        return model, int(model.num_timesteps), float(meta.get("wall_time_s", 0.0))
    policy = config.policy
    if policy == "auto":
        policy = "CnnPolicy" if config.obs_mode == "pixels" else "MlpPolicy"
    model = ALGOS[algo](
        policy,
        venv,
        seed=config.seed,
        device=agent_device,
        verbose=config.verbose,
        **kwargs,
    )
    return model, 0, 0.0


def _alarm_callback(
    config: SB3Config, world: World, zip_path: Path, extra: dict[str, Any], resumed: bool
) -> ExploitationAlarmCallback | None:
    """The exploitation alarm of `--alarm-every` (None when off): OUT.best_predicted.zip and
    OUT.best_dream.zip beside OUT.zip; a fresh run forgets an earlier run's, a resumed one
    carries on from them."""
    if not config.alarm_every:
        return None
    alarm = ExploitationAlarmCallback(
        world,
        [World.load(m, device=world.device) for m in config.alarm_worlds()],
        config.alarm_every,
        episodes=config.alarm_episodes,
        penalty=config.alarm_penalty,
        halt=config.alarm_halt,
        obs_mode=config.obs_mode,
        settings=config.dream_settings(obs_mode=config.obs_mode).replace(device=world.device),
        seed=config.seed,
        save_path=zip_path.parent,
        name_prefix=zip_path.name.removesuffix(".zip") + ".",
        alarm=AlarmConfig(window=config.alarm_window),
        sidecar=extra,
    )
    for which in ("predicted", "dream"):
        path = alarm.path(which)
        assert path is not None
        for p in agent_paths(path) if not resumed else ():
            p.unlink(missing_ok=True)
    if resumed:
        alarm.restore()
    return alarm


def _ship_best_predicted(
    model: BaseAlgorithm, config: SB3Config, alarm: ExploitationAlarmCallback | None
) -> dict[str, Any]:
    """With `--keep best-predicted`, put the best-predicted agent's weights into `model` (what
    OUT.zip then holds); the sidecar keys saying what was shipped."""
    if alarm is None:
        return {}
    best = alarm.path("predicted")
    record = {"kept": config.keep, "alarm": alarm.summary()}
    if config.keep != "best-predicted" or best is None or not best.is_file():
        return {**record, "kept": "last"}
    meta = json.loads(agent_paths(best)[1].read_text())
    check_agent_trust(meta, best)  # ours, signed; SB3 reads the weights from the zip
    model.set_parameters(str(best), exact_match=True, device=model.device)
    return record
