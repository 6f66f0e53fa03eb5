"""`dreamgym gap`: dream vs real returns of one policy: table, CSV, JSON, plot."""

from __future__ import annotations

from dreamgym.evaluation import GapConfig, gap


def run(config: GapConfig) -> int:
    """Run the job; print its summary; 0 on success."""
    result = gap(config)
    return result if isinstance(result, int) else 0
