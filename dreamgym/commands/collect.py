"""`dreamgym collect`: collect real rollouts."""

from __future__ import annotations

from dreamgym.data import CollectConfig, collect_from_config


def run(config: CollectConfig) -> int:
    """Run the job; print its summary; 0 on success."""
    result = collect_from_config(config)
    return result if isinstance(result, int) else 0
