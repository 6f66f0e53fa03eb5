"""The options of `dreamgym train` and what a run in OUT must agree on to be resumed.

`TrainConfig` is the job's dataclass (the CLI makes one `--kebab-case` flag per field);
`FINGERPRINT_FIELDS` are the options that decide what is trained, so a run in OUT with other
values is refused rather than mixed (see `dreamgym.training.workspace`).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from dreamgym.models.mdnrnn import MIXTURE_KINDS, NLL_REDUCTIONS
from dreamgym.models.memory import MEMORY_KINDS
from dreamgym.models.rssm import STOCH_KINDS
from dreamgym.utils.hardware import PRECISIONS
from dreamgym.utils.options import deprecated_aliases, option
from dreamgym.utils.validate import check_output_dir

WEIGHTS_DTYPES = ("auto", "float16", "float32")
"""What `--weights-dtype` accepts: auto keeps float16 unless a held-out metric moves by over 1 %."""

RNN_SEQUENCES = ("episodes", "windows")
"""How M's batches are cut: whole episodes with the LSTM state carried, or short windows."""
NEW_RUN_DEFAULTS: dict[str, Any] = {
    "mixture": "per_dim",
    "rnn_sequences": "episodes",
    # Ours, not the paper's mean: on TakeCover (docs/experiments/doom_takecover.md, rows 3 vs 3b) the
    # per-dim mean let free-running dreams run 3-8x longer than reality; summed, 1.25-2.4x.
    "nll_reduction": "sum",
    "done_weight": 10.0,
    "rnn_lr_decay": 0.99999,
    "mask_terminal_z": True,
}
"""What an unset (None) option of M means for a new run: the paper's code (doomrnn.py)."""
LEGACY_RUN_DEFAULTS: dict[str, Any] = {
    "mixture": "shared",
    "rnn_sequences": "windows",
    "nll_reduction": "sum",
    "done_weight": 0.0,
    "rnn_lr_decay": 1.0,
    "rnn_lr_min": 1e-5,
    "mask_terminal_z": False,
}
"""What runs started before these options existed trained with (their progress.json lacks them)."""
SEQ_LEN_DEFAULTS = {"episodes": 100, "windows": 100}
"""Default --seq-len per --rnn-sequences. Episodes: 100-step chunks with the state carried, not the
paper's 1,000: 32 rows of whole episodes cut into 1,000-step chunks give M ~9 Adam steps per epoch
on 1,000 TakeCover episodes; 100-step chunks give ~90 for the same compute, and after 20 epochs the
held-out NLL/dim was 0.941 against 1.003 (z = 64, H = 256; docs/experiments/doom_takecover.md)."""

# Stage ids that seed each epoch's RNGs together with the config seed and the epoch number.
SEED_SPLIT, SEED_VAE, SEED_RNN, SEED_EVAL, SEED_REPORT = 1, 2, 3, 4, 5


VAE_PRECISIONS = PRECISIONS


