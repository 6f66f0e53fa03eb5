"""Option groups that several jobs share, composed into each job's config: one door per concept.

Every job that runs a dream takes the same dream options (`DreamRunOptions`: τ, termination,
done threshold, episode cap, device, precision; `DreamOptions`: those and the world), so a
controller trained under threshold termination can be evaluated, gapped and diagnosed under it;
every job that plays real episodes takes the same `RealRunOptions` (episodes, seed, workers,
Ray, episode cap). One name per concept: the episode cap is `max_steps` (`--max-steps`) in every
job, its old spelling `max_episode_steps` a deprecated alias; the dream's constructors keep
Gymnasium's `max_episode_steps`, which `dream_settings` maps it to. A job's config inherits the groups it needs
(`class GapConfig(DreamAndRealOptions)`), so its fields stay flat: one `--kebab-case` flag each
(`dreamgym.cli`), and `GapConfig(world=..., temperature=...)` in Python. A job may redeclare a
field to give it its own default or help; the group's validation still applies.

The values are checked once, here, when a config is built: a wrong one is a one-line
`ValueError` naming its `--option`. Torch-free, so the CLI builds configs without loading it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dreamgym.envs.settings import TERMINATION_MODES, DreamSettings
from dreamgym.runners import LOCAL
from dreamgym.utils import validate
from dreamgym.utils.hardware import PRECISION_HELP, PRECISIONS
from dreamgym.utils.options import deprecated_aliases, option

if TYPE_CHECKING:
    from dreamgym.world import World

MAX_STEPS_ALIASES = ("max_episode_steps",)
"""`--max-episode-steps` (sb3's and train's old spelling) still works, with a warning."""
RAY_HELP = (
    "run the real episodes as Ray tasks: --ray alone starts or joins a local Ray, "
    '--ray auto or --ray HOST:PORT joins a cluster (pip install "dreamgym[ray]")'
)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_int(name: str, value: Any, minimum: int | None = None, optional: bool = False) -> Any:
    """`value` as an int ≥ `minimum` (None allowed when `optional`); else a one-line ValueError
    naming its `--option` (`utils.validate.check_int`: bools and floats are not integers)."""
    return validate.check_int(value, _flag(name), minimum=minimum, optional=optional)


def check_float(
    name: str, value: Any, low: float | None = None, high: float | None = None, above: bool = False
) -> float:
    """`value` as a finite float in [low, high] ((low, high] with `above`); else a ValueError
    naming its `--option` (`utils.validate.check_float`: no bools, strings, NaN or inf)."""
    return validate.check_float(value, _flag(name), low=low, high=high, low_open=above)  # type: ignore[return-value]


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """`value` if it is one of `choices`; else a one-line ValueError naming them."""
    if value not in choices:
        raise ValueError(f"{_flag(name)} must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_text(name: str, value: Any, optional: bool = False) -> Any:
    """A non-empty string (None allowed when `optional`); else a one-line ValueError."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{_flag(name)} must be a non-empty string, got {value!r}")
    return value


class _Group:
    """The end of the cooperative `__post_init__` chain of the groups."""

    def __post_init__(self) -> None:
        pass


def _max_steps() -> Any:
    return option(
        None,
        "episode cap (default: the world's limit in the dream, the env's in reality)",
        aliases=MAX_STEPS_ALIASES,
    )


@dataclass(kw_only=True)
class _WorldOption(_Group):
    """Which world: its own group, so that it comes first in every dream command's help."""

    world: str = option(help="world: a bundled name or a bundle directory")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_text("world", self.world)


