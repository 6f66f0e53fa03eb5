"""`dreamgym train`: learn V, then M, from a collected dataset, and write a world bundle.

The three stages of World Models (Ha & Schmidhuber 2018, §3 and appendix A):

1. **V** — the ConvVAE is trained on frames of the training episodes (reconstruction + KL with
   free bits, `vae_loss`). Frames stay one uint8 array in memory (12 KB a frame); a batch becomes
   float only when it is formed, so 500k frames need ~6 GB and no float copy of the dataset.
2. **Encode** — every frame is encoded once into (mu, logvar), cached in `OUT/.train/`, so that M
   trains on a fresh z ~ N(mu, σ²) every epoch without running V again (the paper's trick).
3. **M** — the MDN-RNN learns p(z_{t+1} | z_t, a_t, h_t), the reward r_t and done_t =
   terminated_t (truncation is not death) from windows of `seq_len` steps (short episodes padded
   and masked). Rare deaths are up-weighted in the done loss (`done_weight`, automatic by default);
   the weight is stored in the bundle and the dream divides it out of the odds again.

Then held-out metrics on whole validation *episodes* (V's reconstruction error, M's NLL, reward
error and done precision/recall, each next to a trivial baseline), the bundle (`World.save`), a
`MODEL_CARD.md` and two report images in `OUT/report/`.

Resuming: every epoch ends with a checkpoint (`OUT/.train/<stage>_epochNNNN.safetensors`: model
and optimizer tensors) committed by an atomic rewrite of `OUT/.train/progress.json` (which also
holds the optimizer's non-tensor state and the loss history). Re-running the same command after an
interruption — Ctrl-C or kill -9 — continues after the last committed epoch; finished stages are
skipped. Each epoch's sampling is seeded by (seed, stage, epoch), so a resumed run draws the same
batches as an uninterrupted one. Raising `--vae-epochs` / `--rnn-epochs` later trains further (the
learning rate is constant, as in the paper; more V epochs mean encoding again and a fresh M); any
other change of options or data is refused, and `OUT/.train` can be deleted once the world is final.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dreamgym.data import (
    CorruptShardError,
    DatasetMismatchError,
    DatasetReport,
    load_episode,
    load_manifest,
)
from dreamgym.models.mdnrnn import MDNRNN, MDNRNNConfig, mdn_log_prob, sample_mdn
from dreamgym.models.vae import ConvVAE, VAEConfig, vae_loss
from dreamgym.preprocessing import FramePreprocessing
from dreamgym.spaces import action_input_dim, action_space_from_dict, encode_actions_np
from dreamgym.world import (
    CONFIG_FILE,
    MODEL_CARD_FILE,
    VAE_FILE,
    World,
    atomic_save_safetensors,
    atomic_write_bytes,
    atomic_write_json,
)

try:  # POSIX only; without it two trainings into one folder are not prevented
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

WORK_DIR = ".train"
"""Checkpoints, the latent cache and progress.json live in OUT/.train (deletable when done)."""
PROGRESS_FILE = "progress.json"
LATENTS_FILE = "latents.safetensors"
LOCK_FILE = ".lock"
REPORT_DIR = "report"
PROGRESS_SCHEMA = 1
DONE_WEIGHT_CAP = 100.0
"""Automatic done weight = non-done steps / done steps, capped here (rare deaths, not infinite)."""
MAX_INITIAL_LATENTS = 1000
"""At most this many real first frames seed the bundle's reset bank."""
VAL_FRAMES_MAX = 4096
"""V's held-out metrics use at most this many validation frames (evenly spaced)."""
EPOCH_VAL_FRAMES = 512
"""V's per-epoch validation MSE (progress bar, history) uses this many frames."""
ENCODE_BATCH = 512
EVAL_EPISODES_PER_BATCH = 16
REPORT_COLUMNS = 12
REPORT_SCALE = 2
"""Report images show 64×64 frames at 128×128."""
FLOAT16_TOLERANCE = 0.01
"""weights_dtype="auto" keeps float16 if no held-out metric moves by more than 1 % (relative)."""
# Stage ids that seed each epoch's RNGs together with the config seed and the epoch number.
_SEED_SPLIT, _SEED_VAE, _SEED_RNN, _SEED_EVAL, _SEED_REPORT = 1, 2, 3, 4, 5
_WEIGHTS_DTYPES = ("auto", "float16", "float32")


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
            "choices": _WEIGHTS_DTYPES,
        },
    )
    name: str | None = field(
        default=None, metadata={"help": "the world's name (default: the --out folder's name)"}
    )
    max_frames: int | None = field(
        default=None, metadata={"help": "use at most this many frames of the dataset (quick runs)"}
    )
    progress: bool = field(default=True, metadata={"help": "show progress bars"})