@deprecated_aliases
@dataclass
class TrainConfig:
    """Options of `dreamgym train` (one `--kebab-case` flag per field)."""

    data: str | list[str] = field(
        metadata={
            "help": "dataset directory written by `dreamgym collect`, or several of the same env "
            "(e.g. random rollouts plus rollouts of the current controller: iterative training)"
        }
    )
    out: str = option(help="directory to write the world bundle into (resumes a run there)")
    vae_epochs: int = option(10, "passes of V over the training frames")
    vae_from: str | None = field(
        default=None,
        metadata={
            "help": "start V from this world's V (bundled name or directory); with --vae-epochs 0 "
            "V is kept as it is and only M is trained (iterative training on new data)"
        },
    )
    rnn_epochs: int = option(20, "passes of M over the training episodes")
    memory: str = option(
        "mdnrnn",
        "M's family: mdnrnn (the MDN-RNN of World Models) or rssm (the recurrent state-space "
        "model of PlaNet and Dreamer: a GRU state h and a stochastic state s)",
        choices=MEMORY_KINDS,
    )
    latent: int = option(32, "size of V's latent z (paper: 32 CarRacing, 64 Doom)")
    hidden: int = option(
        256,
        "M's recurrent units: the MDN-RNN's LSTM (paper: 256 CarRacing, 512 Doom), the RSSM's GRU h",
    )
    mixtures: int = option(5, "Gaussians in M's mixture over z_{t+1}")
    mixture: str | None = option(
        None,
        "per_dim: each latent dim its own mixture (the paper's code); shared: one "
        "mixture over all of z (worlds before per-dim M). Default: per_dim, or what the run "
        "in OUT used",
        choices=MIXTURE_KINDS,
    )
    kl_tolerance: float = option(0.5, "V's free bits per latent dim (paper's code: 0.5)")
    vae_batch: int = option(100, "V's batch size in frames")
    vae_lr: float = option(1e-3, "V's Adam learning rate")
    vae_precision: str = option(
        "auto",
        "V's training and encoding precision: bfloat16 autocast, float32, or auto "
        "(bfloat16 where the CPU/GPU has native bf16 math, else float32)",
        choices=VAE_PRECISIONS,
    )
    rnn_batch: int = option(32, "M's batch size in sequences")
    rnn_sequences: str | None = option(
        None,
        "episodes: rows of whole episodes back to back, cut into --seq-len chunks, "
        "LSTM state carried between chunks and zeroed at episode starts (the paper's code); "
        "windows: random --seq-len windows from h = 0 (worlds before). Default: episodes, or "
        "what the run in OUT used",
        choices=RNN_SEQUENCES,
    )
    seq_len: int | None = field(
        default=None,
        metadata={
            "help": "steps per chunk (episodes) or window (windows) of M's training; default "
            "100 (chunks: the LSTM state is carried between them), or what the run in OUT used"
        },
    )
    rnn_lr: float = option(1e-3, "M's Adam learning rate")
    rnn_lr_decay: float | None = field(
        default=None,
        metadata={
            "help": "M's learning rate per step: (lr - min) x decay^step + min (1: constant); "
            "default 0.99999 as the paper's code, or what the run in OUT used"
        },
    )
    rnn_lr_min: float = option(1e-5, "the floor M's learning rate decays towards")
    grad_clip: float = option(1.0, "M's gradient-norm clip (0: none)")
    nll_reduction: str | None = option(
        None,
        "M's NLL of z_{t+1} summed (sum) or averaged (mean, the paper's code) over z's "
        "dims; default sum (measured: docs/experiments/doom_takecover.md), or what the run in OUT used",
        choices=NLL_REDUCTIONS,
    )
    mask_terminal_z: bool | None = field(
        default=None,
        metadata={
            "help": "leave the z target after a terminated step (the env's terminal frame, e.g. "
            "ViZDoom's black screen) out of M's NLL; truncated steps keep theirs. Default on, or "
            "what the run in OUT used"
        },
    )
    done_weight: float | None = field(
        default=None,
        metadata={
            "help": "weight of done steps in M's done loss; 0: automatic (non-done/done steps, "
            "capped at 100). Default 10 (the paper's restart_factor), or what the run in OUT used"
        },
    )
    reward_weight: float = option(1.0, "weight of M's reward MSE next to its mixture NLL")
    reward_overpay: float = option(
        1.0,
        "weight of a reward M over-predicts in its reward MSE, against 1 for one it under-predicts "
        "(> 1: a dream that cannot cheaply overpay, e.g. CarRacing's tiles; 1: the symmetric MSE)",
    )
    reward_sum_weight: float = option(
        0.0,
        "weight of a return-consistency term in M's reward loss: the squared sum of each training "
        "row's reward errors over its steps, so a small bias the per-step MSE hides under noisy "
        "rewards (0.04 a step is 40 points over 1,000 steps) costs seq_len times more (0: off)",
    )
    sampled_inputs: float = option(
        0.0,
        "fraction of M's input frames replaced by its own one-step samples (parallel scheduled "
        "sampling): the dream feeds M its own z, so M learns to predict reality from them too "
        "(0: off, teacher forcing as the paper)",
    )
    reward_events: float | None = option(
        None,
        "split M's reward into events (steps whose reward exceeds this, e.g. CarRacing's new "
        "tiles), classified by their own head and paid at their mean size, and the rest, "
        "regressed (default: off, the whole reward regressed)",
        const=0.0,
    )
    stoch: str = option(
        "gaussian",
        "RSSM: its stochastic state s, a diagonal Gaussian (PlaNet) or one-hot categoricals "
        "(DreamerV2/V3)",
        choices=STOCH_KINDS,
    )
    mlp_units: int | None = option(
        None, "RSSM: units of its small MLPs (prior, posterior, z decoder, heads); default --hidden"
    )
    stoch_dim: int = option(32, "RSSM with Gaussian s: the dims of s")
    groups: int = option(16, "RSSM with categorical s: the one-hot vectors in s")
    classes: int = option(16, "RSSM with categorical s: the classes of each vector")
    free_nats: float = option(
        1.0, "RSSM: each side of the KL is clipped below at this many nats a step (DreamerV3: 1)"
    )
    kl_balance: float = option(
        0.8, "RSSM: the share of the KL's gradient that trains the prior (DreamerV2: 0.8)"
    )
    overshooting: int = option(
        0,
        "RSSM: also score priors 2 … D steps ahead of each posterior (PlaNet's latent overshooting; 0: off)",
    )
    z_means: bool = option(
        False,
        "RSSM: observe and decode V's means instead of z drawn afresh each epoch (a Gaussian s "
        "can otherwise copy V's per-frame noise)",
    )
    val_fraction: float = option(0.1, "fraction of episodes held out for the metrics")
    temperature: float = option(1.0, "the world's default sampling temperature τ")
    max_steps: int | None = option(
        None,
        "the world's episode cap, written into the bundle (default: the real env's limit)",
        aliases=("max_episode_steps",),
    )
    device: str = option("auto", "auto, cpu or cuda")
    seed: int = option(0, "seed of the split, the initial weights and every batch")
    threads: int | None = option(
        None, "torch CPU threads (default: torch's, less the cores already busy)"
    )
    weights_dtype: str = option(
        "auto",
        "bundle weights: float16, float32, or auto (float16 unless a held-out metric moves by over 1 percent)",
        choices=WEIGHTS_DTYPES,
    )
    name: str | None = option(None, "the world's name (default: the --out folder's name)")
    max_frames: int | None = option(
        None, "use at most this many frames of the dataset (quick runs)"
    )
    progress: bool = option(True, "show progress bars")


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
    "mixture",
    "rnn_sequences",
    "nll_reduction",
    "mask_terminal_z",
    "rnn_lr_decay",
    "rnn_lr_min",
    "reward_weight",
    "val_fraction",
    "seed",
    "max_frames",
)
"""Options that decide what is trained; a run in OUT with other values is refused, not mixed."""
MDN_ONLY_FIELDS = (
    "mixtures",
    "mixture",
    "rnn_sequences",
    "nll_reduction",
    "rnn_lr_decay",
    "rnn_lr_min",
)
"""The fingerprint's options that only the MDN-RNN trains with (an RSSM run records none)."""
RSSM_FIELDS = (
    "stoch",
    "mlp_units",
    "stoch_dim",
    "groups",
    "classes",
    "free_nats",
    "kl_balance",
    "overshooting",
    "z_means",
)
"""The RSSM's own options, recorded only by `--memory rssm` runs (older runs keep their
fingerprint)."""

