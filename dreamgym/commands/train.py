"""`dreamgym train`: train V, then M, then write the bundle."""

from __future__ import annotations

from dreamgym.train import TrainConfig, train_world


def run(config: TrainConfig) -> int:
    """Run the job; print its summary; 0 on success."""
    result = train_world(config)
    return result if isinstance(result, int) else 0