# Options that decide what is trained; a run in OUT with other values is refused, not mixed.
_FINGERPRINT_FIELDS = (
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

EpochCallback = Callable[[str, int, dict[str, Any]], None]
"""`on_epoch(stage, epoch, record)`: called after each epoch of "vae" / "rnn" is committed."""


class TrainingStateError(ValueError):
    """OUT holds a different run, or another `dreamgym train` is writing to it."""


# ------------------------------------------------------------------------------------------------
# The dataset in memory


def episode_starts(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first step, first frame) of each episode when episodes of `lengths` steps are concatenated."""
    step_start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return step_start, step_start + np.arange(len(lengths), dtype=np.int64)


@dataclass
class EpisodeData:
    """Selected episodes, concatenated: frames stay uint8, per-step arrays are M's inputs.

    Episode e owns frames `frame_start[e] : frame_start[e] + lengths[e] + 1` and steps
    `step_start[e] : step_start[e] + lengths[e]`.
    """

    entries: list[dict[str, Any]]
    lengths: np.ndarray  # (E,) int64 steps per episode
    frames: np.ndarray  # (F, 64, 64, 3) uint8, F = sum(lengths + 1)
    actions: np.ndarray  # (S, A) float32, encoded for M (one-hot for Discrete)
    rewards: np.ndarray  # (S,) float32
    dones: np.ndarray  # (S,) bool: terminated (truncation is not death)

    def __post_init__(self) -> None:
        self.step_start, self.frame_start = episode_starts(self.lengths)

    def frame_indices(self, episodes: np.ndarray) -> np.ndarray:
        """Global frame indices of the given episodes (all their frames)."""
        fs = self.frame_start
        return np.concatenate(
            [np.arange(fs[e], fs[e] + self.lengths[e] + 1) for e in episodes]
        ).astype(np.int64)

    def step_indices(self, episodes: np.ndarray) -> np.ndarray:
        ss = self.step_start
        return np.concatenate([np.arange(ss[e], ss[e] + self.lengths[e]) for e in episodes]).astype(
            np.int64
        )


def select_episodes(
    manifest: dict[str, Any], max_frames: int | None
) -> list[tuple[dict[str, Any], int]]:
    """(manifest entry, steps used) in index order, cut to `max_frames` frames in total."""
    selected = []
    budget = max_frames if max_frames is not None else math.inf
    for entry in sorted(manifest["episodes"], key=lambda e: e["index"]):
        steps = int(entry["steps"])
        if steps < 1 or budget < 2:
            continue
        steps = int(min(steps, budget - 1))
        selected.append((entry, steps))
        budget -= steps + 1
    return selected


def data_dirs(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """`--data` as a list of dataset directories (one or several), without duplicates."""
    dirs = [str(data)] if isinstance(data, (str, os.PathLike)) else [str(d) for d in data]
    if not dirs:
        raise ValueError("--data needs at least one dataset directory")
    seen = [str(Path(d).resolve()) for d in dirs]
    if len(set(seen)) != len(seen):
        raise ValueError(f"--data lists a dataset twice ({' '.join(dirs)}); give each once")
    return dirs


# What must agree between datasets trained on together (their policy, seed and limits may differ).
_SHARED_MANIFEST_KEYS = ("env_id", "preprocessing", "action_space", "frame_shape")


def load_manifests(dirs: list[str]) -> list[dict[str, Any]]:
    """Each dataset's manifest; DatasetMismatchError if they do not record the same env."""
    manifests = [load_manifest(d) for d in dirs]
    for d, m in zip(dirs[1:], manifests[1:], strict=True):
        for key in _SHARED_MANIFEST_KEYS:
            if m.get(key) != manifests[0].get(key):
                raise DatasetMismatchError(
                    f"--data {d} was collected with {key}={m.get(key)!r}, but {dirs[0]} with "
                    f"{manifests[0].get(key)!r}; a world is trained on datasets of one env and "
                    "one preprocessing — collect the new rollouts with the same --env"
                )
    return manifests


def select_from_datasets(
    dirs: list[str], manifests: list[dict[str, Any]], max_frames: int | None
) -> list[tuple[dict[str, Any], int]]:
    """`select_episodes` over several datasets in order; each entry records its `data_dir`."""
    selected: list[tuple[dict[str, Any], int]] = []
    budget = max_frames
    for d, manifest in zip(dirs, manifests, strict=True):
        if budget is not None and budget < 2:
            break
        part = select_episodes(manifest, budget)
        selected += [({**entry, "data_dir": d}, steps) for entry, steps in part]
        if budget is not None:
            budget -= sum(steps + 1 for _, steps in part)
    return selected


def split_episodes(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) episode positions: a seeded random `val_fraction` of the episodes is held out."""
    n_val = max(1, int(round(n * val_fraction)))
    perm = np.random.default_rng([seed, _SEED_SPLIT]).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def load_episodes(
    data_dir: str | os.PathLike[str],
    manifest: dict[str, Any],
    selected: list[tuple[dict[str, Any], int]],
    progress: bool = True,
) -> EpisodeData:
    """Read and verify every selected shard (sha256, shapes) into one uint8 frame array.

    Every shard is checked before anything is trained; all bad ones are listed in one
    CorruptShardError (naming each file and the fix), none is used.
    """
    from tqdm.auto import tqdm

    space = action_space_from_dict(manifest["action_space"])
    lengths = np.array([s for _, s in selected], dtype=np.int64)
    n_frames, n_steps = int((lengths + 1).sum()), int(lengths.sum())
    frame_shape = tuple(manifest["frame_shape"])
    frames = np.empty((n_frames, *frame_shape), dtype=np.uint8)
    actions = np.empty((n_steps, action_input_dim(space)), dtype=np.float32)
    rewards = np.empty(n_steps, dtype=np.float32)
    dones = np.empty(n_steps, dtype=bool)
    problems: list[str] = []
    f0 = s0 = 0
    bar = tqdm(selected, desc="load data", unit="ep", disable=not progress, dynamic_ncols=True)
    for entry, steps in bar:
        try:
            arrays = load_episode(
                entry.get("data_dir", data_dir), entry, verify=True, manifest=manifest
            )
        except CorruptShardError as e:
            problems.append(str(e))
        else:
            frames[f0 : f0 + steps + 1] = arrays["frames"][: steps + 1]
            actions[s0 : s0 + steps] = encode_actions_np(arrays["actions"][:steps], space)
            rewards[s0 : s0 + steps] = arrays["rewards"][:steps]
            dones[s0 : s0 + steps] = arrays["terminated"][:steps]
        f0 += steps + 1
        s0 += steps
    if problems:
        DatasetReport(
            data_dir=str(data_dir),
            env_id=manifest["env_id"],
            episodes=len(selected),
            steps=n_steps,
            frames=n_frames,
            mean_return=float("nan"),
            problems=problems,
        ).raise_if_problems()
    return EpisodeData([e for e, _ in selected], lengths, frames, actions, rewards, dones)


# ------------------------------------------------------------------------------------------------
# V


def frames_to_batch(frames: np.ndarray, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 frames[idx] → float (B, 3, 64, 64) in [0, 1].

    The NHWC uint8 batch is permuted, not copied, so the float tensor is channels-last in memory
    (what the CPU convolutions prefer) and the conversion is a single pass.
    """
    x = torch.from_numpy(frames[idx]).to(device, non_blocking=True)
    return x.permute(0, 3, 1, 2).float().mul_(1.0 / 255.0)


def prepare_vae_for_training(vae: ConvVAE, device: torch.device) -> ConvVAE:
    """Move V to `device`; on CPU use channels-last weights (measured faster, see benchmarks/).

    The first decoder weight stays contiguous: `ConvVAE.decode` uses it as a matmul matrix.
    """
    vae.to(device)
    if device.type == "cpu":
        vae.to(memory_format=torch.channels_last)
        first = vae.decoder[0]
        first.weight.data = first.weight.data.contiguous()
    return vae


def make_adam(params: Iterator[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch has it (one pass over all parameters)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch, or a device without fused Adam
        return torch.optim.Adam(params, lr=lr)


def train_vae_epoch(
    vae: ConvVAE,
    optimizer: torch.optim.Optimizer,
    frames: np.ndarray,
    train_idx: np.ndarray,
    batch: int,
    seed: int,
    epoch: int,
    device: torch.device,
    bar: Any = None,
) -> dict[str, float]:
    """One pass of V over `frames[train_idx]` in a seeded random order; mean losses per frame."""
    rng = np.random.default_rng([seed, _SEED_VAE, epoch])
    gen = torch.Generator(device=device).manual_seed(int(rng.integers(2**62)))
    perm = rng.permutation(train_idx)
    vae.train()
    totals = torch.zeros(3, device=device)
    start = time.perf_counter()
    n_batches = 0
    for i in range(0, len(perm), batch):
        idx = np.sort(perm[i : i + batch])  # sorted: the gather reads memory in order
        x = frames_to_batch(frames, idx, device)
        recon, mu, logvar = vae(x, generator=gen)
        loss, rec, kl = vae_loss(recon, x, mu, logvar, vae.config.kl_tolerance)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        totals += torch.stack([loss.detach(), rec.detach(), kl.detach()]) * len(idx)
        n_batches += 1
        if bar is not None:
            bar.update(1)
            if n_batches % 10 == 1:
                bar.set_postfix(
                    loss=f"{loss.item():.1f}", recon=f"{rec.item():.1f}", kl=f"{kl.item():.2f}"
                )
    seconds = time.perf_counter() - start
    loss, rec, kl = (totals / max(len(perm), 1)).tolist()
    return {
        "loss": loss,
        "recon": rec,
        "kl": kl,
        "seconds": seconds,
        "images_per_s": len(perm) / seconds if seconds > 0 else 0.0,
    }


@torch.inference_mode()
def evaluate_vae(
    vae: ConvVAE, frames: np.ndarray, idx: np.ndarray, device: torch.device, batch: int = 256
) -> dict[str, float]:
    """Reconstruction MSE per pixel ([0, 1] scale) decoding z = mu, and the mean KL per frame."""
    vae.eval()
    sq, kl, n = 0.0, 0.0, 0
    for i in range(0, len(idx), batch):
        x = frames_to_batch(frames, idx[i : i + batch], device)
        mu, logvar = vae.encode(x)
        sq += float((vae.decode(mu) - x).pow(2).sum())
        kl += float((-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum())
        n += x.shape[0]
    return {"recon_mse": sq / max(n * x[0].numel(), 1), "kl_per_frame": kl / max(n, 1)}


def mean_frame_mse(
    frames: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, chunk: int = 256
) -> float:
    """Baseline for V: MSE per pixel of predicting every validation frame by the mean training frame.

    Works in chunks of `chunk` frames so no float copy of many frames ever exists.
    """
    sample = train_idx[np.linspace(0, len(train_idx) - 1, min(len(train_idx), 20000)).astype(int)]
    total = np.zeros(frames.shape[1:], dtype=np.float64)
    for i in range(0, len(sample), chunk):
        total += frames[sample[i : i + chunk]].sum(axis=0, dtype=np.float64)
    mean = (total / (255.0 * len(sample))).astype(np.float32)
    sq = 0.0
    for i in range(0, len(val_idx), chunk):
        diff = frames[val_idx[i : i + chunk]].astype(np.float32) * np.float32(1 / 255) - mean
        sq += float(np.square(diff, out=diff).sum(dtype=np.float64))
    return sq / (len(val_idx) * mean.size)


@torch.inference_mode()
def encode_frames(
    vae: ConvVAE, frames: np.ndarray, device: torch.device, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(mu, logvar) float32 (F, Z) of every frame, V run once per frame."""
    from tqdm.auto import tqdm

    vae.eval()
    n = frames.shape[0]
    mu = np.empty((n, vae.latent_dim), dtype=np.float32)
    logvar = np.empty_like(mu)
    for i in tqdm(
        range(0, n, ENCODE_BATCH),
        desc="encode",
        unit="batch",
        disable=not progress,
        dynamic_ncols=True,
    ):
        idx = np.arange(i, min(i + ENCODE_BATCH, n))
        m, lv = vae.encode(frames_to_batch(frames, idx, device))
        mu[idx], logvar[idx] = m.float().cpu().numpy(), lv.float().cpu().numpy()
    return mu, logvar


# ------------------------------------------------------------------------------------------------
# M


@dataclass
class LatentEpisodes:
    """What M learns from: per-frame (mu, logvar) and per-step actions, rewards, dones, on a device.

    Same layout as `EpisodeData` (episode e: frames frame_start[e] …, steps step_start[e] …).
    """

    mu: torch.Tensor  # (F, Z)
    logvar: torch.Tensor  # (F, Z)
    actions: torch.Tensor  # (S, A)
    rewards: torch.Tensor  # (S,)
    dones: torch.Tensor  # (S,) float 0/1
    lengths: np.ndarray  # (E,)

    def __post_init__(self) -> None:
        self.step_start, self.frame_start = episode_starts(self.lengths)

    @classmethod
    def from_arrays(
        cls,
        mu: np.ndarray,
        logvar: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        dones: np.ndarray,
        lengths: np.ndarray,
        device: torch.device | str = "cpu",
    ) -> LatentEpisodes:
        lengths = np.asarray(lengths, dtype=np.int64)
        if mu.shape[0] != int((lengths + 1).sum()) or actions.shape[0] != int(lengths.sum()):
            raise ValueError("latents/steps do not match the episode lengths")

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)

        return cls(t(mu), t(logvar), t(actions), t(rewards), t(dones), lengths)


def make_windows(
    lengths: np.ndarray, episodes: np.ndarray, seq_len: int, rng: np.random.Generator
) -> np.ndarray:
    """(W, 3) windows (episode, first step, steps) covering every step of `episodes` once.

    Each episode is cut into `seq_len` pieces at a random phase per epoch, so window borders move
    between epochs; the first piece is shorter (padded and masked in its batch).
    """
    out = []
    for e in episodes:
        t = int(lengths[e])
        if t < 1:
            continue
        phase = int(rng.integers(0, min(seq_len, t)))
        starts = np.arange(-phase, t, seq_len)
        t0 = np.maximum(starts, 0)
        n = np.minimum(starts + seq_len, t) - t0
        out.append(np.stack([np.full_like(t0, e), t0, n], axis=1))
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0, 3), dtype=np.int64)


def rnn_batch(
    data: LatentEpisodes, windows: np.ndarray, generator: torch.Generator
) -> tuple[torch.Tensor, ...]:
    """Padded batch for `windows`: z_in, actions, z_target, rewards, dones, mask.

    z is sampled once per frame from N(mu, σ²) (Ha & Schmidhuber 2018, §A.2), so a target z_{t+1}
    is also the next step's input.
    """
    device = data.mu.device
    ep, t0, n = windows[:, 0], windows[:, 1], windows[:, 2]
    length = int(n.max())
    steps = np.arange(length)[None]
    sidx = data.step_start[ep][:, None] + t0[:, None] + np.minimum(steps, n[:, None] - 1)
    fidx = (
        data.frame_start[ep][:, None]
        + t0[:, None]
        + np.minimum(np.arange(length + 1)[None], n[:, None])
    )
    fi = torch.from_numpy(fidx).to(device)
    si = torch.from_numpy(sidx).to(device)
    mu = data.mu[fi]
    eps = torch.randn(mu.shape, generator=generator, device=device)
    z = mu + torch.exp(0.5 * data.logvar[fi]) * eps
    mask = torch.from_numpy(steps < n[:, None]).to(device)
    return z[:, :-1], data.actions[si], z[:, 1:], data.rewards[si], data.dones[si], mask


def rnn_loss(
    rnn: MDNRNN,
    batch: tuple[torch.Tensor, ...],
    done_weight: float,
    reward_weight: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Masked mixture NLL + reward_weight × reward MSE + done BCE (positives weighted)."""
    z_in, actions, z_tgt, rewards, dones, mask = batch
    out, _ = rnn(z_in, actions)
    m = mask.float()
    denom = m.sum().clamp(min=1.0)
    nll = -(mdn_log_prob(out.logpi, out.mu, out.logsigma, z_tgt) * m).sum() / denom
    reward = ((out.reward - rewards).pow(2) * m).sum() / denom
    pos_weight = torch.tensor(done_weight, device=m.device)
    bce = F.binary_cross_entropy_with_logits(
        out.done_logit, dones, pos_weight=pos_weight, reduction="none"
    )
    done = (bce * m).sum() / denom
    total = nll + reward_weight * reward + done
    return total, {"nll": nll.detach(), "reward_mse": reward.detach(), "done_bce": done.detach()}


def auto_done_weight(dones: np.ndarray) -> float:
    """Non-done / done steps, capped at DONE_WEIGHT_CAP; 1 when no episode terminated."""
    pos = int(np.count_nonzero(dones))
    if pos == 0:
        return 1.0
    return float(min(max((dones.size - pos) / pos, 1.0), DONE_WEIGHT_CAP))


def init_rnn_heads(rnn: MDNRNN, rewards: np.ndarray, dones: np.ndarray) -> None:
    """Start the reward head at the mean reward and the done head at the (weighted) base rate.

    A head that starts at the answer a constant would give spends no epochs learning the bias
    (Karpathy's "init well" recipe); without it, a briefly trained M ends dream episodes at
    random because an untrained done head says p = 0.5.
    """
    w = rnn.config.done_pos_weight
    rate = min(max(float(np.mean(dones)) if dones.size else 0.0, 1e-4), 1.0 - 1e-4)
    with torch.no_grad():
        rnn.head.bias[-2] = float(np.mean(rewards)) if rewards.size else 0.0
        rnn.head.bias[-1] = math.log(w * rate / (1.0 - rate))


def train_rnn_epoch(
    rnn: MDNRNN,
    optimizer: torch.optim.Optimizer,
    data: LatentEpisodes,
    episodes: np.ndarray,
    seq_len: int,
    batch: int,
    done_weight: float,
    reward_weight: float,
    grad_clip: float,
    seed: int,
    epoch: int,
    bar: Any = None,
) -> dict[str, float]:
    """One pass of M over `episodes` (every step once, in windows); mean losses per step."""
    rng = np.random.default_rng([seed, _SEED_RNN, epoch])
    gen = torch.Generator(device=data.mu.device).manual_seed(int(rng.integers(2**62)))
    windows = make_windows(data.lengths, episodes, seq_len, rng)
    windows = windows[rng.permutation(len(windows))]
    rnn.train()
    sums = {"loss": 0.0, "nll": 0.0, "reward_mse": 0.0, "done_bce": 0.0}
    steps = 0
    start = time.perf_counter()
    for i in range(0, len(windows), batch):
        b = rnn_batch(data, windows[i : i + batch], gen)
        loss, parts = rnn_loss(rnn, b, done_weight, reward_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(rnn.parameters(), grad_clip)
        optimizer.step()
        n = int(b[-1].sum())
        steps += n
        sums["loss"] += float(loss.detach()) * n
        for k, v in parts.items():
            sums[k] += float(v) * n
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.2f}", nll=f"{float(parts['nll']):.2f}")
    record = {k: v / max(steps, 1) for k, v in sums.items()}
    record["seconds"] = time.perf_counter() - start
    return record


def _mean_of(fn: Callable[[torch.Tensor], torch.Tensor], idx: np.ndarray) -> np.ndarray:
    """Mean over `idx` of fn(index chunk) (rows), in float64, chunked: no copy of all rows."""
    total = None
    for i in range(0, len(idx), 65536):
        part = fn(torch.from_numpy(idx[i : i + 65536])).double().sum(dim=0)
        total = part if total is None else total + part
    return (total / max(len(idx), 1)).cpu().numpy()


def latent_stats(data: LatentEpisodes, episodes: np.ndarray) -> dict[str, np.ndarray | float]:
    """Training-set statistics for the baselines: z's mean/variance, Δz's variance, mean reward.

    z ~ N(mu, σ²) per frame, so Var z = Var mu + E σ², and E Δz² = E (Δmu)² + E σ²_t + E σ²_{t+1}.
    """
    fs, ss, lengths = data.frame_start, data.step_start, data.lengths
    fidx = np.concatenate([np.arange(fs[e], fs[e] + lengths[e] + 1) for e in episodes])
    cur = np.concatenate([np.arange(fs[e], fs[e] + lengths[e]) for e in episodes])
    sidx = np.concatenate([np.arange(ss[e], ss[e] + lengths[e]) for e in episodes])
    mu, logvar = data.mu, data.logvar

    def dev(i: torch.Tensor) -> torch.Tensor:
        return i.to(mu.device)

    z_mean = _mean_of(lambda i: mu[dev(i)], fidx)
    z_var = _mean_of(lambda i: mu[dev(i)].pow(2) + logvar[dev(i)].exp(), fidx) - z_mean**2
    dz_var = _mean_of(
        lambda i: (
            (mu[dev(i) + 1] - mu[dev(i)]).pow(2) + logvar[dev(i) + 1].exp() + logvar[dev(i)].exp()
        ),
        cur,
    )
    return {
        "z_mean": z_mean,
        "z_var": np.maximum(z_var, 1e-8),
        "dz_var": np.maximum(dz_var, 1e-8),
        "reward_mean": float(_mean_of(lambda i: data.rewards[dev(i)].unsqueeze(1), sidx)[0]),
    }


def _gaussian_nll(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return 0.5 * (((x - mean) ** 2) / var + np.log(2 * np.pi * var)).sum(axis=-1)


def done_metrics(p: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Precision / recall / F1 of `p > threshold`, ROC AUC, and the best F1 over thresholds."""
    y = y.astype(bool)
    pos, n = int(y.sum()), int(y.size)
    pred = p > threshold
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    out: dict[str, Any] = {
        "threshold": threshold,
        "positives": pos,
        "steps": n,
        "rate": pos / n if n else None,
        "predicted_positives": int(pred.sum()),
        "mean_probability": float(p.mean()) if n else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / pos if pos else None,
    }
    pr, rc = out["precision"], out["recall"]
    out["f1"] = (2 * pr * rc / (pr + rc) if pr and rc else 0.0) if pos else None
    out["auc"] = None
    out["best_f1"] = None
    out["best_threshold"] = None
    if 0 < pos < n:
        # ROC AUC = P(score of a random positive > a random negative), ties count half.
        _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
        ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
        out["auc"] = float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * (n - pos)))
        order = np.argsort(-p, kind="stable")
        ps, tps = p[order], np.cumsum(y[order])
        last = np.r_[ps[1:] != ps[:-1], True]  # the end of each run of equal scores
        k = np.arange(1, n + 1)[last]
        f1 = 2 * tps[last] / (k + pos)
        best = int(np.argmax(f1))
        out["best_f1"] = float(f1[best])
        out["best_threshold"] = float(ps[last][best])
    return out


@torch.inference_mode()
def evaluate_rnn(
    rnn: MDNRNN,
    data: LatentEpisodes,
    episodes: np.ndarray,
    stats: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """M on whole held-out episodes from h_0 = 0 (as in the dream), z sampled with a fixed seed.

    Reports the NLL of z_{t+1} per step and per latent dim next to two baselines (a static
    Gaussian fitted to the training z, and "z_{t+1} ~ N(z_t, Var Δz)"), the reward MAE next to
    predicting the training mean, and done metrics at the dream's rule p > 0.5 (weight undone).
    """
    rnn.eval()
    gen = torch.Generator(device=data.mu.device).manual_seed(
        int(np.random.default_rng([seed, _SEED_EVAL]).integers(2**62))
    )
    order = np.asarray(episodes)[np.argsort(data.lengths[episodes], kind="stable")]
    nll, static, copy, r_true, r_pred, d_true, p_done = [], [], [], [], [], [], []
    for i in range(0, len(order), EVAL_EPISODES_PER_BATCH):
        eps = order[i : i + EVAL_EPISODES_PER_BATCH]
        eps = eps[data.lengths[eps] > 0]
        if len(eps) == 0:
            continue
        windows = np.stack([eps, np.zeros_like(eps), data.lengths[eps]], axis=1)
        z_in, actions, z_tgt, rewards, dones, mask = rnn_batch(data, windows, gen)
        out, _ = rnn(z_in, actions)
        m = mask.cpu().numpy()
        zi, zt = z_in.cpu().double().numpy()[m], z_tgt.cpu().double().numpy()[m]
        nll.append(-mdn_log_prob(out.logpi, out.mu, out.logsigma, z_tgt).cpu().double().numpy()[m])
        static.append(_gaussian_nll(zt, stats["z_mean"], stats["z_var"]))
        copy.append(_gaussian_nll(zt, zi, stats["dz_var"]))
        r_true.append(rewards.cpu().double().numpy()[m])
        r_pred.append(out.reward.cpu().double().numpy()[m])
        d_true.append(dones.cpu().numpy()[m] > 0.5)
        p_done.append(rnn.done_probability(out.done_logit).cpu().double().numpy()[m])
    z_dim = data.mu.shape[1]
    nll_a, r_t, r_p = np.concatenate(nll), np.concatenate(r_true), np.concatenate(r_pred)
    steps = int(nll_a.size)
    return {
        "steps": steps,
        "nll_per_step": float(nll_a.mean()),
        "nll_per_dim": float(nll_a.mean() / z_dim),
        "baseline_static_gaussian_nll_per_dim": float(np.concatenate(static).mean() / z_dim),
        "baseline_previous_z_nll_per_dim": float(np.concatenate(copy).mean() / z_dim),
        "reward_mae": float(np.abs(r_p - r_t).mean()),
        "reward_mae_baseline_mean": float(np.abs(stats["reward_mean"] - r_t).mean()),
        "done": done_metrics(np.concatenate(p_done), np.concatenate(d_true)),
    }


# ------------------------------------------------------------------------------------------------
# The work directory: progress.json + per-epoch checkpoints


class Workspace:
    """OUT/.train: progress.json is the commit record; checkpoints are written before it."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.dir = out / WORK_DIR

    @property
    def progress_path(self) -> Path:
        return self.dir / PROGRESS_FILE

    def load_progress(self) -> dict[str, Any] | None:
        if not self.progress_path.is_file():
            return None
        try:
            return json.loads(self.progress_path.read_text())
        except json.JSONDecodeError as e:
            raise TrainingStateError(
                f"{self.progress_path} is not valid JSON ({e}); delete {self.dir} to start over"
            ) from e

    def save_progress(self, progress: dict[str, Any]) -> None:
        atomic_write_json(self.progress_path, progress)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Refuse a second `dreamgym train` writing to the same OUT at the same time."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover - Windows
            yield
            return
        fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TrainingStateError(
                    f"another dreamgym train is writing to {self.out}; wait for it or choose "
                    "another --out"
                ) from None
            yield
        finally:
            os.close(fd)

    def save_checkpoint(
        self, stage: str, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer
    ) -> dict[str, Any]:
        """Model + optimizer tensors in one safetensors file; returns the JSON half for progress."""
        tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
        state = optimizer.state_dict()
        extra: dict[str, dict[str, Any]] = {}
        for pid, st in state["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"optim.{pid}.{k}"] = v.contiguous()
                else:
                    extra.setdefault(str(pid), {})[k] = v
        name = f"{stage}_epoch{epoch:04d}.safetensors"
        atomic_save_safetensors(tensors, self.dir / name)
        return {"file": name, "param_groups": state["param_groups"], "state_extra": extra}

    def load_checkpoint(
        self, checkpoint: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
    ) -> None:
        from safetensors.torch import load_file

        path = self.dir / checkpoint["file"]
        try:
            tensors = load_file(str(path))
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            state: dict[int, dict[str, Any]] = {}
            for k, v in tensors.items():
                if k.startswith("optim."):
                    _, pid, name = k.split(".", 2)
                    state.setdefault(int(pid), {})[name] = v
            for pid, st in checkpoint.get("state_extra", {}).items():
                state.setdefault(int(pid), {}).update(st)
            optimizer.load_state_dict({"state": state, "param_groups": checkpoint["param_groups"]})
        except Exception as e:  # a missing or damaged file: name it and the fix
            raise TrainingStateError(
                f"cannot resume from checkpoint {path} ({e}); delete {self.dir} to start over"
            ) from e

    def prune(self, stage: str, keep: str | None) -> None:
        """Delete the stage's older checkpoints (after progress.json points past them)."""
        for p in self.dir.glob(f"{stage}_epoch*.safetensors"):
            if p.name != keep:
                p.unlink(missing_ok=True)


def _fingerprint(
    config: TrainConfig,
    manifest: dict[str, Any],
    selected: list[tuple[dict[str, Any], int]],
    vae_from_sha256: str | None = None,
) -> dict[str, Any]:
    h = hashlib.sha256()
    for entry, steps in selected:
        h.update(f"{entry['file']}:{entry['sha256']}:{steps};".encode())
    options = {f: getattr(config, f) for f in _FINGERPRINT_FIELDS}
    if vae_from_sha256 is not None:  # only when set, so runs without it keep their fingerprint
        options["vae_from"] = vae_from_sha256
    return {
        "options": options,
        "data": {
            "env_id": manifest["env_id"],
            "episodes": len(selected),
            "steps": int(sum(s for _, s in selected)),
            "sha256": h.hexdigest(),
        },
    }


def _check_fingerprint(ws: Workspace, old: dict[str, Any], new: dict[str, Any]) -> None:
    diffs = []
    for k, v in new["options"].items():
        if old["options"].get(k) != v:
            diffs.append(f"--{k.replace('_', '-')} {old['options'].get(k)} (this run: {v})")
    od, nd = old["data"], new["data"]
    if od != nd:
        diffs.append(
            f"data {od['env_id']}, {od['episodes']} episodes, {od['steps']} steps "
            f"(this run: {nd['env_id']}, {nd['episodes']} episodes, {nd['steps']} steps"
            f"{', other shards' if od['episodes'] == nd['episodes'] else ''})"
        )
    if diffs:
        raise TrainingStateError(
            f"{ws.out} holds a training run with other settings: {'; '.join(diffs)}. Pass the "
            f"same options and data to resume it, choose another --out, or delete {ws.dir} to "
            "start over"
        )


def _new_progress(fingerprint: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": PROGRESS_SCHEMA,
        "fingerprint": fingerprint,
        "vae": {"epochs_done": 0, "checkpoint": None, "history": [], "seconds": 0.0},
        "encode": None,
        "rnn": None,
        "metrics": None,
        "bundle": None,
    }


# ------------------------------------------------------------------------------------------------
# Reports


def _label_font() -> Any:
    from PIL import ImageFont

    return ImageFont.load_default()


def image_grid(
    rows: list[list[np.ndarray]],
    row_labels: list[str],
    col_labels: list[str] | None = None,
    scale: int = REPORT_SCALE,
) -> Any:
    """Compose uint8 HWC frames into a labelled grid (PIL image): one list of frames per row."""
    from PIL import Image, ImageDraw

    font = _label_font()
    h, w = rows[0][0].shape[:2]
    cell_h, cell_w, gap = h * scale, w * scale, 2
    label_w = 8 + max(
        ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(s, font=font) for s in row_labels
    )
    label_w = int(label_w)
    top = 16 if col_labels else 0
    n_cols = max(len(r) for r in rows)
    img = Image.new(
        "RGB",
        (label_w + n_cols * (cell_w + gap), top + len(rows) * (cell_h + gap)),
        (255, 255, 255),
    )
    draw = ImageDraw.Draw(img)
    for c, text in enumerate(col_labels or []):
        draw.text((label_w + c * (cell_w + gap) + 2, 2), text, fill=(0, 0, 0), font=font)
    for r, (frames, label) in enumerate(zip(rows, row_labels, strict=True)):
        y = top + r * (cell_h + gap)
        draw.text((4, y + cell_h // 2 - 6), label, fill=(0, 0, 0), font=font)
        for c, frame in enumerate(frames):
            tile = Image.fromarray(np.asarray(frame, dtype=np.uint8)).resize(
                (cell_w, cell_h), Image.Resampling.NEAREST
            )
            img.paste(tile, (label_w + c * (cell_w + gap), y))
    return img


@torch.inference_mode()
def save_reconstructions(vae: ConvVAE, frames: np.ndarray, val_idx: np.ndarray, path: Path) -> Path:
    """Real validation frames (top) next to V's reconstructions from z = mu (bottom)."""
    vae = vae.eval().cpu()
    pick = val_idx[np.linspace(0, len(val_idx) - 1, min(REPORT_COLUMNS, len(val_idx))).astype(int)]
    real = frames[pick]
    mu, _ = vae.encode(torch.from_numpy(real))
    recon = vae.decode_uint8(mu).numpy()
    img = image_grid([list(real), list(recon)], ["real (val)", "V(real)"])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@torch.inference_mode()
def save_dream_rollout(
    world: World,
    frames: np.ndarray,
    data: LatentEpisodes,
    episode: int,
    temperature: float,
    seed: int,
    path: Path,
) -> Path:
    """Open-loop dream from a real start with the recorded actions, next to the real frames.

    Rows: the real episode, V's reconstruction of it, M's rollout sampled at τ, and M's rollout
    following the mixture mean Σ π_k μ_k; every k-th step, ~REPORT_COLUMNS columns.
    """
    vae, rnn = world.vae.eval().cpu(), world.mdnrnn.eval().cpu()
    f0, s0 = int(data.frame_start[episode]), int(data.step_start[episode])
    steps = int(data.lengths[episode])
    every = max(1, math.ceil(steps / (REPORT_COLUMNS - 1)))
    cols = list(range(0, steps + 1, every))[:REPORT_COLUMNS]
    gen = torch.Generator().manual_seed(
        int(np.random.default_rng([seed, _SEED_REPORT]).integers(2**62))
    )
    actions = data.actions[s0 : s0 + steps].cpu()
    z0 = data.mu[f0 : f0 + 1].cpu()
    dreams = {}
    for mode in ("sample", "mean"):
        z, state, zs = z0, rnn.initial_state(1), [z0]
        for t in range(steps):
            out, state = rnn.step(z, actions[t : t + 1], state)
            if mode == "sample":
                z = sample_mdn(out.logpi, out.mu, out.logsigma, temperature, gen)
            else:
                z = (out.logpi.exp().unsqueeze(-1) * out.mu).sum(dim=1)
            zs.append(z)
        dreams[mode] = vae.decode_uint8(torch.cat(zs)[cols]).numpy()
    real = frames[f0 + np.array(cols)]
    recon = vae.decode_uint8(data.mu[f0 + np.array(cols)].cpu()).numpy()
    img = image_grid(
        [list(real), list(recon), list(dreams["sample"]), list(dreams["mean"])],
        ["real (val)", "V(real)", f"dream tau={temperature:g}", "dream mean"],
        col_labels=[f"t={t}" for t in cols],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _machine_text(m: dict[str, Any]) -> str:
    return (
        f"{m.get('cpu_count')} CPUs, torch {m.get('torch')} ({m.get('torch_threads')} threads) on "
        f"{m.get('device')}, {m.get('platform')}, Python {m.get('python')}"
    )


def model_card(config: dict[str, Any]) -> str:
    """MODEL_CARD.md of a trained world: what it is, how it was trained, how well it predicts."""
    prov = config.get("provenance", {})
    metrics = config.get("metrics", {})
    v, m = metrics.get("vae", {}), metrics.get("rnn", {})
    done = m.get("done", {})
    eps = prov.get("episodes", {})
    stages = prov.get("stages", {})

    def fmt(x: Any, spec: str = ".4g") -> str:
        return "n/a" if x is None else format(x, spec) if isinstance(x, (int, float)) else str(x)

    name = config.get("name") or config["env_id"]
    lines = [
        f"# World: {name}",
        "",
        f'A learned model of `{config["env_id"]}` (Ha & Schmidhuber 2018, "World Models"): V, a '
        f"ConvVAE with a {config['vae']['latent_dim']}-d latent, and M, an MDN-RNN with "
        f"{config['mdnrnn']['hidden_dim']} LSTM units and {config['mdnrnn']['n_mixtures']} "
        "Gaussians, trained by `dreamgym train`.",
        "",
        "```python",
        "import gymnasium as gym, dreamgym",
        f'env = gym.make("DreamEnv-v0", world="{name}")  # or the bundle directory',
        "```",
        "",
        f"- Default temperature τ: {config.get('temperature', 1.0)}; dream episodes are truncated "
        f"at {config.get('max_episode_steps')} steps.",
        f"- Done weight in M's loss: {fmt(config['mdnrnn'].get('done_pos_weight'))} (undone when "
        "the dream samples termination).",
        f"- Weights stored as {config.get('weights_dtype', 'float32')}.",
        "",
        "## Data",
        "",
        *_dataset_lines(prov),
        f"- Episodes: {eps.get('train')} for training, {eps.get('val')} held out; "
        f"{prov.get('real_steps')} real env steps, {prov.get('frames')} frames.",
        "",
        "## Training",
        "",
        f"- Command: `{prov.get('command')}`",
        f"- Machine: {_machine_text(prov.get('machine') or {})}",
        "",
        "| stage | epochs | wall time (s) |",
        "|---|---|---|",
    ]
    for stage in ("vae", "encode", "rnn"):
        s = stages.get(stage, {})
        lines.append(f"| {stage} | {fmt(s.get('epochs'))} | {fmt(s.get('seconds'), '.1f')} |")
    lines += [
        "",
        "## Held-out metrics (validation episodes)",
        "",
        "| metric | model | baseline |",
        "|---|---|---|",
        f"| V reconstruction MSE per pixel ([0,1]) | {fmt(v.get('recon_mse'))} | "
        f"{fmt(v.get('baseline_mean_frame_mse'))} (mean frame) |",
        f"| M NLL of z_t+1 per latent dim (nats) | {fmt(m.get('nll_per_dim'))} | "
        f"{fmt(m.get('baseline_previous_z_nll_per_dim'))} (z_t+1 ~ N(z_t, Var Δz)); "
        f"{fmt(m.get('baseline_static_gaussian_nll_per_dim'))} (static Gaussian) |",
        f"| reward MAE per step | {fmt(m.get('reward_mae'))} | "
        f"{fmt(m.get('reward_mae_baseline_mean'))} (training mean) |",
        f"| done precision / recall / F1 at p > 0.5 | {fmt(done.get('precision'))} / "
        f"{fmt(done.get('recall'))} / {fmt(done.get('f1'))} | rate {fmt(done.get('rate'))} |",
        f"| done ROC AUC; best F1 (threshold) | {fmt(done.get('auc'))}; "
        f"{fmt(done.get('best_f1'))} ({fmt(done.get('best_threshold'))}) | 0.5 (chance AUC) |",
        "",
        "M is scored on whole validation episodes from h = 0 with z sampled from V's posterior, as "
        "the dream starts; the done metrics use the dream's probability (training weight undone). "
        f"Validation steps: {fmt(m.get('steps'))}; done events among them: "
        f"{fmt(done.get('positives'))}.",
        "",
        "Report images: `report/reconstructions.png` (V), `report/dream_rollout.png` (an open-loop "
        "dream from a real start with the recorded actions, next to reality).",
        "",
        "## Known limits",
        "",
        "- The dream is only as good as the data: states the collection policy never reached are "
        "guesses, and a controller can exploit M's errors (the paper's \"cheating\" worlds; raise "
        "τ to make exploitation harder, §4.5).",
        "- Rewards and terminations come from M's heads, not from the real env's rules.",
        "",
        "<details><summary>All metrics and provenance (JSON)</summary>",
        "",
        "```json",
        json.dumps({"metrics": metrics, "provenance": prov}, indent=2),
        "```",
        "</details>",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# The job


def _dataset_lines(prov: dict[str, Any]) -> list[str]:
    """The card's dataset line(s): one per `--data` directory, with its policy and episodes."""
    data, policy = prov.get("data"), prov.get("data_policy")
    if not isinstance(data, list):
        lines = [f"- Dataset: `{data}` (policy `{policy}`)"]
    else:
        counts = prov.get("data_episodes") or [None] * len(data)
        lines = ["- Datasets:"] + [
            f"  - `{d}` (policy `{p}`, {n} episodes)"
            for d, p, n in zip(data, policy, counts, strict=False)
        ]
    if prov.get("vae_from"):
        lines.append(f"- V started from the world `{prov['vae_from']}`.")
    return lines


def _check_config(config: TrainConfig) -> None:
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
    if config.weights_dtype not in _WEIGHTS_DTYPES:
        raise ValueError(
            f"--weights-dtype must be one of {_WEIGHTS_DTYPES}, got {config.weights_dtype!r}"
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


def _real_step_limit(env_id: str, manifest: dict[str, Any]) -> int | None:
    """The real env's own step limit (not the collection's --max-steps) for the dream's truncation."""
    try:
        import gymnasium as gym

        from dreamgym.envs.real import DEFAULT_MAX_EPISODE_STEPS, ensure_registered

        ensure_registered(env_id)
        limit = DEFAULT_MAX_EPISODE_STEPS.get(env_id) or gym.spec(env_id).max_episode_steps
    except Exception:  # the env's package is not installed here: trust the manifest
        limit = None
    return limit or manifest.get("max_episode_steps") or manifest.get("max_steps")


def _roundtrip_float16(module: nn.Module) -> nn.Module:
    """A copy of `module` whose weights went through float16 (what a float16 bundle loads)."""
    import copy

    clone = copy.deepcopy(module)
    with torch.no_grad():
        for p in clone.parameters():
            p.copy_(p.half().float())
    return clone


def _relative_change(a: float | None, b: float | None) -> float:
    if a is None or b is None:
        return 0.0
    return abs(a - b) / max(abs(a), 1e-12)


def default_threads() -> int:
    """torch's default thread count, less the cores other processes keep busy (1-min load).

    OpenMP threads that must share a core with another busy process spin at every barrier: on a
    2-core machine with a load of ~5, V trained 3× slower with 2 threads than with 1
    (benchmarks/vae_training.py).
    """
    n = torch.get_num_threads()
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # not available on this platform
        return n
    return max(1, min(n, int(round((os.cpu_count() or n) - busy))))


def _machine(device: torch.device) -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def _stage_bar(desc: str, total: int, initial: int, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="batch",
        disable=not progress,
        dynamic_ncols=True,
    )


def _commit_epoch(
    ws: Workspace,
    progress: dict[str, Any],
    stage: str,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    record: dict[str, Any],
    on_epoch: EpochCallback | None,
) -> None:
    """Checkpoint, then record the epoch in progress.json (the commit point), then prune."""
    ckpt = ws.save_checkpoint(stage, epoch, model, optimizer)
    st = progress[stage]
    st.update(epochs_done=epoch, checkpoint=ckpt)
    st["history"].append(record)
    st["seconds"] += record["seconds"]
    ws.save_progress(progress)
    ws.prune(stage, ckpt["file"])
    if on_epoch is not None:
        on_epoch(stage, epoch, record)


def train_world(config: TrainConfig, on_epoch: EpochCallback | None = None) -> Path:
    """Train V and M on `config.data` and write the world bundle to `config.out`; returns it.

    Resumable (see the module docstring). `on_epoch(stage, epoch, record)` is called after each
    committed epoch (tests use it to interrupt a run).
    """
    _check_config(config)
    wall_start = time.perf_counter()
    dirs = data_dirs(config.data)
    manifests = load_manifests(dirs)
    manifest = manifests[0]
    env_id = manifest["env_id"]
    selected = select_from_datasets(dirs, manifests, config.max_frames)
    if len(selected) < 2:
        cut = f" (cut to {config.max_frames} frames by --max-frames)" if config.max_frames else ""
        raise ValueError(
            f"dataset {' '.join(dirs)} has {len(selected)} usable episode(s){cut}: too few to "
            "train on some and hold out others (--val-fraction); collect at least 2, e.g. "
            f"dreamgym collect --env {env_id} --episodes 10 --out {dirs[0]}"
        )
    vae_from = _load_vae_from(config, manifest)
    out = Path(config.out)
    ws = Workspace(out)
    fingerprint = _fingerprint(
        config, manifest, selected, None if vae_from is None else vae_from[1]
    )
    progress = ws.load_progress()
    if progress is None and (out / CONFIG_FILE).exists():
        raise TrainingStateError(
            f"{out} already holds a world bundle that this command did not train (no "
            f"{WORK_DIR}/{PROGRESS_FILE}); choose another --out"
        )
    if progress is not None:
        _check_fingerprint(ws, progress["fingerprint"], fingerprint)
        if progress["vae"]["epochs_done"] > config.vae_epochs:
            raise TrainingStateError(
                f"{out} holds V trained for {progress['vae']['epochs_done']} epochs, more than "
                f"--vae-epochs {config.vae_epochs}; pass --vae-epochs ≥ "
                f"{progress['vae']['epochs_done']}, or choose another --out"
            )
        rnn_done = (progress.get("rnn") or {}).get("epochs_done", 0)
        same_v = (progress.get("rnn") or {}).get("vae_epochs") == config.vae_epochs
        if same_v and rnn_done > config.rnn_epochs:
            raise TrainingStateError(
                f"{out} holds M trained for {rnn_done} epochs, more than --rnn-epochs "
                f"{config.rnn_epochs}; pass --rnn-epochs ≥ {rnn_done}, or choose another --out"
            )
    out_settings = {
        k: getattr(config, k)
        for k in (
            "vae_epochs",
            "rnn_epochs",
            "temperature",
            "max_episode_steps",
            "weights_dtype",
            "name",
        )
    }
    if (
        progress is not None
        and (progress.get("bundle") or {}).get("settings") == out_settings
        and (out / CONFIG_FILE).is_file()
    ):
        with contextlib.suppress(Exception):
            World.load(out)
            if config.progress:
                print(f"{out} is up to date (delete {ws.dir} and the bundle to train again)")
            return out

    # Everything about the data is checked before OUT is touched.
    data = load_episodes(dirs[0], manifest, selected, progress=config.progress)
    n_eps = len(selected)
    train_eps, val_eps = split_episodes(n_eps, config.val_fraction, config.seed)
    if len(train_eps) < 1:
        raise ValueError(
            f"--val-fraction {config.val_fraction} leaves no training episode out of {n_eps}; "
            f"lower it or collect more (dreamgym collect --episodes N --out {dirs[0]})"
        )

    from dreamgym.envs.dream import resolve_device

    device = resolve_device(config.device)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(config.threads) if config.threads is not None else default_threads())
    try:
        with ws.lock():
            progress = ws.load_progress()  # again: another run may have finished meanwhile
            if progress is None:
                progress = _new_progress(fingerprint)
                ws.save_progress(progress)
            _check_fingerprint(ws, progress["fingerprint"], fingerprint)
            return _run(
                config,
                on_epoch,
                ws,
                progress,
                manifest,
                data,
                train_eps,
                val_eps,
                device,
                wall_start,
                out_settings,
                dirs,
                manifests,
                None if vae_from is None else vae_from[0],
            )
    finally:
        torch.set_num_threads(old_threads)


def _load_vae_from(config: TrainConfig, manifest: dict[str, Any]) -> tuple[ConvVAE, str] | None:
    """(V of the --vae-from world, sha256 of its weights file), checked against the data."""
    if config.vae_from is None:
        return None
    world = World.load(config.vae_from)
    if world.env_id != manifest["env_id"] or world.preprocessing.to_dict() != manifest.get(
        "preprocessing"
    ):
        raise ValueError(
            f"--vae-from {config.vae_from} was trained on {world.env_id} frames with "
            f"preprocessing {world.preprocessing.to_dict()}, but the data holds "
            f"{manifest['env_id']} frames with {manifest.get('preprocessing')}; pass a world "
            "of the same env"
        )
    if world.latent_dim != config.latent:
        raise ValueError(
            f"--vae-from {config.vae_from} has a {world.latent_dim}-d latent but --latent is "
            f"{config.latent}; pass --latent {world.latent_dim}"
        )
    return world.vae, world.config["files"][VAE_FILE]


def _run(
    config: TrainConfig,
    on_epoch: EpochCallback | None,
    ws: Workspace,
    progress: dict[str, Any],
    manifest: dict[str, Any],
    data: EpisodeData,
    train_eps: np.ndarray,
    val_eps: np.ndarray,
    device: torch.device,
    wall_start: float,
    out_settings: dict[str, Any],
    dirs: list[str],
    manifests: list[dict[str, Any]],
    vae_from: ConvVAE | None,
) -> Path:
    from safetensors.torch import load_file

    space = action_space_from_dict(manifest["action_space"])
    train_frames, val_frames = data.frame_indices(train_eps), data.frame_indices(val_eps)
    vae_config = VAEConfig(latent_dim=config.latent, kl_tolerance=config.kl_tolerance)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        vae = ConvVAE(vae_config)
    if vae_from is not None:
        vae.load_state_dict(vae_from.state_dict())
    vae = prepare_vae_for_training(vae, device)
    vae_opt = make_adam(vae.parameters(), config.vae_lr)

    # --- V ------------------------------------------------------------------------------------
    st = progress["vae"]
    if st["checkpoint"]:
        ws.load_checkpoint(st["checkpoint"], vae, vae_opt)
    if st["epochs_done"] < config.vae_epochs:
        batches = math.ceil(len(train_frames) / config.vae_batch)
        bar = _stage_bar(
            "V", batches * config.vae_epochs, batches * st["epochs_done"], config.progress
        )
        val_sample = val_frames[
            np.linspace(0, len(val_frames) - 1, min(EPOCH_VAL_FRAMES, len(val_frames))).astype(int)
        ]
        try:
            for epoch in range(st["epochs_done"], config.vae_epochs):
                bar.set_description(f"V epoch {epoch + 1}/{config.vae_epochs}")
                record = train_vae_epoch(
                    vae,
                    vae_opt,
                    data.frames,
                    train_frames,
                    config.vae_batch,
                    config.seed,
                    epoch,
                    device,
                    bar,
                )
                record["epoch"] = epoch + 1
                record["val_recon_mse"] = evaluate_vae(vae, data.frames, val_sample, device)[
                    "recon_mse"
                ]
                bar.set_postfix(
                    loss=f"{record['loss']:.1f}", val_mse=f"{record['val_recon_mse']:.5f}"
                )
                _commit_epoch(ws, progress, "vae", epoch + 1, vae, vae_opt, record, on_epoch)
        finally:
            bar.close()

    # --- encode every frame once ------------------------------------------------------------
    enc = progress.get("encode")
    latents_path = ws.dir / LATENTS_FILE
    if not enc or enc.get("vae_epochs") != st["epochs_done"] or not latents_path.is_file():
        start = time.perf_counter()
        mu, logvar = encode_frames(vae, data.frames, device, config.progress)
        atomic_save_safetensors(
            {"mu": torch.from_numpy(mu), "logvar": torch.from_numpy(logvar)}, latents_path
        )
        progress.update(
            encode={
                "vae_epochs": st["epochs_done"],
                "frames": int(mu.shape[0]),
                "seconds": time.perf_counter() - start,
            },
            rnn=None,
            metrics=None,
            bundle=None,
        )
        ws.save_progress(progress)
        ws.prune("rnn", None)
    else:
        cached = load_file(str(latents_path))
        mu, logvar = cached["mu"].numpy(), cached["logvar"].numpy()
        if mu.shape != (data.frames.shape[0], config.latent):
            raise TrainingStateError(
                f"{latents_path} holds latents of shape {tuple(mu.shape)}, expected "
                f"{(data.frames.shape[0], config.latent)}; delete {ws.dir} to start over"
            )
    latents = LatentEpisodes.from_arrays(
        mu, logvar, data.actions, data.rewards, data.dones, data.lengths, device
    )

    # --- M ------------------------------------------------------------------------------------
    train_steps = data.step_indices(train_eps)
    done_weight = (
        float(config.done_weight)
        if config.done_weight is not None
        else auto_done_weight(data.dones[train_steps])
    )
    rnn_config = MDNRNNConfig(
        latent_dim=config.latent,
        action_dim=action_input_dim(space),
        hidden_dim=config.hidden,
        n_mixtures=config.mixtures,
        done_pos_weight=done_weight,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 1)
        rnn = MDNRNN(rnn_config)
    init_rnn_heads(rnn, data.rewards[train_steps], data.dones[train_steps])
    rnn.to(device)
    rnn_opt = make_adam(rnn.parameters(), config.rnn_lr)
    if progress.get("rnn") is None:
        progress["rnn"] = {
            "vae_epochs": st["epochs_done"],
            "epochs_done": 0,
            "checkpoint": None,
            "done_pos_weight": done_weight,
            "history": [],
            "seconds": 0.0,
        }
    rs = progress["rnn"]
    stats = latent_stats(latents, train_eps)
    if rs["checkpoint"]:
        ws.load_checkpoint(rs["checkpoint"], rnn, rnn_opt)
    if rs["epochs_done"] < config.rnn_epochs:
        # Windows move with a random phase each epoch; their count is estimated for the bar.
        estimate = len(
            make_windows(data.lengths, train_eps, config.seq_len, np.random.default_rng(0))
        )
        batches = math.ceil(estimate / config.rnn_batch)
        bar = _stage_bar(
            "M", batches * config.rnn_epochs, batches * rs["epochs_done"], config.progress
        )
        try:
            for epoch in range(rs["epochs_done"], config.rnn_epochs):
                bar.set_description(f"M epoch {epoch + 1}/{config.rnn_epochs}")
                record = train_rnn_epoch(
                    rnn,
                    rnn_opt,
                    latents,
                    train_eps,
                    config.seq_len,
                    config.rnn_batch,
                    done_weight,
                    config.reward_weight,
                    config.grad_clip,
                    config.seed,
                    epoch,
                    bar,
                )
                record["epoch"] = epoch + 1
                val = evaluate_rnn(rnn, latents, val_eps, stats, config.seed)
                record["val_nll_per_dim"] = val["nll_per_dim"]
                record["val_reward_mae"] = val["reward_mae"]
                bar.set_postfix(
                    loss=f"{record['loss']:.2f}", val_nll_dim=f"{val['nll_per_dim']:.3f}"
                )
                progress.update(metrics=None, bundle=None)
                _commit_epoch(ws, progress, "rnn", epoch + 1, rnn, rnn_opt, record, on_epoch)
        finally:
            bar.close()

    # --- held-out metrics (float32, and float16 round trip) -----------------------------------
    cpu = torch.device("cpu")
    vae_eval = ConvVAE(vae_config)
    vae_eval.load_state_dict({k: v.contiguous().to(cpu) for k, v in vae.state_dict().items()})
    rnn_eval = rnn.to(cpu).eval()
    latents_cpu = LatentEpisodes.from_arrays(
        mu, logvar, data.actions, data.rewards, data.dones, data.lengths, cpu
    )
    metrics = progress.get("metrics")
    if not metrics:
        start = time.perf_counter()
        v_idx = val_frames[
            np.linspace(0, len(val_frames) - 1, min(VAL_FRAMES_MAX, len(val_frames))).astype(int)
        ]
        vm = evaluate_vae(vae_eval, data.frames, v_idx, cpu)
        vm["frames"] = int(len(v_idx))
        vm["baseline_mean_frame_mse"] = mean_frame_mse(data.frames, train_frames, v_idx)
        rm = evaluate_rnn(rnn_eval, latents_cpu, val_eps, stats, config.seed)
        vm16 = evaluate_vae(_roundtrip_float16(vae_eval), data.frames, v_idx, cpu)
        rm16 = evaluate_rnn(_roundtrip_float16(rnn_eval), latents_cpu, val_eps, stats, config.seed)
        changes = {
            "vae_recon_mse": _relative_change(vm["recon_mse"], vm16["recon_mse"]),
            "rnn_nll_per_dim": _relative_change(rm["nll_per_dim"], rm16["nll_per_dim"]),
            "reward_mae": _relative_change(rm["reward_mae"], rm16["reward_mae"]),
            "done_f1": _relative_change(rm["done"]["f1"], rm16["done"]["f1"]),
        }
        metrics = {
            "vae": vm,
            "rnn": rm,
            "float16_check": {
                "vae_recon_mse": vm16["recon_mse"],
                "rnn_nll_per_dim": rm16["nll_per_dim"],
                "reward_mae": rm16["reward_mae"],
                "done_f1": rm16["done"]["f1"],
                "relative_change": changes,
                "lossless": max(changes.values()) <= FLOAT16_TOLERANCE,
            },
            "train_final": {
                "vae": st["history"][-1] if st["history"] else None,
                "rnn": rs["history"][-1] if rs["history"] else None,
            },
            "seconds": time.perf_counter() - start,
        }
        progress["metrics"] = metrics
        ws.save_progress(progress)

    # --- the bundle ----------------------------------------------------------------------------
    dtype = config.weights_dtype
    if dtype == "auto":
        dtype = "float16" if metrics["float16_check"]["lossless"] else "float32"
    out = ws.out
    with torch.random.fork_rng(devices=[]):
        world = World.build(
            manifest["env_id"],
            space,
            FramePreprocessing.from_dict(manifest["preprocessing"]),
            vae_config=vae_config,
            rnn_config=rnn_config,
            max_episode_steps=(
                config.max_episode_steps
                if config.max_episode_steps is not None
                else _real_step_limit(manifest["env_id"], manifest)
            ),
            temperature=config.temperature,
            seed=config.seed,
            name=config.name or out.resolve().name,
        )
    world.vae.load_state_dict(vae_eval.state_dict())
    world.mdnrnn.load_state_dict(rnn_eval.state_dict())
    first = data.frame_start[train_eps]
    if len(first) > MAX_INITIAL_LATENTS:
        first = first[np.linspace(0, len(first) - 1, MAX_INITIAL_LATENTS).astype(int)]
    world.initial_mu = torch.from_numpy(mu[first].copy())
    world.initial_logvar = torch.from_numpy(logvar[first].copy())
    from dreamgym import __version__

    wall = progress.setdefault("wall_seconds", 0.0) + (time.perf_counter() - wall_start)
    steps_used = int(data.lengths.sum())
    resolved = [str(Path(d).resolve()) for d in dirs]
    policies = [m.get("policy") for m in manifests]
    seeds = [m.get("seed") for m in manifests]
    world.config["provenance"] = {
        "kind": "trained",
        "command": command_line(config),
        "argv": shlex.join(sys.argv) if sys.argv and sys.argv[0] else None,
        "data": resolved[0] if len(resolved) == 1 else resolved,
        "data_policy": policies[0] if len(policies) == 1 else policies,
        "data_seed": seeds[0] if len(seeds) == 1 else seeds,
        "data_episodes": [sum(e.get("data_dir") == d for e in data.entries) for d in dirs],
        "vae_from": config.vae_from,
        "episodes": {
            "train": int(len(train_eps)),
            "val": int(len(val_eps)),
            "val_indices": [
                int(data.entries[e]["index"])
                if len(dirs) == 1
                else [dirs.index(data.entries[e]["data_dir"]), int(data.entries[e]["index"])]
                for e in val_eps
            ],
        },
        "real_steps": steps_used,
        "train_steps": int(data.lengths[train_eps].sum()),
        "val_steps": int(data.lengths[val_eps].sum()),
        "frames": int(data.frames.shape[0]),
        "initial_latents": int(len(first)),
        "stages": {
            "vae": {"epochs": st["epochs_done"], "seconds": st["seconds"]},
            "encode": {"epochs": 1, "seconds": progress["encode"]["seconds"]},
            "rnn": {"epochs": rs["epochs_done"], "seconds": rs["seconds"]},
            "metrics": {"seconds": metrics["seconds"]},
        },
        "wall_seconds": wall,
        "training": {f: getattr(config, f) for f in _FINGERPRINT_FIELDS},
        "machine": _machine(device),
        "dreamgym_version": __version__,
    }
    world.config["metrics"] = {k: v for k, v in metrics.items() if k != "seconds"}
    world.save(out, dtype=dtype)
    atomic_write_bytes(out / MODEL_CARD_FILE, model_card(world.config).encode())

    reports = out / REPORT_DIR
    save_reconstructions(world.vae, data.frames, val_frames, reports / "reconstructions.png")
    longest = int(val_eps[np.argmax(data.lengths[val_eps])])
    save_dream_rollout(
        world,
        data.frames,
        latents_cpu,
        longest,
        config.temperature,
        config.seed,
        reports / "dream_rollout.png",
    )
    progress["wall_seconds"] = wall
    progress["bundle"] = {"settings": out_settings, "weights_dtype": dtype}
    ws.save_progress(progress)
    _print_summary(out, world.config)
    return out


def _print_summary(out: Path, config: dict[str, Any]) -> None:
    m = config["metrics"]
    v, r = m["vae"], m["rnn"]
    d = r["done"]
    print(f"wrote {out} ({config['weights_dtype']} weights); held-out metrics:")
    print(
        f"  V recon MSE/pixel   {v['recon_mse']:.5f}  (mean frame: {v['baseline_mean_frame_mse']:.5f})"
    )
    print(
        f"  M NLL/dim           {r['nll_per_dim']:.3f}  (previous z: "
        f"{r['baseline_previous_z_nll_per_dim']:.3f}, static: "
        f"{r['baseline_static_gaussian_nll_per_dim']:.3f})"
    )
    print(
        f"  reward MAE          {r['reward_mae']:.4f}  (mean: {r['reward_mae_baseline_mean']:.4f})"
    )
    prf = " / ".join(
        "n/a" if d[k] is None else f"{d[k]:.3f}" for k in ("precision", "recall", "f1")
    )
    print(f"  done P/R/F1 @0.5    {prf}  ({d['positives']} done events held out)")
    print(f"  reports: {out / REPORT_DIR}, card: {out / MODEL_CARD_FILE}")