OUT_SETTINGS_FIELDS = (
    "vae_epochs",
    "rnn_epochs",
    "temperature",
    "max_steps",
    "weights_dtype",
    "name",
)
"""Options that only shape the bundle: a finished run with the same ones is up to date."""
OUT_SETTINGS_KEYS = {"max_steps": "max_episode_steps"}
"""Bundle options recorded under their old names (so finished runs stay up to date)."""


def bundle_settings(config: TrainConfig) -> dict[str, Any]:
    """The options that only shape the bundle (recorded with it in progress.json), and M's family
    when it is not the MDN-RNN (so finished MDN-RNN runs stay up to date)."""
    settings = {OUT_SETTINGS_KEYS.get(k, k): getattr(config, k) for k in OUT_SETTINGS_FIELDS}
    if config.memory != "mdnrnn":
        settings["memory"] = config.memory
    return settings


LOSS_OPTION_FIELDS = ("reward_overpay", "reward_sum_weight", "sampled_inputs")
"""Options of M's loss added after the fingerprint was fixed: recorded only when set."""


def loss_options(config: TrainConfig, only_set: bool = False) -> dict[str, float]:
    """`train_rnn_epoch`'s keyword options of M's loss, from the config; `only_set`: just those
    that differ from their default (what a run's fingerprint records)."""
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    values = {f: getattr(config, f) for f in LOSS_OPTION_FIELDS}
    return {k: v for k, v in values.items() if v != defaults[k]} if only_set else values


