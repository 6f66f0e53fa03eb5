"""`dreamgym controller`: CMA-ES linear controller in the batched dream."""

from __future__ import annotations

from dreamgym.controllers import ControllerConfig, train_controller


def run(config: ControllerConfig) -> int:
    """Run the job; print its summary; 0 on success."""
    result = train_controller(config)
    return result if isinstance(result, int) else 0
