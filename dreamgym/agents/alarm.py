"""The exploitation alarm's logic: is the dream score rising while the predicted real one is not?

A policy trained in a learned world can climb by farming the world's errors: regions where M is
wrong in its favour (Ha & Schmidhuber 2018, §4.5, "cheating the world model"). An ensemble of M's
on the same V disagrees most exactly there, so the policy's return in the *uncertainty-aware*
dream (the ensemble, reward r − λ·d, optionally halted where d > h; MOPO, Yu et al. 2020; MOReL,
Kidambi et al. 2020) is our predicted real score. Trainers score the policy in both dreams on the
same fixed seeds every few generations or steps and hand the two numbers to
`ExploitationTracker.record`, which keeps the best of each and says when to worry.

The definition (`AlarmConfig`): over the last `window` checks, compare the newest with the
oldest. The dream score *rose* when it gained more than `margin` and more than `noise` standard
errors of that difference (each check's episodes give their standard error; the seeds are
fixed, so this is conservative). The predicted real score *did not follow* when it gained less
than `share` of the dream's gain, or none (`share=0`: it did not rise at all). Both → an alarm. Why a
share and not "fell": an exploiting policy often still gains a little in the ensemble's dream,
since the penalty only counts where members disagree; a policy that genuinely improves gains in
both dreams alike. Why the oldest of a window and not the previous check: one check's step is
small and noisy; a trend over a few checks is what training drift looks like.

Pure logic (no torch): the trainers (`dreamgym.agents.cmaes_alarm`,
`dreamgym.agents.sb3_alarm`) run the dreams and report through `warnings`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ALARM_ADVICE",
    "AlarmConfig",
    "Check",
    "ExploitationAlarm",
    "ExploitationTracker",
    "ExploitationWarning",
    "Verdict",
]

ALARM_ADVICE = (
    "the policy is likely exploiting the world's errors: stop here and use the best-predicted "
    "checkpoint, raise --uncertainty-penalty, or collect real data with this policy and retrain M"
)
"""What to do about an alarm, the tail of every alarm's message."""


class ExploitationWarning(UserWarning):
    """The dream score rose while the predicted real score did not (`ExploitationTracker`)."""


@dataclass(frozen=True)
class AlarmConfig:
    """When `ExploitationTracker` raises an alarm (see the module docstring for why)."""

    window: int = 3
    """Checks compared: the newest against the one `window` − 1 checks before it (≥ 2)."""
    noise: float = 1.0
    """The dream's gain must exceed this many standard errors of the difference (0: any gain)."""
    share: float = 0.25
    """The predicted real score 'did not rise' when it gained less than this share of the
    dream's gain (0: it did not rise at all; 1: it gained less than the dream)."""
    margin: float = 0.0
    """The dream's gain must also exceed this many return units (e.g. for deterministic dreams)."""

    def __post_init__(self) -> None:
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 2:
            raise ValueError(f"alarm window must be an integer ≥ 2 checks, got {self.window!r}")
        for name in ("noise", "share", "margin"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"alarm {name} must be a finite number ≥ 0, got {value!r}")


@dataclass(frozen=True)
class Check:
    """One check: the policy's mean return in the plain and in the uncertainty-aware dream."""

    step: int
    """When: the generation (controller) or env step (SB3)."""
    dream: float
    predicted: float
    """The predicted real score: the mean return in the uncertainty-aware dream."""
    dream_se: float = 0.0
    """Standard error of `dream` (std / √episodes)."""
    predicted_se: float = 0.0

    @classmethod
    def from_returns(
        cls, step: int, dream: Sequence[float] | np.ndarray, predicted: Sequence[float] | np.ndarray
    ) -> Check:
        """A check from each dream's episode returns (the same seeds in both)."""
        d, p = np.asarray(dream, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
        if d.size == 0 or p.size == 0:
            raise ValueError("a check needs at least one episode in each dream")
        return cls(
            int(step), float(d.mean()), float(p.mean()), _standard_error(d), _standard_error(p)
        )

    def record(self) -> dict[str, float]:
        """The check as a history entry's numbers."""
        return {
            "dream": self.dream,
            "predicted_real": self.predicted,
            "dream_se": self.dream_se,
            "predicted_real_se": self.predicted_se,
        }


def _standard_error(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else 0.0


@dataclass(frozen=True)
class ExploitationAlarm:
    """An alarm: the dream score went `dream_from` → `dream_to` over the window while the
    predicted real score went `predicted_from` → `predicted_to`."""

    first: Check
    last: Check

    def message(self, unit: str = "step") -> str:
        """One line: what happened, between which checks, and what to do."""
        a, b = self.first, self.last
        return (
            f"exploitation alarm at {unit} {b.step}: since {unit} {a.step} the dream score rose "
            f"{a.dream:.2f} → {b.dream:.2f} while the predicted real score went "
            f"{a.predicted:.2f} → {b.predicted:.2f}; {ALARM_ADVICE}"
        )


@dataclass(frozen=True)
class Verdict:
    """What one `record` found: an alarm (or None) and whether the check is a new best."""

    alarm: ExploitationAlarm | None
    best_predicted: bool
    best_dream: bool


@dataclass
class ExploitationTracker:
    """Every check so far, the best by predicted real score and by dream score, and the alarm.

    >>> tracker = ExploitationTracker(AlarmConfig(window=2, noise=0.0))
    >>> tracker.record(Check(0, dream=10.0, predicted=9.0)).alarm is None
    True
    >>> verdict = tracker.record(Check(1, dream=30.0, predicted=8.0))
    >>> verdict.alarm is not None, verdict.best_predicted, verdict.best_dream
    (True, False, True)
    """

    config: AlarmConfig = field(default_factory=AlarmConfig)
    checks: list[Check] = field(default_factory=list)
    best_predicted: Check | None = None
    best_dream: Check | None = None

    def record(self, check: Check) -> Verdict:
        """Add a check; returns whether it raises the alarm and whether it is a new best."""
        self.checks.append(check)
        new_predicted = (
            self.best_predicted is None or check.predicted > self.best_predicted.predicted
        )
        new_dream = self.best_dream is None or check.dream > self.best_dream.dream
        if new_predicted:
            self.best_predicted = check
        if new_dream:
            self.best_dream = check
        return Verdict(self.alarm(), new_predicted, new_dream)

    def alarm(self) -> ExploitationAlarm | None:
        """The alarm over the last `window` checks, or None (also with fewer checks)."""
        cfg = self.config
        if len(self.checks) < cfg.window:
            return None
        first, last = self.checks[-cfg.window], self.checks[-1]
        gain = last.dream - first.dream
        noise = cfg.noise * math.hypot(first.dream_se, last.dream_se)
        rose = gain > cfg.margin and gain > noise
        followed = last.predicted - first.predicted > cfg.share * gain
        return ExploitationAlarm(first, last) if rose and not followed else None
