"""`dreamgym sb3`: train a stable-baselines3 agent in the dream."""

from __future__ import annotations

from dreamgym.agents.sb3 import SB3Config, train_agent


def run(config: SB3Config) -> int:
    """Run the job, printing its messages (resuming, interrupted, the summary); 0 on success."""
    train_agent(config, log=print)
    return 0
