"""V: training epochs of the ConvVAE on uint8 frames, its held-out error, and encoding.

V is trained on frames of the training episodes (reconstruction + KL with free bits, `vae_loss`;
Ha & Schmidhuber 2018, §A.1). Every frame is then encoded once into (mu, logvar), so that M trains
on a fresh z ~ N(mu, σ²) every epoch without running V again (the paper's trick).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from dreamgym.models.vae import ConvVAE, vae_loss
from dreamgym.training.config import SEED_VAE, VAE_PRECISIONS
from dreamgym.utils.hardware import native_bf16
from dreamgym.world import VAE_FILE, World

ENCODE_BATCH = 512
"""Frames per batch when every frame is encoded once."""
PRECISIONS = VAE_PRECISIONS
"""V's compute precision: bfloat16 autocast pays only with native bf16 math (AVX-512 BF16, AMX,
CUDA); emulated it is ~10x slower (measured on an AVX2 EPYC: 13 vs 171 img/s), so "auto" picks it
only where the hardware has it (`dreamgym.utils.hardware.native_bf16`, which the dream's
`precision` asks too)."""


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device` (None: plain float32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"V precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bfloat16" or (precision == "auto" and native_bf16(device)):
        return torch.bfloat16
    return None


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
    precision: str = "float32",
) -> dict[str, float]:
    """One pass of V over `frames[train_idx]` in a seeded random order; mean losses per frame.

    With a bfloat16 `precision` the forward pass runs under autocast; the loss, the gradients'
    accumulation and Adam stay float32.
    """
    dtype = autocast_dtype(precision, device)
    rng = np.random.default_rng([seed, SEED_VAE, epoch])
    gen = torch.Generator(device=device).manual_seed(int(rng.integers(2**62)))
    perm = rng.permutation(train_idx)
    vae.train()
    totals = torch.zeros(3, device=device)
    start = time.perf_counter()
    n_batches = 0
    for i in range(0, len(perm), batch):
        idx = np.sort(perm[i : i + batch])  # sorted: the gather reads memory in order
        x = frames_to_batch(frames, idx, device)
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            recon, mu, logvar = vae(x, generator=gen)
        loss, rec, kl = vae_loss(
            recon.float(), x, mu.float(), logvar.float(), vae.config.kl_tolerance
        )
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
    vae: ConvVAE,
    frames: np.ndarray,
    device: torch.device,
    progress: bool = True,
    precision: str = "float32",
) -> tuple[np.ndarray, np.ndarray]:
    """(mu, logvar) float32 (F, Z) of every frame, V run once per frame (autocast as in training)."""
    dtype = autocast_dtype(precision, device)
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
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            m, lv = vae.encode(frames_to_batch(frames, idx, device))
        mu[idx], logvar[idx] = m.float().cpu().numpy(), lv.float().cpu().numpy()
    return mu, logvar


def load_vae_from(
    vae_from: str | None, latent: int, manifest: dict[str, Any]
) -> tuple[ConvVAE, str] | None:
    """(V of the --vae-from world, sha256 of its weights file), checked against the data."""
    if vae_from is None:
        return None
    world = World.load(vae_from)
    if world.env_id != manifest["env_id"] or world.preprocessing.to_dict() != manifest.get(
        "preprocessing"
    ):
        raise ValueError(
            f"--vae-from {vae_from} was trained on {world.env_id} frames with "
            f"preprocessing {world.preprocessing.to_dict()}, but the data holds "
            f"{manifest['env_id']} frames with {manifest.get('preprocessing')}; pass a world "
            "of the same env"
        )
    if world.latent_dim != latent:
        raise ValueError(
            f"--vae-from {vae_from} has a {world.latent_dim}-d latent but --latent is "
            f"{latent}; pass --latent {world.latent_dim}"
        )
    return world.vae, world.config["files"][VAE_FILE]