@deprecated_aliases
@dataclass(kw_only=True)
class DreamRunOptions(_Group):
    """How to dream, whatever the world (→ `DreamSettings`): τ, termination, cap, device,
    precision. `obs_mode` is not here: what the dream shows is decided by the policy that reads
    it (a controller's or agent's file), or by the job that trains one (`--obs-mode`)."""

    temperature: float | None = option(None, "dream temperature τ (default: the world's)")
    termination: str = option(
        "sample",
        "how M's done head ends a dream: sample done ~ Bernoulli(p), or threshold: p > "
        "--done-threshold",
        choices=TERMINATION_MODES,
    )
    done_threshold: float = option(
        0.5, "the done probability above which --termination threshold ends a dream"
    )
    max_steps: int | None = _max_steps()
    device: str = option("auto", "device of the dream: auto, cpu or cuda")
    precision: str = option("auto", PRECISION_HELP, choices=PRECISIONS)
    members: list[str] = field(
        default_factory=list,
        metadata={
            "help": "an ensemble dream: more worlds on the world's V (M trained with another "
            "--seed) stepped with it, each keeping its own h; their disagreement d about the "
            "next z drives --uncertainty-penalty and --uncertainty-halt (default: none)"
        },
    )
    uncertainty_penalty: float = option(
        0.0, "MOPO's λ in an ensemble dream: reward − λ·d (needs --members)"
    )
    uncertainty_halt: float | None = option(
        None, "MOReL's halt in an ensemble dream: end a dream where d > this (needs --members)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.members = [check_text("members", m) for m in self.members]
        self.uncertainty_penalty = check_float("uncertainty_penalty", self.uncertainty_penalty, 0.0)
        if self.uncertainty_halt is not None:
            self.uncertainty_halt = check_float(
                "uncertainty_halt", self.uncertainty_halt, 0.0, above=True
            )
        if not self.members and (self.uncertainty_penalty or self.uncertainty_halt is not None):
            raise validate.InvalidValueError(
                "--uncertainty-penalty and --uncertainty-halt need an ensemble dream: add "
                "--members WORLD [WORLD ...], worlds trained on this world's V (`dreamgym train "
                "--vae-epochs 0 --vae-from WORLD --seed N`)"
            )
        if self.temperature is not None:
            self.temperature = check_float("temperature", self.temperature, 0.0, above=True)
        check_choice("termination", self.termination, TERMINATION_MODES)
        self.done_threshold = check_float("done_threshold", self.done_threshold, 0.0, 1.0)
        self.max_steps = check_int("max_steps", self.max_steps, 1, optional=True)
        if type(self.device).__name__ != "device":  # a torch.device passes as it is
            check_text("device", self.device)
        check_choice("precision", self.precision, PRECISIONS)

    def dream_values(self) -> dict[str, Any]:
        """These options as keywords, to hand them on to another job's config."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(DreamRunOptions)}

    def dream_settings(self, obs_mode: str = "zh", world: World | None = None) -> DreamSettings:
        """These options as the `DreamSettings` a dream constructor takes, showing `obs_mode`;
        with `world`, its defaults filled in (`DreamSettings.for_world`: τ and the cap)."""
        values: dict[str, Any] = {
            "obs_mode": obs_mode,
            "temperature": self.temperature,
            "device": self.device,
            "max_episode_steps": self.max_steps,
            "termination": self.termination,
            "done_threshold": self.done_threshold,
            **self.uncertainty_settings(),
        }
        settings = DreamSettings(**values, **precision_setting(self.precision))
        return settings if world is None else settings.for_world(world)

    def uncertainty_settings(self) -> dict[str, Any]:
        """The ensemble dream's `DreamSettings` keywords (members, λ, halt)."""
        return {
            "ensemble": tuple(self.members),
            "uncertainty_penalty": self.uncertainty_penalty,
            "uncertainty_halt": self.uncertainty_halt,
        }

    def dream_record(self, world: World) -> dict[str, Any]:
        """What a report records of the dream: τ (resolved), termination and its threshold
        (None under sampling, where it does nothing), the precision, and an ensemble dream's
        members, λ and halt (only when there are members)."""
        record = {
            "temperature": self.dream_settings(world=world).temperature,
            "termination": self.termination,
            "done_threshold": self.done_threshold if self.termination == "threshold" else None,
            "precision": self.precision,
        }
        if self.members:
            record.update(
                members=list(self.members),
                uncertainty_penalty=self.uncertainty_penalty,
                uncertainty_halt=self.uncertainty_halt,
            )
        return record


@deprecated_aliases
@dataclass(kw_only=True)
class DreamOptions(DreamRunOptions, _WorldOption):
    """How a job dreams which world: the options of every command that runs a dream of one."""


def precision_setting(precision: str) -> dict[str, str]:
    """`{"precision": precision}` for `DreamSettings(...)`, checked (one line naming the choices)."""
    check_choice("precision", precision, PRECISIONS)
    return {"precision": precision}


def threshold_note(record: dict[str, Any] | None) -> str:
    """What a report's table header says of its dream beside τ (`dream_record`): ", done at
    p > T" under threshold termination, and an ensemble dream's size, λ and halt."""
    note = ""
    if record and record.get("termination") == "threshold":
        note += f", done at p > {record['done_threshold']:g}"
    if record and record.get("members"):
        note += f", ensemble of {1 + len(record['members'])}"
        if record.get("uncertainty_penalty"):
            note += f", r − {record['uncertainty_penalty']:g}·d"
        if record.get("uncertainty_halt") is not None:
            note += f", halt at d > {record['uncertainty_halt']:g}"
    return note


@deprecated_aliases
@dataclass(kw_only=True)
class RealRunOptions(_Group):
    """How a job plays real episodes: how many, from which seed, where, and for how long."""

    episodes: int = option(16, "episodes to run")
    seed: int = option(0, "seed (real episode i uses seed + i)")
    workers: int | None = option(None, "real-env worker processes (default: CPU count)")
    ray: str | None = field(
        default=None, metadata={"help": RAY_HELP, "const": LOCAL, "metavar": "ADDRESS"}
    )
    max_steps: int | None = _max_steps()

    def __post_init__(self) -> None:
        super().__post_init__()
        self.episodes = check_int("episodes", self.episodes, 1)
        self.seed = check_int("seed", self.seed, 0)
        self.workers = check_int("workers", self.workers, 1, optional=True)
        self.ray = check_text("ray", self.ray, optional=True)
        self.max_steps = check_int("max_steps", self.max_steps, 1, optional=True)


@deprecated_aliases
@dataclass(kw_only=True)
class DreamAndRealOptions(RealRunOptions, DreamOptions):
    """Both groups: the jobs that run a policy in the dream and in reality (evaluate, gap,
    diagnose). One `max_steps` caps both, one `seed` seeds both."""


ALARM_PENALTY = 1.0
"""The alarm dream's default λ: d is in z's units (each dim of z ≈ N(0, 1)), so a disagreement
of one standard deviation costs one reward unit per step."""
ALARM_EPISODES = 32


@dataclass(kw_only=True)
class AlarmOptions(_Group):
    """The exploitation alarm (`docs/exploitation-alarm.md`): every `alarm_every` generations or
    steps, score the policy in the plain dream and in the uncertainty-aware dream (the world and
    `alarm_members`, reward − λ·d, halted where d > h) on fixed seeds; warn when the first rises
    while the second does not; keep the best by each."""

    alarm_every: int = option(
        0, "every K generations run the exploitation alarm: both best controllers kept (0: off)"
    )
    alarm_members: list[str] = field(
        default_factory=list,
        metadata={
            "help": "the alarm's ensemble: worlds on the world's V (M trained with another "
            "--seed) whose disagreement d marks what the world cannot know (default: --members)"
        },
    )
    alarm_penalty: float = option(
        ALARM_PENALTY, "λ of the alarm's dream: reward − λ·d, the predicted real score's penalty"
    )
    alarm_halt: float | None = option(None, "end an alarm dream where d > this (default: never)")
    alarm_episodes: int = option(ALARM_EPISODES, "episodes per dream per check (fixed seeds)")
    alarm_window: int = option(3, "checks over which a rising dream score raises the alarm (≥ 2)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.alarm_every = check_int("alarm_every", self.alarm_every, 0)
        self.alarm_members = [check_text("alarm_members", m) for m in self.alarm_members]
        self.alarm_penalty = check_float("alarm_penalty", self.alarm_penalty, 0.0)
        if self.alarm_halt is not None:
            self.alarm_halt = check_float("alarm_halt", self.alarm_halt, 0.0, above=True)
        self.alarm_episodes = check_int("alarm_episodes", self.alarm_episodes, 1)
        self.alarm_window = check_int("alarm_window", self.alarm_window, 2)
        if self.alarm_every and not self.alarm_worlds():
            raise validate.InvalidValueError(
                "--alarm-every needs an ensemble to predict the real score: add --alarm-members "
                "WORLD [WORLD ...] (or --members), worlds trained on this world's V (`dreamgym "
                "train --vae-epochs 0 --vae-from WORLD --seed N`)"
            )

    def alarm_worlds(self) -> list[str]:
        """The alarm's ensemble members: `alarm_members`, else the dream's `members`."""
        return list(self.alarm_members or getattr(self, "members", []))

    def alarm_settings(self) -> dict[str, Any]:
        """The alarm dream's `DreamSettings` keywords (members, λ, halt)."""
        return {
            "ensemble": tuple(self.alarm_worlds()),
            "uncertainty_penalty": self.alarm_penalty,
            "uncertainty_halt": self.alarm_halt,
        }

    def alarm_record(self) -> dict[str, Any]:
        """What a run records of its alarm (and what a resumed run must share): None when off."""
        if not self.alarm_every:
            return {}
        return {
            "alarm": {
                "every": self.alarm_every,
                "members": self.alarm_worlds(),
                "penalty": float(self.alarm_penalty),
                "halt": self.alarm_halt,
                "episodes": self.alarm_episodes,
            }
        }
