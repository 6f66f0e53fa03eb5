"""`dreamgym collect`: collect real rollouts."""

from __future__ import annotations

from dreamgym.data import CollectConfig, collect_from_config


def run(config: CollectConfig) -> int:
    """Collect; print a one-line summary of the dataset; 0 on success."""
    result = collect_from_config(config)
    print(
        f"{result.out}: {result.total_episodes} episodes ({result.episodes} new, "
        f"{result.steps} steps in {result.seconds:.0f} s, {result.steps_per_s:.0f} steps/s)"
    )
    return 0
