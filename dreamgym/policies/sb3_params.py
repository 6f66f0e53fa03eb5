"""An SB3 agent's policy network from its `.zip`, without unpickling anything.

SB3's own `Algorithm.load` cloudpickles back the policy class, the spaces, the schedules and
more: loading runs whatever code the file carries. Acting needs none of that. Here the policy
is rebuilt from what dreamgym knows (the algorithm's built-in policy class named in the sidecar,
the world's spaces) and from the plain-JSON part of the zip's `data` (`policy_kwargs`,
`use_sde`), and only its weights are read: `policy.pth` through SB3's `load_from_zip_file` with
`load_data=False`, i.e. `torch.load(weights_only=True)`. Pickled entries are never decoded.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.save_util import load_from_zip_file

SERIALIZED = ":serialized:"
"""How SB3 marks a cloudpickled entry of `data`."""


def _data(zip_path: Path) -> dict[str, Any]:
    """The zip's `data` JSON, parsed as JSON only (pickled entries stay opaque strings)."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            return json.loads(archive.read("data").decode())
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"agent {zip_path} is not an SB3 zip with a readable 'data' ({e})") from e


def _policy_kwargs(data: dict[str, Any], zip_path: Path) -> dict[str, Any]:
    kwargs = data.get("policy_kwargs") or {}
    if not isinstance(kwargs, dict) or SERIALIZED in kwargs:
        raise ValueError(
            f"agent {zip_path}: its policy_kwargs are pickled (a custom network or activation), "
            "which dreamgym does not unpickle; train it with plain-JSON policy_kwargs"
        )
    return dict(kwargs)


def sb3_observation_space(space: gym.spaces.Box, obs_mode: str) -> gym.spaces.Box:
    """The space SB3 saw: pixels channel-first (SB3 wraps image envs in VecTransposeImage)."""
    if obs_mode != "pixels":
        return space
    h, w, c = space.shape
    return gym.spaces.Box(0, 255, shape=(c, h, w), dtype=np.uint8)


def load_sb3_params(
    zip_path: Path,
    algo: type[BaseAlgorithm],
    policy_name: str,
    observation_space: gym.spaces.Box,
    action_space: gym.Space,
    device: str = "cpu",
) -> BasePolicy:
    """The agent's policy (`algo`'s built-in `policy_name`) with the zip's weights, in eval mode."""
    aliases = getattr(algo, "policy_aliases", {})
    if policy_name not in aliases:
        raise ValueError(
            f"agent {zip_path} uses policy {policy_name!r}; dreamgym loads {algo.__name__}'s "
            f"built-in policies ({', '.join(sorted(aliases))})"
        )
    data = _data(zip_path)
    kwargs = _policy_kwargs(data, zip_path)
    if issubclass(algo, OnPolicyAlgorithm):
        kwargs["use_sde"] = bool(data.get("use_sde", False))
    policy = aliases[policy_name](observation_space, action_space, lambda _: 0.0, **kwargs)
    _, params, _ = load_from_zip_file(zip_path, load_data=False, device=device)
    if "policy" not in params:
        raise ValueError(f"agent {zip_path} holds no policy.pth; it is not a saved SB3 agent")
    try:
        policy.load_state_dict(params["policy"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(
            f"agent {zip_path}: its weights do not fit a {policy_name} for this world's spaces "
            f"({first})"
        ) from None
    policy.to(device)
    policy.set_training_mode(False)
    return policy
