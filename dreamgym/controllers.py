"""C, the linear controller, and its CMA-ES training (the old path `dreamgym.controllers`).

The controller, its action head and its files live in `dreamgym.policies.linear`; CMA-ES in the
batched dream in `dreamgym.agents.cmaes`. This module re-exports both, and its
`train_controller` runs the real-env checks of `eval_real_every` with `dreamgym.evaluation`.
"""

from __future__ import annotations

from dreamgym.agents import cmaes
from dreamgym.agents.cmaes import (
    HISTORY_FILE,
    STATE_FILE,
    ControllerConfig,
    ControllerResult,
    RealEvaluator,
)
from dreamgym.agents.population import ALL_DONE_CHECK_EVERY_GPU, PopulationEvaluator
from dreamgym.evaluation.real import real_returns
from dreamgym.policies.linear import (
    CONTROLLER_FORMAT,
    CONTROLLER_FORMAT_VERSION,
    CONTROLLER_META,
    CONTROLLER_OBS_MODES,
    CONTROLLER_WEIGHTS,
    ActionHead,
    ControllerPolicy,
    LinearController,
    PopulationController,
    action_output_dim,
    bundle_controller,
    controller_obs_dim,
    controller_paths,
    load_bundled_controller,
    n_params,
    world_fingerprint,
)
from dreamgym.utils.threads import single_threaded_blas


def train_controller(
    config: ControllerConfig, real_evaluator: RealEvaluator | None = None
) -> ControllerResult:
    """`dreamgym.agents.cmaes.train_controller`, checking in reality with `real_returns`."""
    return cmaes.train_controller(config, real_evaluator or real_returns)


__all__ = [
    "ALL_DONE_CHECK_EVERY_GPU",
    "CONTROLLER_FORMAT",
    "CONTROLLER_FORMAT_VERSION",
    "CONTROLLER_META",
    "CONTROLLER_OBS_MODES",
    "CONTROLLER_WEIGHTS",
    "HISTORY_FILE",
    "STATE_FILE",
    "ActionHead",
    "ControllerConfig",
    "ControllerPolicy",
    "ControllerResult",
    "LinearController",
    "PopulationController",
    "PopulationEvaluator",
    "action_output_dim",
    "bundle_controller",
    "controller_obs_dim",
    "controller_paths",
    "load_bundled_controller",
    "n_params",
    "single_threaded_blas",
    "train_controller",
    "world_fingerprint",
]
