"""`dreamgym sb3`: train a stable-baselines3 agent in the dream."""

from __future__ import annotations

from dreamgym.sb3 import SB3Config, train_agent


def run(config: SB3Config) -> int:
    """Run the job; print its summary; 0 on success."""
    result = train_agent(config)
    return result if isinstance(result, int) else 0
