"""Returns of a policy in the dream and in reality, and the gap between them.

- `load_policy(spec, world)` (from `dreamgym.policies`): "random", "bundled", a controller file,
  or an SB3 agent, checked against the world.
- `dream.evaluate_dream`: N dream episodes as ONE batched `DreamVectorEnv` (each env's first
  episode is one sample).
- `real.evaluate_real`: N real episodes seen through V and M (`wrappers.WorldModelObservation`),
  in parallel worker processes that load the world and the policy themselves from their paths,
  or as Ray tasks (`ray_address=`, `--ray [ADDRESS]`; see `dreamgym.runners`).
- `stats`: seeded bootstrap confidence intervals and summaries.
- `jobs`: `dreamgym evaluate` (`EvaluateConfig`, `evaluate_from_config`).
- `gap`: the same policy in both, with bootstrap confidence intervals, a table, CSV/JSON and a
  plot (`dreamgym gap`). A policy that scores much better in the dream than in reality has
  probably found a flaw of the model to exploit (Ha & Schmidhuber 2018, §4.5).
- `rank`: a panel of policies in both (`dreamgym rank`): does the dream order them as reality
  does (Spearman ρ, Pearson r), how much it flatters the trained ones, and a fitted dream → real
  line (`rank.predict_real`).

Library functions return their results; the `dreamgym` commands (`dreamgym.commands`) print.
"""

from __future__ import annotations

from dreamgym.evaluation.dream import evaluate_dream
from dreamgym.evaluation.gap import (
    GAP_FILES,
    GapConfig,
    gap,
    gap_report,
    gap_table,
    write_gap_files,
)
from dreamgym.evaluation.jobs import MODES, EvaluateConfig, evaluate_from_config, returns_in
from dreamgym.evaluation.real import evaluate_real, real_returns
from dreamgym.evaluation.stats import BOOTSTRAP_RESAMPLES, bootstrap_ci, summarize
from dreamgym.policies import (
    POLICY_SPECS_HELP,
    FramePolicyFactory,
    check_policy_fits,
    load_policy,
)

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "GAP_FILES",
    "MODES",
    "POLICY_SPECS_HELP",
    "EvaluateConfig",
    "FramePolicyFactory",
    "GapConfig",
    "bootstrap_ci",
    "check_policy_fits",
    "evaluate_dream",
    "evaluate_from_config",
    "evaluate_real",
    "gap",
    "gap_report",
    "gap_table",
    "load_policy",
    "real_returns",
    "returns_in",
    "summarize",
    "write_gap_files",
]
