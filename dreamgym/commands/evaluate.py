"""`dreamgym evaluate`: returns of a policy in the dream or the real env."""

from __future__ import annotations

from dreamgym.evaluation import EvaluateConfig, evaluate_from_config


def run(config: EvaluateConfig) -> int:
    """Run the job; print its summary; 0 on success."""
    result = evaluate_from_config(config)
    return result if isinstance(result, int) else 0
