"""What a dream is run with, as one dataclass every dream constructor takes.

`DreamVectorEnv`, `DreamEnv`, the SB3 adapter, the CMA-ES population evaluator and
`evaluate_dream` all dream the same way; the settings below are validated here once, so each of
them gives the same error for the same mistake. How many envs, and how finished episodes are
reset and rendered, belong to each view and are not settings.

This module imports no torch: configs and the CLI can build settings without loading it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dreamgym.utils.hardware import check_precision

if TYPE_CHECKING:
    import torch

OBS_MODES = ("zh", "z", "pixels", "zch")
"""What the dream shows: [z, h] (the paper's controller input), z, V's decoded pixels, or
[z, c, h] (M's cell state too: the input of the paper's Doom controller, its code's MODE_ZCH)."""
TERMINATION_MODES = ("sample", "threshold")
"""How M's done head ends an episode (see `DreamSettings.termination`)."""


def check_temperature(value: Any) -> float:
    """τ as a float; anything but a positive finite number is a ValueError."""
    try:
        tau = float(value)
    except (TypeError, ValueError):
        tau = math.nan
    if not tau > 0 or not math.isfinite(tau):
        raise ValueError(f"temperature must be a positive number, got {value}")
    return tau


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

    def __post_init__(self) -> None:
        if self.obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {self.obs_mode!r}")
        if self.termination not in TERMINATION_MODES:
            raise ValueError(
                f"termination must be one of {TERMINATION_MODES}, got {self.termination!r}"
            )
        if self.temperature is not None:
            object.__setattr__(self, "temperature", check_temperature(self.temperature))
        if self.max_episode_steps is not None:
            object.__setattr__(self, "max_episode_steps", int(self.max_episode_steps))
        object.__setattr__(self, "done_threshold", float(self.done_threshold))
        check_precision(self.precision)

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

    def replace(self, **changes: Any) -> DreamSettings:
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(DreamSettings)}


def _is_default(name: str, value: Any) -> bool:
    if name not in _DEFAULTS:
        raise TypeError(f"DreamSettings has no field {name!r}")
    default = _DEFAULTS[name]
    return value is default or (type(value) is type(default) and value == default)
