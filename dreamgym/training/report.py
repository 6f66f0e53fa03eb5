"""Report images of a trained world: V's reconstructions and an open-loop dream next to reality.

Written to OUT/report/: `reconstructions.png` (real validation frames over V's reconstructions)
and `dream_rollout.png` (the real episode, V of it, M's rollout sampled at τ and its mean).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from dreamgym.models.memory import memory_of
from dreamgym.models.vae import ConvVAE
from dreamgym.training.config import SEED_REPORT
from dreamgym.training.mdn import LatentEpisodes
from dreamgym.world import World

REPORT_DIR = "report"
REPORT_COLUMNS = 12
REPORT_SCALE = 2
"""Report images show 64×64 frames at 128×128."""


def _label_font() -> Any:
    return ImageFont.load_default()


def image_grid(
    rows: list[list[np.ndarray]],
    row_labels: list[str],
    col_labels: list[str] | None = None,
    scale: int = REPORT_SCALE,
) -> Any:
    """Compose uint8 HWC frames into a labelled grid (PIL image): one list of frames per row."""
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

    Rows: the real episode, V's reconstruction of it, M's rollout sampled at τ, and its rollout
    at τ = 0 (the MDN-RNN: the mixture mean Σ π_k μ_k, per dim for a per-dim M; the RSSM: its
    prior's mean or mode); every k-th step, ~REPORT_COLUMNS columns. M is read through the
    memory seam (`memory_of`), so either family draws its rows.
    """
    vae = world.vae.eval().cpu()
    world.memory_net.eval().cpu()
    memory = memory_of(world)
    f0, s0 = int(data.frame_start[episode]), int(data.step_start[episode])
    steps = int(data.lengths[episode])
    every = max(1, math.ceil(steps / (REPORT_COLUMNS - 1)))
    cols = list(range(0, steps + 1, every))[:REPORT_COLUMNS]
    gen = torch.Generator().manual_seed(
        int(np.random.default_rng([seed, SEED_REPORT]).integers(2**62))
    )
    actions = data.actions[s0 : s0 + steps].cpu()
    z0 = data.mu[f0 : f0 + 1].cpu()
    dreams = {}
    for mode, tau in (("sample", temperature), ("mean", 0.0)):
        first = torch.zeros(1, memory.action_dim)  # no action leads into an episode's first frame
        state, zs = memory.observe(memory.initial_state(1, "cpu"), z0, first), [z0]
        for t in range(steps):
            step = memory.imagine(state, actions[t : t + 1], tau, gen)
            state = step.state
            zs.append(step.z)
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


def write_reports(
    world: World,
    frames: np.ndarray,
    latents: LatentEpisodes,
    val_frames: np.ndarray,
    val_eps: np.ndarray,
    temperature: float,
    seed: int,
    out: Path,
) -> None:
    """Both report images in OUT/report/; the dream starts from the longest validation episode."""
    reports = out / REPORT_DIR
    save_reconstructions(world.vae, frames, val_frames, reports / "reconstructions.png")
    longest = int(val_eps[np.argmax(latents.lengths[val_eps])])
    save_dream_rollout(
        world, frames, latents, longest, temperature, seed, reports / "dream_rollout.png"
    )
