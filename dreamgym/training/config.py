"""The options of `dreamgym train` and what a run in OUT must agree on to be resumed.

`TrainConfig` is the job's dataclass (the CLI makes one `--kebab-case` flag per field);
`FINGERPRINT_FIELDS` are the options that decide what is trained, so a run in OUT with other
values is refused rather than mixed (see `dreamgym.training.workspace`).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

WEIGHTS_DTYPES = ("auto", "float16", "float32")
"""What `--weights-dtype` accepts: auto keeps float16 unless a held-out metric moves by over 1 %."""

# Stage ids that seed each epoch's RNGs together with the config seed and the epoch number.
SEED_SPLIT, SEED_VAE, SEED_RNN, SEED_EVAL, SEED_REPORT = 1, 2, 3, 4, 5


@dataclass
class TrainConfig:
    """Options of `dreamgym train` (one `--kebab-case` flag per field)."""

    data: str | list[str] = field(
        metadata={
            "help": "dataset directory written by `dreamgym collect`, or several of the same env "
            "(e.g. random rollouts plus rollouts of the current controller: iterative training)"
        }
    )
    out: str = field(
        metadata={"help": "directory to write the world bundle into (resumes a run there)"}
    )
    vae_epochs: int = field(default=10, metadata={"help": "passes of V over the training frames"})
    vae_from: str | None = field(
        default=None,
        metadata={
            "help": "start V from this world's V (bundled name or directory); with --vae-epochs 0 "
            "V is kept as it is and only M is trained (iterative training on new data)"
        },
    )
    rnn_epochs: int = field(default=20, metadata={"help": "passes of M over the training episodes"})
    latent: int = field(
        default=32, metadata={"help": "size of V's latent z (paper: 32 CarRacing, 64 Doom)"}
    )
    hidden: int = field(
        default=256, metadata={"help": "M's LSTM units (paper: 256 CarRacing, 512 Doom)"}
    )
    mixtures: int = field(default=5, metadata={"help": "Gaussians in M's mixture over z_{t+1}"})
    kl_tolerance: float = field(
        default=0.5, metadata={"help": "V's free bits per latent dim (paper's code: 0.5)"}
    )
    vae_batch: int = field(default=100, metadata={"help": "V's batch size in frames"})
    vae_lr: float = field(default=1e-3, metadata={"help": "V's Adam learning rate"})
    rnn_batch: int = field(default=32, metadata={"help": "M's batch size in sequences"})
    seq_len: int = field(
        default=100,
        metadata={
            "help": "length of M's training sequences (short episodes are padded and masked)"
        },
    )
    rnn_lr: float = field(default=1e-3, metadata={"help": "M's Adam learning rate"})
    grad_clip: float = field(default=1.0, metadata={"help": "M's gradient-norm clip (0: none)"})
    done_weight: float | None = field(
        default=None,
        metadata={
            "help": "weight of done steps in M's done loss (default: non-done/done steps, capped at 100)"
        },
    )
    reward_weight: float = field(
        default=1.0, metadata={"help": "weight of M's reward MSE next to its mixture NLL"}
    )
    val_fraction: float = field(
        default=0.1, metadata={"help": "fraction of episodes held out for the metrics"}
    )
    temperature: float = field(
        default=1.0, metadata={"help": "the world's default sampling temperature τ"}
    )
    max_episode_steps: int | None = field(
        default=None, metadata={"help": "dream truncation (default: the real env's limit)"}
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    seed: int = field(
        default=0, metadata={"help": "seed of the split, the initial weights and every batch"}
    )
    threads: int | None = field(
        default=None,
        metadata={"help": "torch CPU threads (default: torch's, less the cores already busy)"},
    )
    weights_dtype: str = field(
        default="auto",
        metadata={
            "help": "bundle weights: float16, float32, or auto (float16 unless a held-out metric moves by over 1 percent)",
            "choices": WEIGHTS_DTYPES,
        },
    )
    name: str | None = field(
        default=None, metadata={"help": "the world's name (default: the --out folder's name)"}
    )
    max_frames: int | None = field(
        default=None, metadata={"help": "use at most this many frames of the dataset (quick runs)"}
    )
    progress: bool = field(default=True, metadata={"help": "show progress bars"})


FINGERPRINT_FIELDS = (
    "latent",
    "hidden",
    "mixtures",
    "kl_tolerance",
    "vae_batch",
    "vae_lr",
    "rnn_batch",
    "seq_len",
    "rnn_lr",
    "grad_clip",
    "done_weight",
    "reward_weight",
    "val_fraction",
    "seed",
    "max_frames",
)
"""Options that decide what is trained; a run in OUT with other values is refused, not mixed."""

OUT_SETTINGS_FIELDS = (
    "vae_epochs",
    "rnn_epochs",
    "temperature",
    "max_episode_steps",
    "weights_dtype",
    "name",
)
"""Options that only shape the bundle: a finished run with the same ones is up to date."""

EpochCallback = Callable[[str, int, dict[str, Any]], None]
"""`on_epoch(stage, epoch, record)`: called after each epoch of "vae" / "rnn" is committed."""


class TrainingStateError(ValueError):
    """OUT holds a different run, or another `dreamgym train` is writing to it."""


def check_config(config: TrainConfig) -> None:
    """Refuse impossible options (ValueError naming the flag) before any data is read."""
    positive = ("latent", "hidden", "mixtures", "vae_batch", "rnn_batch", "seq_len")
    for name in positive:
        if int(getattr(config, name)) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(config, name)}")
    for name in ("vae_epochs", "rnn_epochs"):
        if int(getattr(config, name)) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be ≥ 0, got {getattr(config, name)}")
    if not 0.0 < config.val_fraction < 1.0:
        raise ValueError(
            f"--val-fraction must lie strictly between 0 and 1, got {config.val_fraction}"
        )
    if config.done_weight is not None and not config.done_weight > 0:
        raise ValueError(f"--done-weight must be > 0, got {config.done_weight}")
    if not config.temperature > 0:
        raise ValueError(f"--temperature must be > 0, got {config.temperature}")
    if config.weights_dtype not in WEIGHTS_DTYPES:
        raise ValueError(
            f"--weights-dtype must be one of {WEIGHTS_DTYPES}, got {config.weights_dtype!r}"
        )
    if config.max_frames is not None and config.max_frames < 4:
        raise ValueError(f"--max-frames must be ≥ 4, got {config.max_frames}")


def command_line(config: TrainConfig) -> str:
    """The `dreamgym train` command that reproduces `config` (defaults left out)."""
    parts = ["dreamgym", "train"]
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name in ("data", "out") or value != f.default:
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                parts.append(flag if value else "--no-" + f.name.replace("_", "-"))
            elif isinstance(value, (list, tuple)):
                parts += [flag, *map(str, value)]
            else:
                parts += [flag, str(value)]
    return shlex.join(parts)
