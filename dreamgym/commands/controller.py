"""`dreamgym controller`: CMA-ES linear controller in the batched dream."""

from __future__ import annotations

from dreamgym.agents.cmaes import ControllerConfig, train_controller
from dreamgym.evaluation import real_returns


def run(config: ControllerConfig) -> int:
    """Run the job (real-env checks, if asked for, by `dreamgym.evaluation`); 0 on success."""
    train_controller(config, real_evaluator=real_returns)
    return 0
