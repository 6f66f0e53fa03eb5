"""Options of `dreamgym diagnose` (one `--kebab-case` flag per field)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dreamgym.evaluation.stats import BOOTSTRAP_RESAMPLES
from dreamgym.options import DreamAndRealOptions, check_float, check_int
from dreamgym.policies import POLICY_SPECS_HELP
from dreamgym.policies.fixed import DEFAULT_ALTERNATE_EVERY
from dreamgym.utils.options import TRUST_AGENT_HELP, deprecated_aliases, option

DREAM_EPISODES = 256
"""Dream episodes per suite policy: one batched `DreamVectorEnv`, seconds even for 256."""
RELATIVE_TOLERANCE = 0.25
"""A dream mean within ±25% of the real mean is faithful ... (the bar the bundled worlds are
built to: a 16-episode real mean alone carries ~±12% standard error, so ±15% flagged faithful
worlds about as often as unfaithful ones)"""
ABSOLUTE_TOLERANCE = 30.0
"""... and so is one within ±30 of it (what counts near a real mean of zero)."""


@deprecated_aliases
@dataclass(kw_only=True)
class DiagnoseConfig(DreamAndRealOptions):
    """Options of `dreamgym diagnose`; see `dreamgym.evaluation.diagnose.diagnose`."""

    policy: list[str] | None = field(
        default=None,
        metadata={"help": f"more policies for the suite (one or more): {POLICY_SPECS_HELP}"},
    )
    episodes: int = option(16, "real episodes per policy")
    dream_episodes: int = option(
        DREAM_EPISODES,
        "dream episodes per policy (one batch, so many cost little: the dream's mean is then "
        "not the noisy side of the comparison)",
    )
    seed: int = option(0, "seed of everything (real episode i uses seed + i)")
    dream_seed: int | None = option(
        None, "seed of the suite's dreams (default: --seed, the real episodes' own)"
    )
    device: str = option("auto", "device of the dream and of V/M: auto, cpu or cuda")
    rel_tol: float = field(
        default=RELATIVE_TOLERANCE,
        metadata={
            "help": "flag a policy whose dream mean is off the real mean by more than this fraction of |real| ..."
        },
    )
    abs_tol: float = option(
        ABSOLUTE_TOLERANCE, "... and by more than this much (returns near zero)"
    )
    alternate_every: int = option(
        DEFAULT_ALTERNATE_EVERY, "steps the suite's alternating policy holds each action"
    )
    data: list[str] | None = field(
        default=None,
        metadata={
            "help": "teacher forcing on these datasets' held-out episodes (the world's "
            "val_indices where recorded); default: fresh real episodes of the exploration policy"
        },
    )
    teacher_episodes: int | None = option(
        None, "real episodes to teacher-force M on (default: --episodes)"
    )
    real_from: str | None = option(
        None,
        "reuse the real returns of the fixed policies and random from this earlier diagnose "
        "report (its directory or diagnose.json; same env, --seed, --episodes and "
        "--max-steps): they do not depend on the world, so comparing worlds plays them once",
    )
    dream_only: bool = option(
        False,
        "play no real episode: the suite's real side comes from --real-from where it has it "
        "(a policy without one gets its dream returns alone); teacher forcing needs --data "
        "or --no-teacher (comparing trial worlds, τ or termination rules in seconds)",
    )
    out: str | None = option(
        None, "directory for diagnose.json and the figures (default: diagnose/WORLD)"
    )
    json: bool = option(False, "print the JSON report instead of the table")
    suite: bool = option(True, "run the fixed-policy suite")
    teacher: bool = option(True, "teacher-force M along real episodes")
    figures: bool = option(True, "write the figures (PNG)")
    resamples: int = option(BOOTSTRAP_RESAMPLES, "bootstrap resamples")
    progress: bool = option(True, "show progress bars (real episodes)")
    trust_agent: bool = option(False, TRUST_AGENT_HELP)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.dream_episodes = check_int("dream_episodes", self.dream_episodes, 1)
        self.dream_seed = check_int("dream_seed", self.dream_seed, optional=True)
        self.teacher_episodes = check_int(
            "teacher_episodes", self.teacher_episodes, 1, optional=True
        )
        self.rel_tol = check_float("rel_tol", self.rel_tol, 0.0)
        self.abs_tol = check_float("abs_tol", self.abs_tol, 0.0)
        self.alternate_every = check_int("alternate_every", self.alternate_every, 1)
        self.resamples = check_int("resamples", self.resamples, 1)

    def check(self) -> None:
        """Refuse option combinations that cannot run, before anything does."""
        if not (self.suite or self.teacher):
            raise ValueError("--no-suite and --no-teacher leave nothing to diagnose; drop one")
        if self.dream_only and self.teacher and not self.data:
            raise ValueError(
                "--dream-only plays no real episode, but teacher forcing on fresh ones would: "
                "pass --no-teacher, or --data DATASET to teacher-force on recorded episodes"
            )
