"""Options of `dreamgym diagnose` (one `--kebab-case` flag per field)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dreamgym.evaluation.jobs import RAY_FIELD
from dreamgym.evaluation.stats import BOOTSTRAP_RESAMPLES
from dreamgym.policies import POLICY_SPECS_HELP
from dreamgym.policies.fixed import DEFAULT_ALTERNATE_EVERY
from dreamgym.utils.hardware import PRECISION_HELP, PRECISIONS
from dreamgym.utils.options import option

DREAM_EPISODES = 256
"""Dream episodes per suite policy: one batched `DreamVectorEnv`, seconds even for 256."""
RELATIVE_TOLERANCE = 0.25
"""A dream mean within ±25% of the real mean is faithful ... (the bar the bundled worlds are
built to: a 16-episode real mean alone carries ~±12% standard error, so ±15% flagged faithful
worlds about as often as unfaithful ones)"""
ABSOLUTE_TOLERANCE = 30.0
"""... and so is one within ±30 of it (what counts near a real mean of zero)."""


@dataclass
class DiagnoseConfig:
    """Options of `dreamgym diagnose`; see `dreamgym.evaluation.diagnose.diagnose`."""

    world: str = option(help="world: a bundled name or a bundle directory")
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
    workers: int | None = option(None, "real-env worker processes (default: CPU count)")
    ray: str | None = field(default=None, metadata=RAY_FIELD)
    temperature: float | None = option(None, "dream temperature τ (default: the world's)")
    max_steps: int | None = option(None, "episode cap in both (default: the world's / env's limit)")
    device: str = option("auto", "device of the dream and of V/M: auto, cpu or cuda")
    precision: str = option(
        "auto",
        PRECISION_HELP,
        choices=PRECISIONS,
    )
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
    out: str | None = option(
        None, "directory for diagnose.json and the figures (default: diagnose/WORLD)"
    )
    json: bool = option(False, "print the JSON report instead of the table")
    suite: bool = option(True, "run the fixed-policy suite")
    teacher: bool = option(True, "teacher-force M along real episodes")
    figures: bool = option(True, "write the figures (PNG)")
    resamples: int = option(BOOTSTRAP_RESAMPLES, "bootstrap resamples")
    progress: bool = option(True, "show progress bars (real episodes)")

    def check(self) -> None:
        """Refuse bad options before anything runs."""
        if int(self.episodes) < 1:
            raise ValueError(f"--episodes must be ≥ 1, got {self.episodes}")
        if int(self.dream_episodes) < 1:
            raise ValueError(f"--dream-episodes must be ≥ 1, got {self.dream_episodes}")
        if self.teacher_episodes is not None and int(self.teacher_episodes) < 1:
            raise ValueError(f"--teacher-episodes must be ≥ 1, got {self.teacher_episodes}")
        if self.rel_tol < 0 or self.abs_tol < 0:
            raise ValueError(
                f"--rel-tol and --abs-tol must be ≥ 0, got {self.rel_tol} and {self.abs_tol}"
            )
        if self.max_steps is not None and int(self.max_steps) < 1:
            raise ValueError(f"--max-steps must be ≥ 1, got {self.max_steps}")
        if not (self.suite or self.teacher):
            raise ValueError("--no-suite and --no-teacher leave nothing to diagnose; drop one")
