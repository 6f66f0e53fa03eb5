"""stable-baselines3 in the dream: a VecEnv view of the batched core, training, and loading agents.

- `DreamVecEnv`: SB3's `VecEnv` API over ONE `DreamVectorEnv(autoreset_mode=SAME_STEP)`; no
  subprocesses and no per-env stepping loop, so PPO with 16 or 1,024 dreams costs one batched
  torch step per vector step.
- `train_agent(SB3Config)` (`dreamgym sb3`): PPO / A2C / SAC with an MLP policy inside a world,
  a progress bar, periodic checkpoints (re-running the same command resumes), and a sidecar JSON.
- `load_sb3_policy(path, world)`: the agent as a `dreamgym.policies.Policy`, checked against the
  world (env id, weights, obs_mode, observation and action spaces) before it is used.

Training the agent entirely inside the learned model and deploying it in reality is the paper's
main experiment (Ha & Schmidhuber 2018, §4); here the controller is an SB3 agent instead of
CMA-ES (the policy-gradient variant they suggest in §6).

An agent is two files: `AGENT.zip` (SB3's own format; see `load_sb3_policy` for what that implies)
and `AGENT.json`, which says which world and obs_mode it was trained on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3 import A2C, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn
from tqdm.auto import tqdm

from dreamgym.envs.dream import OBS_MODES, DreamVectorEnv, observation_space_for, resolve_device
from dreamgym.spaces import action_space_to_dict, same_action_space
from dreamgym.world import World, atomic_write_bytes, atomic_write_json

ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "sac": SAC}
"""Algorithms `dreamgym sb3` trains (SAC needs Box actions)."""
AGENT_FORMAT = "dreamgym-sb3-agent"
AGENT_FORMAT_VERSION = 1
PPO_ROLLOUT_STEPS = 2048
"""PPO collects about this many transitions per update, whatever n_envs (SB3's single-env default)."""
PPO_BATCH_SIZE = 256


# --- the VecEnv -------------------------------------------------------------------------------
class DreamVecEnv(VecEnv):
    """SB3's `VecEnv` over one batched dream core with same-step resets.

    ## Description
    `n_envs` dreams of one world (see `DreamVectorEnv`), stepped as one torch batch. SB3 wants a
    finished env reset in the same step, its last observation in
    `infos[i]["terminal_observation"]`, and `infos[i]["TimeLimit.truncated"]` (truncated and not
    terminated) for bootstrapping; the core's SAME_STEP autoreset gives exactly that.

    ## Spaces
    Per-env spaces, as SB3 expects: the world's action space and the dream's observation space
    for `obs_mode` (`observation_space_for`). Actions are validated at the boundary (shape,
    dtype, NaN, Discrete range) with a clear `ValueError`.

    ## Seeding
    One `torch.Generator` drives the batch, so `seed(s)` (SB3 stores `s + i` per env) seeds it with
    the first env's seed `s` at the next `reset()`; same seed → same trajectories on CPU.

    ## Shared attributes
    There is one core, so `get_attr`, `set_attr` and `env_method` act on it: `get_attr` returns its
    value once per requested index, `set_attr` applies to all envs (indices must cover them all),
    and `env_method` calls the core's method once and repeats the result per index.

    ## Arguments
    `world`, `n_envs`, `obs_mode`, `temperature`, `device`, `max_episode_steps`, `render_mode`
    ("rgb_array": `get_images`/`render` decode each env's z with V), `termination`,
    `done_threshold` as in `DreamVectorEnv`; `seed` seeds the first reset.
    """

    def __init__(
        self,
        world: World | str | os.PathLike,
        n_envs: int = 16,
        obs_mode: str = "zh",
        temperature: float | None = None,
        device: str | torch.device = "auto",
        max_episode_steps: int | None = None,
        seed: int | None = None,
        render_mode: str | None = None,
        termination: str = "sample",
        done_threshold: float = 0.5,
    ) -> None:
        self.core = DreamVectorEnv(
            world,
            num_envs=n_envs,
            obs_mode=obs_mode,
            temperature=temperature,
            device=device,
            max_episode_steps=max_episode_steps,
            render_mode=render_mode,
            autoreset_mode=AutoresetMode.SAME_STEP,
            termination=termination,
            done_threshold=done_threshold,
        )
        self.world = self.core.world
        self.obs_mode = obs_mode
        super().__init__(
            self.core.num_envs, self.core.single_observation_space, self.core.single_action_space
        )
        self.metadata["autoreset_mode"] = AutoresetMode.SAME_STEP
        self._actions: torch.Tensor | None = None
        if seed is not None:
            self.seed(seed)

    @property
    def temperature(self) -> float:
        return self.core.temperature

    # --- stepping ---------------------------------------------------------------------------
    def reset(self) -> np.ndarray:
        """Reset every dream; a pending `seed()` reseeds the core's generator first."""
        if any(self._options):
            raise ValueError(
                f"the dream takes no reset options, got {self._options[0] or self._options}; "
                "call set_options(None)"
            )
        seed = next((s for s in self._seeds if s is not None), None)
        obs = self.core.reset_tensors(seed=seed)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._actions = None
        return self.core._to_numpy_obs(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = self.core._actions_to_tensor(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() without a pending step_async(actions)")
        result = self.core.step_tensors(self._actions, validate=False)
        self._actions = None
        obs = self.core._to_numpy_obs(result.obs)
        rewards = result.reward.cpu().numpy().astype(np.float32)
        dones = result.done.cpu().numpy()
        # The core's `truncated` already excludes terminated envs: SB3's "truncated and not terminated".
        truncated = result.truncated.cpu().numpy()
        infos: list[dict[str, Any]] = [{"TimeLimit.truncated": t} for t in truncated.tolist()]
        if result.final_obs is not None:
            final = self.core._to_numpy_obs(result.final_obs)
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = final[i]
        return obs, rewards, dones, infos

    def close(self) -> None:
        self.core.close()

    # --- rendering --------------------------------------------------------------------------
    def get_images(self) -> Sequence[np.ndarray | None]:
        if self.render_mode != "rgb_array":
            warnings.warn(
                f"get_images() needs render_mode='rgb_array', the render mode is {self.render_mode!r}",
                stacklevel=2,
            )
            return [None] * self.num_envs
        return list(self.core.render_tensors().cpu().numpy())

    # --- attributes of the one core ----------------------------------------------------------
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.core, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if sorted(set(self._get_indices(indices))) != list(range(self.num_envs)):
            raise ValueError(
                f"set_attr({attr_name!r}) on some envs only: the dreams share one batched core, "
                "so attributes apply to all of them; pass indices=None"
            )
        setattr(self.core, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        result = getattr(self.core, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


# --- agents on disk ---------------------------------------------------------------------------
def agent_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """ "agents/ppo" or "agents/ppo.zip" → (agents/ppo.zip, agents/ppo.json)."""
    p = Path(path)
    base = p.with_suffix("") if p.suffix == ".zip" else p
    return base.with_name(base.name + ".zip"), base.with_name(base.name + ".json")


def world_sha256(world: World) -> str:
    """Identity of a world for agents: sha256 of env id, action space, preprocessing and V's and
    M's weights (as float32). Stable across save/load and devices; changes when V or M change,
    i.e. exactly when z and h start to mean something else to a trained agent."""
    h = hashlib.sha256()
    ident = {
        "env_id": world.env_id,
        "action_space": world.config["action_space"],
        "preprocessing": world.config["preprocessing"],
    }
    h.update(json.dumps(ident, sort_keys=True).encode())
    for prefix, module in (("vae", world.vae), ("mdnrnn", world.mdnrnn)):
        for name, tensor in sorted(module.state_dict().items()):
            h.update(f"{prefix}.{name}".encode())
            h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _model_bytes(model: BaseAlgorithm) -> bytes:
    buf = io.BytesIO()
    model.save(buf)
    return buf.getvalue()


def save_agent(
    model: BaseAlgorithm,
    path: str | os.PathLike,
    world: World,
    obs_mode: str,
    **extra: Any,
) -> Path:
    """Write `path`.zip (SB3's format) and the sidecar `path`.json, both atomically.

    The sidecar records the world (name, env id, `world_sha256`), the obs_mode, the algorithm
    and the spaces, plus anything in `extra` (steps, seed, temperature, wall time, ...).
    """
    zip_path, json_path = agent_paths(path)
    algo = next((k for k, cls in ALGOS.items() if type(model) is cls), type(model).__name__)
    meta = {
        "format": AGENT_FORMAT,
        "format_version": AGENT_FORMAT_VERSION,
        "world": {"name": world.name, "env_id": world.env_id, "sha256": world_sha256(world)},
        "obs_mode": obs_mode,
        "algo": algo,
        "observation_shape": list(observation_space_for(world, obs_mode).shape),
        "action_space": action_space_to_dict(model.action_space),
        "num_timesteps": int(model.num_timesteps),
        **extra,
        "versions": _versions(),
    }
    atomic_write_bytes(zip_path, _model_bytes(model))
    atomic_write_json(json_path, meta)
    return zip_path


def _versions() -> dict[str, str]:
    import stable_baselines3

    from dreamgym import __version__

    return {"dreamgym": __version__, "stable_baselines3": stable_baselines3.__version__}


class SB3Policy:
    """An SB3 agent as a `dreamgym.policies.Policy`: batched observations in, actions out."""

    def __init__(
        self,
        model: BaseAlgorithm,
        obs_mode: str,
        observation_space: gym.spaces.Box | None = None,
        deterministic: bool = True,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.obs_mode = obs_mode
        self.deterministic = deterministic
        self.metadata = metadata or {}
        # The dream's space (SB3 stores pixel spaces channel-first and transposes in predict).
        self.observation_space = observation_space or model.observation_space
        self.action_space = model.action_space

    def act(self, obs: np.ndarray) -> np.ndarray:
        """(N, *obs_shape) → (N, *action_shape); Box actions are clipped to the bounds by SB3."""
        obs = np.asarray(obs)
        if obs.shape[1:] != self.observation_space.shape:
            raise ValueError(
                f"expected a batch of observations of shape (N, {', '.join(map(str, self.observation_space.shape))}), "
                f"got {obs.shape}; this agent was trained on obs_mode {self.obs_mode!r}"
            )
        actions, _ = self.model.predict(obs, deterministic=self.deterministic)
        return actions


def load_sb3_policy(
    path: str | os.PathLike,
    world: World | str | os.PathLike,
    deterministic: bool = True,
    device: str = "cpu",
    obs_mode: str | None = None,
    strict: bool = True,
) -> SB3Policy:
    """Load an agent written by `dreamgym sb3` / `save_agent` and check it fits `world`.

    Checks, each with a message naming the agent and the world: the sidecar's env id and
    obs_mode (`obs_mode`, if given, must agree), V's and M's weights (`world_sha256`; an agent
    trained in another world reads z and h that mean something else — `strict=False` allows it),
    and the observation and action spaces.

    Security: SB3's `.zip` stores the network weights as tensors (read with
    `torch.load(weights_only=True)`) but some settings (policy class, schedules) with cloudpickle,
    which can run code when loaded. That is SB3's own format; load only agents you trust
    (typically ones you trained). Worlds, by contrast, never unpickle anything.
    """
    zip_path, json_path = agent_paths(path)
    if not zip_path.is_file():
        raise FileNotFoundError(
            f"no agent at {zip_path}; train one with `dreamgym sb3 --out {path}`"
        )
    if not json_path.is_file():
        raise FileNotFoundError(
            f"agent {zip_path} has no sidecar {json_path.name}, so dreamgym cannot tell which world "
            "and obs_mode it was trained on; save agents with dreamgym.sb3.save_agent"
        )
    try:
        meta = json.loads(json_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{json_path} is not valid JSON ({e}); re-save the agent") from e
    if meta.get("format") != AGENT_FORMAT:
        raise ValueError(
            f"{json_path} is not a dreamgym agent sidecar (format {meta.get('format')!r})"
        )
    if not isinstance(world, World):
        world = World.load(world)
    name = zip_path.name
    trained_on = meta["world"]
    if trained_on["env_id"] != world.env_id:
        raise ValueError(
            f"agent {name} was trained in a world of {trained_on['env_id']} "
            f"({trained_on['name']!r}), but world {world.name!r} models {world.env_id}"
        )
    if obs_mode is not None and obs_mode != meta["obs_mode"]:
        raise ValueError(
            f"agent {name} was trained on obs_mode {meta['obs_mode']!r} but obs_mode {obs_mode!r} "
            f"was requested; evaluate it with obs_mode={meta['obs_mode']!r}"
        )
    obs_mode = meta["obs_mode"]
    if strict and trained_on["sha256"] != world_sha256(world):
        raise ValueError(
            f"agent {name} was trained in world {trained_on['name']!r} (sha256 "
            f"{trained_on['sha256'][:12]}…), but world {world.name!r} has other V/M weights: its "
            "z and h mean something else to the agent; retrain the agent in this world or pass "
            "strict=False to use it anyway"
        )
    algo = meta["algo"]
    if algo not in ALGOS:
        raise ValueError(
            f"agent {name}: unknown algorithm {algo!r}; dreamgym loads {sorted(ALGOS)}"
        )
    model = ALGOS[algo].load(zip_path, device=device)
    expected = observation_space_for(world, obs_mode)
    got = model.observation_space
    shape = tuple(got.shape or ())
    if obs_mode == "pixels" and len(shape) == 3:
        shape = shape if shape[-1] == 3 else (shape[1], shape[2], shape[0])  # SB3 stores CHW
    if shape != expected.shape or got.dtype != expected.dtype:
        raise ValueError(
            f"agent {name} expects observations {got.dtype}{tuple(got.shape)}, but world "
            f"{world.name!r} gives {expected.dtype}{tuple(expected.shape)} in obs_mode {obs_mode!r}"
        )
    if not same_action_space(model.action_space, world.action_space):
        raise ValueError(
            f"agent {name} acts in {model.action_space}, but world {world.name!r} "
            f"({world.env_id}) has action space {world.action_space}"
        )
    return SB3Policy(model, obs_mode, expected, deterministic=deterministic, metadata=meta)


# --- training -----------------------------------------------------------------------------------
@dataclass
class SB3Config:
    """Options of `dreamgym sb3`."""

    world: str = field(
        metadata={"help": "world bundle directory or bundled name (carracing, doom_takecover)"}
    )
    out: str = field(metadata={"help": "agent path: writes OUT.zip (SB3) and OUT.json (sidecar)"})
    algo: str = field(default="ppo", metadata={"help": "SB3 algorithm", "choices": sorted(ALGOS)})
    steps: int = field(
        default=100_000, metadata={"help": "dream env steps to train for (all envs together)"}
    )
    n_envs: int = field(default=16, metadata={"help": "dreams stepped together in one batch"})
    obs_mode: str = field(
        default="zh", metadata={"help": "what the agent sees", "choices": list(OBS_MODES)}
    )
    temperature: float | None = field(
        default=None, metadata={"help": "dream temperature τ (default: the world's)"}
    )
    max_episode_steps: int | None = field(
        default=None, metadata={"help": "dream episode limit (default: the world's)"}
    )
    device: str = field(default="auto", metadata={"help": "device of the dream: auto, cpu or cuda"})
    agent_device: str = field(
        default="auto",
        metadata={
            "help": "device of the agent's networks (auto: CPU for PPO/A2C MLPs, as SB3 advises)"
        },
    )
    policy: str = field(
        default="auto",
        metadata={"help": "SB3 policy class (auto: CnnPolicy for pixels, else MlpPolicy)"},
    )
    seed: int = field(
        default=0, metadata={"help": "seed of the dream, the agent and SB3's global RNGs"}
    )
    algo_kwargs: str = field(
        default="",
        metadata={
            "help": "JSON of extra SB3 algorithm arguments, e.g. '{\"learning_rate\": 1e-4}'"
        },
    )
    checkpoint_every: int = field(
        default=50_000,
        metadata={"help": "env steps between checkpoints (OUT.partial.zip) that a re-run resumes"},
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    verbose: int = field(default=0, metadata={"help": "SB3 verbosity (0, 1 or 2)"})
    force: bool = field(
        default=False, metadata={"help": "overwrite an existing agent and ignore checkpoints"}
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
    """What must agree for a checkpoint to be resumed."""
    return {
        "world_sha256": world_sha256(world),
        "algo": config.algo,
        "obs_mode": config.obs_mode,
        "n_envs": config.n_envs,
        "temperature": config.temperature,
        "max_episode_steps": config.max_episode_steps,
        "seed": config.seed,
        "algo_kwargs": kwargs,
    }


def train_agent(config: SB3Config, callback: BaseCallback | None = None) -> Path:
    """Train an SB3 agent (MlpPolicy) inside the world and save it; returns the .zip path.

    A checkpoint (OUT.partial.zip/.json) is written every `checkpoint_every` steps and on Ctrl-C;
    re-running the same command resumes from it (networks, optimiser and step count; SAC's
    replay buffer starts empty again), so a resumed run is not bit-identical to an uninterrupted
    one. `callback`: an extra SB3 callback (e.g. `EvalCallback`).
    """
    algo = config.algo.lower()
    if algo not in ALGOS:
        raise ValueError(f"--algo must be one of {sorted(ALGOS)}, got {config.algo!r}")
    if config.obs_mode not in OBS_MODES:
        raise ValueError(f"--obs-mode must be one of {OBS_MODES}, got {config.obs_mode!r}")
    if config.steps < 1 or config.n_envs < 1:
        raise ValueError(
            f"--steps and --n-envs must be ≥ 1, got {config.steps} and {config.n_envs}"
        )
    zip_path, json_path = agent_paths(config.out)
    partial = zip_path.with_name(zip_path.name.removesuffix(".zip") + ".partial")
    partial_zip, partial_json = agent_paths(partial)
    if zip_path.exists() and not config.force:
        raise FileExistsError(f"{zip_path} already holds an agent; pass --force to overwrite it")
    if config.force:
        for p in (partial_zip, partial_json):
            p.unlink(missing_ok=True)

    world = World.load(config.world, device=resolve_device(config.device))
    if algo == "sac" and not isinstance(world.action_space, gym.spaces.Box):
        raise ValueError(
            f"SAC needs continuous (Box) actions, but world {world.name!r} ({world.env_id}) has "
            f"{world.action_space}; use --algo ppo or --algo a2c"
        )
    kwargs = {
        **default_algo_kwargs(algo, config.n_envs, config.steps),
        **_parse_algo_kwargs(config.algo_kwargs),
    }
    agent_device = config.agent_device
    if agent_device == "auto" and algo in ("ppo", "a2c"):
        agent_device = "cpu"
    venv = VecMonitor(
        DreamVecEnv(
            world,
            n_envs=config.n_envs,
            obs_mode=config.obs_mode,
            temperature=config.temperature,
            device=world.device,
            max_episode_steps=config.max_episode_steps,
            seed=config.seed,
        )
    )
    identity = _run_identity(config, world, kwargs)
    extra = {
        "steps": config.steps,
        "seed": config.seed,
        "n_envs": config.n_envs,
        "temperature": venv.unwrapped.temperature,  # type: ignore[attr-defined]
        "max_episode_steps": venv.unwrapped.core.max_episode_steps,  # type: ignore[attr-defined]
        "policy": config.policy,
        "algo_kwargs": kwargs,
    }

    resumed_from, previous_wall = 0, 0.0
    if partial_zip.is_file() and partial_json.is_file():
        meta = json.loads(partial_json.read_text())
        if meta.get("run") != identity:
            raise FileExistsError(
                f"{partial_zip} is a checkpoint of a run with other options ({meta.get('run')}); "
                "pass --force to start over, or re-run with the same options to resume it"
            )
        model = ALGOS[algo].load(partial_zip, env=venv, device=agent_device)
        resumed_from, previous_wall = int(model.num_timesteps), float(meta.get("wall_time_s", 0.0))
        print(f"resuming {partial_zip} at {resumed_from} steps")
    else:
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

    start = time.perf_counter()

    def save_checkpoint(m: BaseAlgorithm) -> None:
        wall = previous_wall + time.perf_counter() - start
        save_agent(m, partial, world, config.obs_mode, **extra, run=identity, wall_time_s=wall)

    callbacks: list[BaseCallback] = [CheckpointCallback(config.checkpoint_every, save_checkpoint)]
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
            print(f"\ninterrupted at {model.num_timesteps} steps; saved {partial_zip}")
            raise
    wall = previous_wall + time.perf_counter() - start
    returns = [float(e["r"]) for e in model.ep_info_buffer]
    save_agent(
        model,
        zip_path,
        world,
        config.obs_mode,
        **extra,
        wall_time_s=round(wall, 3),
        steps_per_s=round(
            (model.num_timesteps - resumed_from) / max(time.perf_counter() - start, 1e-9), 1
        ),
        resumed_from=resumed_from,
        recent_dream_return=float(np.mean(returns)) if returns else None,
        command=f"dreamgym sb3 --world {config.world} --algo {algo} --steps {config.steps} --out {config.out}",
    )
    for p in (partial_zip, partial_json):
        p.unlink(missing_ok=True)
    venv.close()
    mean = f"{np.mean(returns):.2f}" if returns else "n/a (no episode finished)"
    print(
        f"trained {algo.upper()} for {model.num_timesteps} dream steps in {wall:.0f}s "
        f"(recent dream return {mean}); wrote {zip_path} and {json_path.name}"
    )
    return zip_path