MDN_ONLY_OPTIONS = (*MDN_ONLY_FIELDS, *LOSS_OPTION_FIELDS, "reward_events")
"""Every option of the MDN-RNN alone: an RSSM run refuses them when set."""


def run_options(config: TrainConfig) -> dict[str, Any]:
    """The options that decide what is trained (the fingerprint's and the provenance's core).

    An MDN-RNN run records `FINGERPRINT_FIELDS`, as runs always have; an RSSM run its memory, the
    options both families train with, and its own (`RSSM_FIELDS`).
    """
    if config.memory == "mdnrnn":
        return {f: getattr(config, f) for f in FINGERPRINT_FIELDS}
    shared = {f: getattr(config, f) for f in FINGERPRINT_FIELDS if f not in MDN_ONLY_FIELDS}
    return {"memory": config.memory, **shared, **{f: getattr(config, f) for f in RSSM_FIELDS}}


def training_record(config: TrainConfig) -> dict[str, Any]:
    """How M was trained, as the bundle's provenance records it (`run_options` and, for the
    MDN-RNN, its loss options and reward events)."""
    if config.memory != "mdnrnn":
        return run_options(config)
    return {**run_options(config), **loss_options(config), "reward_events": config.reward_events}


EpochCallback = Callable[[str, int, dict[str, Any]], None]
"""`on_epoch(stage, epoch, record)`: called after each epoch of "vae" / "rnn" is committed."""


def is_legacy_run(options: dict[str, Any] | None) -> bool:
    """Whether stored fingerprint options come from a run before per-dim M and episode training."""
    return (
        options is not None
        and "rnn_sequences" not in options
        and options.get("memory", "mdnrnn") == "mdnrnn"
    )


def resolve_run_options(config: TrainConfig, stored: dict[str, Any] | None) -> TrainConfig:
    """`config` with every unset (None) option of M made concrete.

    A new run gets the paper's settings (`NEW_RUN_DEFAULTS`); resuming a run started before these
    options existed (`stored`: its fingerprint options) gets what it trained with
    (`LEGACY_RUN_DEFAULTS`), so the same command continues it.
    A run started with other defaults than today's gets its stored values, so a changed default
    never stops the same command from resuming. An RSSM run leaves the MDN-RNN's own options
    unset (it always trains on whole episodes) and its MLPs default to `hidden` units.
    """
    defaults = LEGACY_RUN_DEFAULTS if is_legacy_run(stored) else NEW_RUN_DEFAULTS
    if stored is not None:
        defaults = {**defaults, **{k: stored[k] for k in defaults if stored.get(k) is not None}}
    if config.memory != "mdnrnn":
        defaults = {k: v for k, v in defaults.items() if k not in MDN_ONLY_FIELDS}
    values = {k: v for k, v in defaults.items() if getattr(config, k, None) is None}
    sequences = values.get("rnn_sequences", config.rnn_sequences)
    if config.seq_len is None:
        values["seq_len"] = SEQ_LEN_DEFAULTS[sequences or "episodes"]
        if stored is not None and stored.get("seq_len") is not None:
            if upgrade_stored_options(stored).get("rnn_sequences") == sequences:
                values["seq_len"] = stored["seq_len"]
    if config.memory == "rssm" and config.mlp_units is None:
        values["mlp_units"] = config.hidden
    return replace(config, **values)


def upgrade_stored_options(options: dict[str, Any]) -> dict[str, Any]:
    """Fingerprint options of an older run, completed with what it trained with (for comparing).

    Before these options existed, done_weight None meant automatic (now 0).
    """
    if not is_legacy_run(options):
        return options
    out = {**{k: v for k, v in LEGACY_RUN_DEFAULTS.items() if k in FINGERPRINT_FIELDS}, **options}
    if out.get("done_weight") is None:
        out["done_weight"] = 0.0
    return out


class TrainingStateError(ValueError):
    """OUT holds a different run, or another `dreamgym train` is writing to it."""


