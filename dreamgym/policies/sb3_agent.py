"""stable-baselines3 agents as dreamgym policies: their files, and loading them checked.

An agent is two files: `AGENT.zip` (SB3's own format, a pickle; see `load_sb3_policy` for what
that implies) and `AGENT.json`, which says which world and obs_mode it was trained on and carries
the zip's sha256 and this machine's signature (`dreamgym.policies.agent_trust`).
`load_sb3_policy(path, world)` returns the agent as a `dreamgym.policies.Policy`, checked against
the world (env id, weights, obs_mode, observation and action spaces) before it is used, its
network rebuilt from the weights alone (`dreamgym.policies.sb3_params`: nothing is unpickled). Training is
`dreamgym.agents.sb3`; the VecEnv it trains in is `dreamgym.envs.sb3_vec.DreamVecEnv`.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
from stable_baselines3 import A2C, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy

from dreamgym import __version__
from dreamgym.envs.dream import OBS_MODES, observation_space_for
from dreamgym.policies.agent_trust import Trust, check_agent_trust, sign_sidecar
from dreamgym.policies.sb3_params import load_sb3_params, sb3_observation_space
from dreamgym.spaces import action_space_to_dict, same_action_space
from dreamgym.utils.files import atomic_write_bytes, atomic_write_json
from dreamgym.utils.validate import check_mapping, check_str
from dreamgym.world import World

ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "sac": SAC}
"""Algorithms `dreamgym sb3` trains (SAC needs Box actions)."""
AGENT_FORMAT = "dreamgym-sb3-agent"
AGENT_FORMAT_VERSION = 1


def agent_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """ "agents/ppo" or "agents/ppo.zip" → (agents/ppo.zip, agents/ppo.json)."""
    p = Path(path)
    base = p.with_suffix("") if p.suffix == ".zip" else p
    return base.with_name(base.name + ".zip"), base.with_name(base.name + ".json")


def world_sha256(world: World) -> str:
    """Identity of a world for agents: `World.weights_sha256` (env id, action space,
    preprocessing and V's and M's weights as float32; cached, so a load does not re-hash)."""
    return world.weights_sha256


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
    and the spaces, plus anything in `extra` (steps, seed, temperature, wall time, ...), and is
    signed with the zip's sha256 (`agent_trust.sign_sidecar`): this machine trusts it later.
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
    data = _model_bytes(model)
    atomic_write_bytes(zip_path, data)
    atomic_write_json(json_path, sign_sidecar(meta, data))
    return zip_path


def _versions() -> dict[str, str]:
    return {"dreamgym": __version__, "stable_baselines3": stable_baselines3.__version__}


class SB3Policy:
    """An SB3 agent as a `dreamgym.policies.Policy`: batched observations in, actions out.

    `model` is an algorithm or its policy network (what `load_sb3_policy` loads): both predict.
    """

    zip_sha256: str | None = None
    """sha256 of the zip it was loaded from, once verified (workers load that content only)."""

    def __init__(
        self,
        model: BaseAlgorithm | BasePolicy,
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
    trust: Trust = False,
) -> SB3Policy:
    """Load an agent written by `dreamgym sb3` / `save_agent` and check it fits `world`.

    Checks, each with a message naming the agent and the world: the sidecar's env id and
    obs_mode (`obs_mode`, if given, must agree), V's and M's weights (`world_sha256`; an agent
    trained in another world reads z and h that mean something else — `strict=False` allows it),
    and the observation and action spaces.

    Security: SB3's `.zip` is a pickle (policy class, spaces and schedules are cloudpickled and
    run code when SB3 loads them). dreamgym never lets SB3 unpickle them: the policy network is
    rebuilt from the sidecar and the world, and only its weights are read
    (`torch.load(weights_only=True)`, `dreamgym.policies.sb3_params`). Still, an agent this
    machine did not write (no valid signature in its sidecar, `dreamgym.policies.agent_trust`)
    is refused unless `trust=True`, and a zip that is not the one its sidecar records is always
    refused. The returned policy's `zip_sha256` is the verified content's hash.
    """
    zip_path, json_path = agent_paths(path)
    meta = _read_sidecar(path, zip_path, json_path)
    digest = check_agent_trust(meta, zip_path, trust)
    if not isinstance(world, World):
        world = World.load(world)
    _check_trained_on(meta, zip_path.name, world, obs_mode, strict)
    obs_mode = meta["obs_mode"]
    algo = meta["algo"]
    space = observation_space_for(world, obs_mode)
    policy_name = meta.get("policy", "auto")
    if policy_name == "auto":
        policy_name = "CnnPolicy" if obs_mode == "pixels" else "MlpPolicy"
    model = load_sb3_params(
        zip_path,
        ALGOS[algo],
        policy_name,
        sb3_observation_space(space, obs_mode),
        world.action_space,
        device=device,
    )
    expected = _check_model_spaces(model, zip_path.name, world, obs_mode)
    policy = SB3Policy(model, obs_mode, expected, deterministic=deterministic, metadata=meta)
    policy.zip_sha256 = digest
    return policy


def _read_sidecar(path: str | os.PathLike, zip_path: Path, json_path: Path) -> dict[str, Any]:
    """The agent's sidecar JSON, with clear errors for a missing agent, sidecar or format."""
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
    if not isinstance(meta, dict) or meta.get("format") != AGENT_FORMAT:
        raise ValueError(
            f"{json_path} is not a dreamgym agent sidecar (format "
            f"{meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    validate_sidecar(meta, json_path)
    return meta


def validate_sidecar(meta: dict[str, Any], json_path: Path) -> None:
    """The sidecar's fields dreamgym relies on: types and known values, one line naming the field."""
    where = str(json_path)
    trained_on = check_mapping(meta.get("world"), "world", where)
    for key in ("env_id", "sha256"):
        check_str(trained_on.get(key), f"world.{key}", where)
    if trained_on.get("name") is not None:
        check_str(trained_on["name"], "world.name", where)
    check_str(meta.get("obs_mode"), "obs_mode", where, choices=OBS_MODES)
    check_str(meta.get("algo"), "algo", where, choices=sorted(ALGOS))
    if "policy" in meta:
        check_str(meta["policy"], "policy", where)


def _check_trained_on(
    meta: dict[str, Any], name: str, world: World, obs_mode: str | None, strict: bool
) -> None:
    """The sidecar's env id, obs_mode and V/M weights against `world` and the requested mode."""
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
    if strict and trained_on["sha256"] != world_sha256(world):
        raise ValueError(
            f"agent {name} was trained in world {trained_on['name']!r} (sha256 "
            f"{trained_on['sha256'][:12]}…), but world {world.name!r} has other V/M weights: its "
            "z and h mean something else to the agent; retrain the agent in this world or pass "
            "strict=False to use it anyway"
        )


def _check_model_spaces(
    model: BaseAlgorithm | BasePolicy, name: str, world: World, obs_mode: str
) -> gym.spaces.Box:
    """The world's observation space for `obs_mode`, once the model's spaces match the world's."""
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
    return expected
