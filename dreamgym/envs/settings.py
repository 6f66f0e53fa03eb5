"""What a dream is run with, as one dataclass every dream constructor takes.

`DreamVectorEnv`, `DreamEnv`, the SB3 adapter, the CMA-ES population evaluator and
`evaluate_dream` all dream the same way; the settings below are validated here once, so each of
them gives the same error for the same mistake. How many envs, and how finished episodes are
reset and rendered, belong to each view and are not settings.

This module imports no torch: configs and the CLI can build settings without loading it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dreamgym.utils.hardware import check_precision
from dreamgym.utils.validate import (
    InvalidValueError,
    check_float,
    check_int,
    check_positive,
    check_probability,
    check_str,
)

if TYPE_CHECKING:
    import torch

    from dreamgym.world import World

OBS_MODES = ("zh", "z", "pixels", "zch")
"""What the dream shows: [z, h] (the paper's controller input), z, V's decoded pixels, or
[z, c, h] (M's cell state too: the input of the paper's Doom controller, its code's MODE_ZCH)."""
TERMINATION_MODES = ("sample", "threshold")
"""How M's done head ends an episode (see `DreamSettings.termination`)."""


def check_temperature(value: Any, where: str = "") -> float:
    """τ as a float; anything but a positive finite number (bools and strings too) is refused."""
    return check_positive(value, "temperature", where)  # type: ignore[return-value]


def check_max_episode_steps(value: Any, where: str = "") -> int | None:
    """An episode limit: an integer ≥ 1, or None (no limit of its own)."""
    return check_int(value, "max_episode_steps", where, minimum=1, optional=True)


def check_device(value: Any, where: str = "") -> Any:
    """A device name ("auto", "cpu", "cuda", "cuda:1") or a torch.device; no other type."""
    if type(value).__name__ == "device" and type(value).__module__.startswith("torch"):
        return value
    if not isinstance(value, str) or not value:
        raise InvalidValueError(
            f"{where + ': ' if where else ''}device must be 'auto', 'cpu' or 'cuda', got {value!r}"
        )
    return value


@dataclass(frozen=True)
class DreamSettings:
    """How to dream a world: what is observed, how z and done are sampled, where, for how long."""

    obs_mode: str = "zh"
    """Observation: "zh" = float32 [z, h], "z" = float32 z, "pixels" = V's uint8 decoding of z,
    "zch" = float32 [z, c, h] (the LSTM's cell state c too)."""
    temperature: float | None = None
    """Sampling temperature τ of M's mixture (Ha & Schmidhuber 2018, §4.5); None: the world's."""
    device: str | torch.device = "auto"
    """Torch device: "auto" (CUDA when available), "cpu" or "cuda"."""
    max_episode_steps: int | None = None
    """Truncate episodes after this many steps; None: the world's limit."""
    termination: str = "sample"
    """ "sample": done ~ Bernoulli(p) from M's done head; "threshold": done when p > done_threshold."""
    done_threshold: float = 0.5
    """The done probability above which `termination="threshold"` ends an episode."""
    precision: str = "auto"
    """M's matmuls in the dream: "float32", "bfloat16", or "auto" (bfloat16 only where the
    hardware does it natively, `dreamgym.utils.hardware.native_bf16`). The LSTM state, the
    mixture's weights and the sampling stay float32 in every case."""
    ensemble: tuple[Any, ...] = ()
    """More worlds on the same V (bundle directories, bundled names or `World`s; e.g. M trained
    with another `--seed`) stepped with the world in the one dream: each member keeps its own
    h, one member drawn per env and step gives z, the reward and done, and the members'
    disagreement d about z_{t+1} is measured every step (`dreamgym.models.mdn_kernel.
    EnsembleKernel`). The observation's h is the world's own (the first member's)."""
    uncertainty_penalty: float = 0.0
    """λ of MOPO (Yu et al. 2020): the reward is r − λ·d. Needs `ensemble`."""
    uncertainty_halt: float | None = None
    """MOReL's halt (Kidambi et al. 2020): a dream terminates where d > this. Needs `ensemble`."""

    def __post_init__(self) -> None:
        check_str(self.obs_mode, "obs_mode", choices=OBS_MODES)
        check_str(self.termination, "termination", choices=TERMINATION_MODES)
        if self.temperature is not None:
            object.__setattr__(self, "temperature", check_temperature(self.temperature))
        check_device(self.device)
        steps = check_max_episode_steps(self.max_episode_steps)
        object.__setattr__(self, "max_episode_steps", steps)
        threshold = check_probability(self.done_threshold, "done_threshold")
        object.__setattr__(self, "done_threshold", threshold)
        check_precision(self.precision)
        self._check_uncertainty()

    def _check_uncertainty(self) -> None:
        members = self.ensemble
        if isinstance(members, (str, bytes)) or not isinstance(members, (list, tuple)):
            raise InvalidValueError(
                f"ensemble must be a list of worlds (bundle directories, bundled names or "
                f"World objects), got {members!r}"
            )
        object.__setattr__(self, "ensemble", tuple(members))
        penalty = check_float(self.uncertainty_penalty, "uncertainty_penalty", low=0.0)
        object.__setattr__(self, "uncertainty_penalty", penalty)
        halt = check_float(
            self.uncertainty_halt, "uncertainty_halt", low=0.0, low_open=True, optional=True
        )
        object.__setattr__(self, "uncertainty_halt", halt)
        if not members and (penalty or halt is not None):
            raise InvalidValueError(
                "uncertainty_penalty and uncertainty_halt measure how much ensemble members "
                "disagree, and no ensemble was given: pass ensemble=[WORLD, ...] (--members), "
                "worlds trained on this world's V (`dreamgym train --vae-epochs 0 --vae-from "
                "WORLD --seed N`)"
            )

    @classmethod
    def from_arguments(cls, settings: DreamSettings | None, **keywords: Any) -> DreamSettings:
        """`settings`, or settings built from a constructor's keywords; not both.

        Constructors keep their keywords (`gym.make` passes them); a keyword that differs from
        its default next to `settings=` is ambiguous, so it is an error naming the keyword.
        """
        if settings is None:
            return cls(**keywords)
        if not isinstance(settings, DreamSettings):
            raise TypeError(f"settings must be a DreamSettings, got {type(settings).__name__}")
        given = [k for k, v in keywords.items() if not _is_default(k, v)]
        if given:
            raise ValueError(
                f"pass the dream's settings either as settings= or as keywords, not both "
                f"(got settings and {', '.join(given)}); use dataclasses.replace(settings, ...)"
            )
        return settings

    def for_world(self, world: World) -> DreamSettings:
        """These settings with the world's defaults filled in: τ None → the world's τ, no cap →
        the world's limit. The one place where "None means the world's" is resolved."""
        return self.replace(
            temperature=(
                self.temperature
                if self.temperature is not None
                else check_temperature(world.temperature)
            ),
            max_episode_steps=(
                self.max_episode_steps
                if self.max_episode_steps is not None
                else world.max_episode_steps
            ),
        )

    def replace(self, **changes: Any) -> DreamSettings:
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(DreamSettings)}


def _is_default(name: str, value: Any) -> bool:
    if name not in _DEFAULTS:
        raise TypeError(f"DreamSettings has no field {name!r}")
    default = _DEFAULTS[name]
    return value is default or (type(value) is type(default) and value == default)
