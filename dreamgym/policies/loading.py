"""Policies from spec strings, checked against the world they will act in.

`load_policy(spec, world)`: "random", "bundled" (the controller a world ships), a controller
file (`dreamgym controller`), an SB3 agent (`dreamgym sb3`), or a fixed policy
(`constant:A`, `alternate:A/B@K`; `dreamgym.policies.fixed`). Every command that takes
`--policy` goes through here, and so do worker processes, which rebuild a policy from its spec.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from dreamgym.envs.dream import OBS_MODES, observation_space_for
from dreamgym.policies.agent_trust import Trust
from dreamgym.policies.base import Policy
from dreamgym.policies.fixed import FIXED_SPECS_HELP, fixed_policy, is_fixed_spec
from dreamgym.policies.linear import (
    CONTROLLER_FORMAT,
    CONTROLLER_WEIGHTS,
    ControllerPolicy,
    LinearController,
    controller_paths,
    load_bundled_controller,
)
from dreamgym.policies.random import RandomPolicy
from dreamgym.policies.sb3_agent import load_sb3_policy
from dreamgym.world import World

POLICY_SPECS_HELP = (
    "random | bundled | a controller (directory, .safetensors or .json) | an SB3 agent (.zip) | "
    + FIXED_SPECS_HELP
)


def load_policy(
    spec: str, world: World | str | os.PathLike, seed: int | None = None, trust: Trust = False
) -> Policy:
    """A `Policy` from a spec string, checked against `world` (clear errors on any mismatch).

    `spec`: "random" (uniform actions, seeded with `seed`), "bundled" (the controller shipped in
    the world bundle), a controller (its directory, `.safetensors` or `.json`), or an SB3 agent
    (`AGENT.zip`, `AGENT.json` or `AGENT`), or a fixed policy (`constant:0`, `constant:0,1,0`,
    `alternate:1,2@10`; see `dreamgym.policies.fixed`). The returned object carries `spec`, so worker
    processes can rebuild it. `trust`: for SB3 agents, see `load_sb3_policy` (True: an agent
    this machine did not write may be loaded; hand workers `worker_trust(policy)`).
    """
    if not isinstance(world, World):
        world = World.load(world)
    policy: Any
    if spec == "random":
        policy = RandomPolicy(world.action_space, seed=seed, obs_mode="zh")
    elif spec == "bundled":
        policy = ControllerPolicy(load_bundled_controller(world))
    elif is_fixed_spec(spec):
        policy = fixed_policy(spec, world)
    else:
        kind, path = _policy_file(spec)
        if kind == "controller":
            policy = ControllerPolicy(LinearController.load(path, world))
        else:
            policy = load_sb3_policy(path, world, trust=trust)
        check_policy_fits(policy, world, spec)
    policy.spec = spec
    return policy


def worker_trust(policy: Policy | str | None, trust: Trust = False) -> Trust:
    """What a worker passes as `trust` to rebuild `policy`: the verified zip's sha256 for an SB3
    agent loaded here (so a worker without this machine's key loads that content only)."""
    return getattr(policy, "zip_sha256", None) or trust


def check_policy_fits(policy: Policy, world: World, spec: str = "policy") -> None:
    """Run the policy on two blank observations of the world and check the actions it returns."""
    if getattr(policy, "obs_mode", None) not in OBS_MODES:
        raise ValueError(
            f"{spec}: obs_mode {getattr(policy, 'obs_mode', None)!r} is not one of {OBS_MODES}"
        )
    space = observation_space_for(world, policy.obs_mode)
    obs = np.zeros((2, *space.shape), dtype=space.dtype)
    actions = np.asarray(policy.act(obs))
    action_space = world.action_space
    if actions.shape != (2, *action_space.shape) or not all(a in action_space for a in actions):
        raise ValueError(
            f"{spec}: on world {world.name!r} it returned actions {actions.dtype}"
            f"{tuple(actions.shape)} for 2 observations, which do not fit {action_space}"
        )


def _recorded_world(spec: str) -> str:
    """The world a policy file says it was trained in (its sidecar JSON), for --world's default."""
    kind, path = _policy_file(spec)
    sidecar = path.with_suffix(".json") if path.suffix in (".zip", ".safetensors") else path
    if path.is_dir():
        sidecar = controller_paths(path)[1]
    try:
        world = json.loads(sidecar.read_text()).get("world", {})
    except (OSError, json.JSONDecodeError):
        world = {}
    found = world.get("path") or world.get("name")
    if not found:
        raise ValueError(
            f"policy {spec!r} does not record its world ({sidecar}); pass --world DIR, the world "
            "whose V and M it acts through"
        )
    return str(found)


def _policy_file(spec: str) -> tuple[str, Path]:
    """("controller" | "sb3", path) for a policy file spec."""
    p = Path(spec).expanduser()
    if p.suffix == ".zip":
        return "sb3", p
    if p.suffix == ".safetensors":
        return "controller", p
    if p.suffix == ".json" and p.is_file():
        try:
            fmt = json.loads(p.read_text()).get("format")
        except json.JSONDecodeError as e:
            raise ValueError(f"policy {spec!r}: {p} is not valid JSON ({e})") from e
        return ("controller", p) if fmt == CONTROLLER_FORMAT else ("sb3", p.with_suffix(".zip"))
    if p.is_dir() and (p / CONTROLLER_WEIGHTS).is_file():
        return "controller", p
    if p.with_name(p.name + ".zip").is_file():
        return "sb3", p.with_name(p.name + ".zip")
    raise FileNotFoundError(
        f"policy {spec!r} is not 'random' or 'bundled' and no policy file is there; pass "
        f"{POLICY_SPECS_HELP}"
    )
