"""Options of `dreamgym rank` (one `--kebab-case` flag per field)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dreamgym.evaluation.rank.correlation import CORRELATION_RESAMPLES
from dreamgym.evaluation.stats import BOOTSTRAP_RESAMPLES
from dreamgym.options import DreamAndRealOptions
from dreamgym.policies import POLICY_SPECS_HELP
from dreamgym.policies.fixed import DEFAULT_ALTERNATE_EVERY
from dreamgym.utils.options import TRUST_AGENT_HELP, deprecated_aliases, option

DREAM_EPISODES = 64
"""Dream episodes per policy: one batch each, so the dream side is rarely the noisy one."""
RATIO_TOLERANCE = 0.05
"""A dream/real CI within 1 ± 5% is not flagged even when it excludes 1: M's reward head is
learned, so a world paying 0.998 a step for Doom's 1 sits 0.2% below reality on every capped
episode — a real error, but not the one a panel is looking for (flattering what was searched)."""


@deprecated_aliases
@dataclass(kw_only=True)
class RankConfig(DreamAndRealOptions):
    """Options of `dreamgym rank` (the dream's and the real runs', and these); see
    `dreamgym.evaluation.rank.rank`."""

    world: str = option(help="world: a bundled name or a bundle directory")
    policies: list[str] = field(
        default_factory=list,
        metadata={
            "help": f"the panel: policy specs ({POLICY_SPECS_HELP}) or folders of policies "
            "(controller directories, controller .safetensors files, SB3 .zip agents)"
        },
    )
    panel_dir: list[str] = field(
        default_factory=list,
        metadata={
            "help": "folders whose controllers and SB3 agents join the panel (searched down)"
        },
    )
    fixed: bool = option(False, "add diagnose's fixed policies (constant actions, random, ...)")
    alternate_every: int = option(
        DEFAULT_ALTERNATE_EVERY, "steps the --fixed alternating policy holds each action"
    )
    ratio_tolerance: float = option(
        RATIO_TOLERANCE,
        "warn when the CI of dream/real lies wholly outside [1 − this, 1 + this]",
    )
    episodes: int = option(16, "real episodes per policy (episode i uses seed + i)")
    dream_episodes: int = option(DREAM_EPISODES, "dream episodes per policy (one batch)")
    seed: int = option(0, "seed of the dream, the real episodes and the bootstrap")
    threads: int | None = option(None, "torch CPU threads of the dream (default: torch's)")
    real_from: str | None = option(
        None,
        "reuse real returns from an earlier rank report (its directory or rank.json; same env, "
        "--seed, --episodes and --max-steps): fixed policies always, trained ones when V, M "
        "and the policy's files are unchanged",
    )
    out: str | None = option(
        None, "directory for rank.json, rank.csv, rank.png (default: rank/WORLD)"
    )
    json: bool = option(False, "print the JSON report instead of the table")
    figures: bool = option(True, "write the scatter plot (rank.png)")
    resamples: int = option(BOOTSTRAP_RESAMPLES, "bootstrap resamples of each mean and ratio")
    correlation_resamples: int = option(
        CORRELATION_RESAMPLES, "bootstrap resamples behind the CIs of ρ and r (0: none)"
    )
    progress: bool = option(True, "show progress bars (real episodes)")
    trust_agent: bool = option(False, TRUST_AGENT_HELP)

    def check(self) -> None:
        """Refuse bad options before anything runs (the option groups checked theirs)."""
        if int(self.dream_episodes) < 1:
            raise ValueError(f"--dream-episodes must be ≥ 1, got {self.dream_episodes}")
        if int(self.resamples) < 1 or int(self.correlation_resamples) < 0:
            raise ValueError("--resamples must be ≥ 1 and --correlation-resamples ≥ 0")
        if not self.ratio_tolerance >= 0:
            raise ValueError(f"--ratio-tolerance must be ≥ 0, got {self.ratio_tolerance}")
        if not (self.policies or self.panel_dir or self.fixed):
            raise ValueError(
                "no panel: pass --policies SPEC ..., --panel-dir DIR or --fixed (or several)"
            )
