"""`dreamgym evaluate`: returns of a policy in the dream or the real env."""

from __future__ import annotations

from dreamgym.commands import print_json
from dreamgym.evaluation.jobs import EvaluateConfig, evaluate_from_config


def run(config: EvaluateConfig) -> int:
    """Run the job; print its summary (or, with --json, the result); 0 on success."""
    result = evaluate_from_config(config)
    if config.json:
        print_json(result)
        return 0
    lo, hi = result["ci95"]
    print(
        f"{config.policy} in the {config.mode} of {result['world']}: {result['mean']:.2f} ± "
        f"{result['std']:.2f} over {config.episodes} episodes (95% CI [{lo:.2f}, {hi:.2f}])"
    )
    return 0
