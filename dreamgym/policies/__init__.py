"""Policies: batched observations in, batched actions out (the `Policy` protocol).

- `base`: the `Policy` protocol every policy follows.
- `random`: `RandomPolicy`, the seeded uniform baseline.
- `linear`: the paper's linear controller C (`LinearController`, its file format, the batched
  `PopulationController`, `ControllerPolicy`, and the controller a world bundle ships).
- `sb3_agent`: stable-baselines3 agents on disk (`save_agent`, `load_sb3_policy`, `SB3Policy`).
- `frames`: policies acting on real frames through V and M (`FramePolicyFactory`, for collect).
- `fixed`: constant and alternating actions (`constant:A`, `alternate:A/B@K`), the probes of
  `dreamgym diagnose`.
- `loading`: `load_policy(spec, world)`, the spec parser every `--policy` option goes through.
"""

from __future__ import annotations

from dreamgym.policies.base import Policy
from dreamgym.policies.fixed import AlternatingPolicy, ConstantPolicy, fixed_policy, is_fixed_spec
from dreamgym.policies.frames import FramePolicyFactory
from dreamgym.policies.linear import (
    ActionHead,
    ControllerPolicy,
    LinearController,
    PopulationController,
    bundle_controller,
    controller_paths,
    load_bundled_controller,
)
from dreamgym.policies.loading import POLICY_SPECS_HELP, check_policy_fits, load_policy
from dreamgym.policies.random import RandomPolicy
from dreamgym.policies.sb3_agent import SB3Policy, load_sb3_policy, save_agent

__all__ = [
    "POLICY_SPECS_HELP",
    "ActionHead",
    "AlternatingPolicy",
    "ConstantPolicy",
    "ControllerPolicy",
    "FramePolicyFactory",
    "LinearController",
    "Policy",
    "PopulationController",
    "RandomPolicy",
    "SB3Policy",
    "bundle_controller",
    "check_policy_fits",
    "controller_paths",
    "fixed_policy",
    "is_fixed_spec",
    "load_bundled_controller",
    "load_policy",
    "load_sb3_policy",
    "save_agent",
]