def check_config(config: TrainConfig) -> None:
    """Refuse impossible options (ValueError naming the flag) before any data is read."""
    data_dirs = [config.data] if isinstance(config.data, str) else list(config.data)
    check_output_dir(config.out, holds="world", inputs=[*data_dirs, config.vae_from])
    positive = ("latent", "hidden", "mixtures", "vae_batch", "rnn_batch", "seq_len")
    for name in positive:
        if getattr(config, name) is not None and int(getattr(config, name)) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(config, name)}")
    for name in ("vae_epochs", "rnn_epochs"):
        if int(getattr(config, name)) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be ≥ 0, got {getattr(config, name)}")
    if not 0.0 < config.val_fraction < 1.0:
        raise ValueError(
            f"--val-fraction must lie strictly between 0 and 1, got {config.val_fraction}"
        )
    if not config.reward_overpay > 0:
        raise ValueError(
            f"--reward-overpay must be > 0 (1: symmetric MSE), got {config.reward_overpay}"
        )
    if not config.reward_sum_weight >= 0:
        raise ValueError(
            f"--reward-sum-weight must be ≥ 0 (0: off), got {config.reward_sum_weight}"
        )
    if not 0.0 <= config.sampled_inputs <= 1.0:
        raise ValueError(
            f"--sampled-inputs must lie in [0, 1] (0: off), got {config.sampled_inputs}"
        )
    if config.done_weight is not None and not config.done_weight >= 0:
        raise ValueError(f"--done-weight must be ≥ 0 (0: automatic), got {config.done_weight}")
    choices = {
        "mixture": MIXTURE_KINDS,
        "rnn_sequences": RNN_SEQUENCES,
        "nll_reduction": NLL_REDUCTIONS,
    }
    for name, allowed in choices.items():
        value = getattr(config, name)
        if value is not None and value not in allowed:
            raise ValueError(f"--{name.replace('_', '-')} must be one of {allowed}, got {value!r}")
    if config.rnn_lr_decay is not None and not 0.0 < config.rnn_lr_decay <= 1.0:
        raise ValueError(f"--rnn-lr-decay must lie in (0, 1], got {config.rnn_lr_decay}")
    if not 0.0 <= config.rnn_lr_min <= config.rnn_lr:
        raise ValueError(
            f"--rnn-lr-min must lie in [0, --rnn-lr {config.rnn_lr}], got {config.rnn_lr_min}"
        )
    if not config.temperature > 0:
        raise ValueError(f"--temperature must be > 0, got {config.temperature}")
    if config.weights_dtype not in WEIGHTS_DTYPES:
        raise ValueError(
            f"--weights-dtype must be one of {WEIGHTS_DTYPES}, got {config.weights_dtype!r}"
        )
    if config.max_frames is not None and config.max_frames < 4:
        raise ValueError(f"--max-frames must be ≥ 4, got {config.max_frames}")
    check_memory_options(config)


def _flags(names: list[str]) -> str:
    return ", ".join("--" + n.replace("_", "-") for n in names)


def check_memory_options(config: TrainConfig) -> None:
    """Refuse an unknown memory, another family's options, and impossible RSSM options."""
    if config.memory not in MEMORY_KINDS:
        raise ValueError(f"--memory must be one of {MEMORY_KINDS}, got {config.memory!r}")
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    own, other = (
        ("rssm", RSSM_FIELDS) if config.memory == "mdnrnn" else ("mdnrnn", MDN_ONLY_OPTIONS)
    )
    wrong = [f for f in other if getattr(config, f) != defaults[f]]
    if wrong:
        raise ValueError(
            f"{_flags(wrong)} {'is an option' if len(wrong) == 1 else 'are options'} of "
            f"--memory {own}, not of --memory {config.memory}; pass --memory {own} or leave "
            f"{'it' if len(wrong) == 1 else 'them'} out"
        )
    if config.stoch not in STOCH_KINDS:
        raise ValueError(f"--stoch must be one of {STOCH_KINDS}, got {config.stoch!r}")
    for name in ("mlp_units", "stoch_dim", "groups", "classes"):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise ValueError(f"--{name.replace('_', '-')} must be an integer ≥ 1, got {value}")
    if not (math.isfinite(config.free_nats) and config.free_nats >= 0):
        raise ValueError(f"--free-nats must be a finite number ≥ 0, got {config.free_nats}")
    if not 0.0 <= config.kl_balance <= 1.0:
        raise ValueError(f"--kl-balance must lie in [0, 1], got {config.kl_balance}")
    over = config.overshooting
    if isinstance(over, bool) or int(over) != over or over < 0:
        raise ValueError(f"--overshooting must be an integer ≥ 0 (0: off), got {over}")


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
