"""Figures of `dreamgym diagnose`: the suite's bars, teacher forcing, V and M next to reality.

- `suite.png`: dream vs real mean return of every fixed policy, 95% CIs, flagged ones in red;
- `teacher.png`: predicted vs real return per real episode, and M's done probability along the
  longest episode;
- `reconstructions.png`: real frames over V's reconstructions (`training.report`);
- `dream_rollout.png`: the longest real episode, V of it, and M's open-loop dream from the same
  start with the recorded actions, through the memory seam (`models.memory`), so either family
  draws it: sampled at τ, and at τ = 0 (the MDN-RNN's mixture mean, the RSSM's prior mean or mode).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamgym.evaluation.diagnose.teacher import ForcedEpisode, RealEpisode
from dreamgym.models.memory import memory_of
from dreamgym.training.config import SEED_REPORT
from dreamgym.training.report import REPORT_COLUMNS, image_grid, save_reconstructions
from dreamgym.utils.files import atomic_write_bytes
from dreamgym.world import World


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def suite_png(rows: list[dict[str, Any]], title: str) -> bytes:
    """Grouped bars (dream, real) per policy with bootstrap 95% CIs; flagged labels in red (a
    policy without a real side, `--dream-only`, has its dream bar alone)."""
    fig = _figure(max(6.0, 1.1 * len(rows) + 2), 4.5)
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    for offset, side, color in ((-0.2, "dream", "tab:purple"), (0.2, "real", "tab:green")):
        known = [r[side] or {"mean": np.nan, "ci95": [np.nan, np.nan]} for r in rows]
        means = np.array([k["mean"] for k in known], dtype=np.float64)
        ci = np.array([k["ci95"] for k in known], dtype=np.float64).reshape(-1, 2)
        err = np.abs(ci.T - means)
        ax.bar(x + offset, means, 0.4, yerr=err, capsize=3, color=color, label=side)
    ax.set_xticks(x, [r["policy"] for r in rows], rotation=30, ha="right", fontsize=8)
    for tick, r in zip(ax.get_xticklabels(), rows, strict=True):
        if r["ok"] is False:
            tick.set_color("tab:red")
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_ylabel("mean episode return")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def teacher_png(
    report: dict[str, Any], episodes: list[RealEpisode], forced: list[ForcedEpisode]
) -> bytes:
    """Predicted vs real return per episode; M's done probability along the longest episode."""
    fig = _figure(10, 4)
    ax, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    rows = report["per_episode"]
    real = [r["real_return"] for r in rows]
    pred = [r["predicted_return"] for r in rows]
    ax.scatter(real, pred, s=16, color="tab:blue")
    lo, hi = min(real + pred), max(real + pred)
    ax.plot([lo, hi], [lo, hi], "k--", linewidth=0.8)
    ax.set_xlabel("real return")
    ax.set_ylabel("M's predicted return (teacher-forced)")
    ax.set_title("returns of real episodes", fontsize=10)
    k = int(np.argmax([len(e.rewards) for e in episodes]))
    ax2.plot(forced[k].p_done, color="tab:red", linewidth=0.8, label="M's P(done)")
    ends = np.flatnonzero(episodes[k].terminated)
    for t in ends:
        ax2.axvline(t, color="black", linestyle="--", linewidth=0.8, label="real termination")
    ax2.set_xlabel("step")
    ax2.set_ylabel("P(done)")
    auc = report.get("done_auc")
    ax2.set_title(
        f"longest episode ({len(episodes[k].rewards)} steps); done AUC "
        + ("n/a" if auc is None else f"{auc:.3f}"),
        fontsize=10,
    )
    ax2.legend(fontsize=8)
    return _png(fig)


def _spread_frames(episodes: list[RealEpisode], n: int) -> np.ndarray:
    """`n` frames spread evenly over all the episodes' frames (without concatenating them)."""
    ends = np.cumsum([len(e.frames) for e in episodes])
    picks = np.linspace(0, ends[-1] - 1, min(n, int(ends[-1]))).astype(np.int64)
    which = np.searchsorted(ends, picks, side="right")
    starts = ends - np.array([len(e.frames) for e in episodes])
    return np.stack([episodes[k].frames[g - starts[k]] for g, k in zip(picks, which, strict=True)])


@torch.inference_mode()
def dream_rollout_png(
    world: World, episode: RealEpisode, forced: ForcedEpisode, temperature: float, seed: int
) -> bytes:
    """Rows: the real episode, V of it, M's open-loop dream from its first frame with the
    recorded actions at τ and at τ = 0; every k-th step, ~REPORT_COLUMNS columns. Seeded as the
    training report's rollout (`training.report.save_dream_rollout`, the MDN-RNN's own): for an
    MDN-RNN world the same picture."""
    memory, device = memory_of(world), world.device
    steps = len(forced.actions)
    every = max(1, math.ceil(steps / (REPORT_COLUMNS - 1)))
    cols = list(range(0, steps + 1, every))[:REPORT_COLUMNS]
    gen = torch.Generator(device=device).manual_seed(
        int(np.random.default_rng([seed, SEED_REPORT]).integers(2**62))
    )
    z0 = torch.as_tensor(forced.mu[:1], device=device)
    actions = torch.as_tensor(forced.actions, device=device)
    dreams = []
    for tau in (temperature, 0.0):
        state = memory.observe(memory.initial_state(1, device), z0, torch.zeros_like(actions[:1]))
        zs = [z0]
        for t in range(steps):
            imagined = memory.imagine(state, actions[t : t + 1], tau, gen)
            state = imagined.state
            zs.append(imagined.z)
        dreams.append(list(world.vae.decode_uint8(torch.cat(zs)[cols]).cpu().numpy()))
    mu = torch.as_tensor(forced.mu[cols], device=device)
    img = image_grid(
        [list(episode.frames[cols]), list(world.vae.decode_uint8(mu).cpu().numpy()), *dreams],
        ["real", "V(real)", f"dream tau={temperature:g}", "dream mean"],
        col_labels=[f"t={t}" for t in cols],
    )
    buf = io.BytesIO()
    img.save(buf, format="png")
    return buf.getvalue()


def write_figures(
    world: World,
    out: Path,
    rows: list[dict[str, Any]],
    teacher: dict[str, Any] | None,
    episodes: list[RealEpisode],
    forced: list[ForcedEpisode],
    temperature: float,
    seed: int,
) -> list[str]:
    """Every figure the results allow, written atomically into `out`; their names."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if rows:
        title = f"fixed policies in {world.name}: dream (τ={temperature:g}) vs real"
        atomic_write_bytes(out / "suite.png", suite_png(rows, title))
        written.append("suite.png")
    if teacher is not None and episodes:
        atomic_write_bytes(out / "teacher.png", teacher_png(teacher, episodes, forced))
        k = int(np.argmax([len(e.rewards) for e in episodes]))
        frames = _spread_frames(episodes, REPORT_COLUMNS)
        save_reconstructions(world.vae, frames, np.arange(len(frames)), out / "reconstructions.png")
        rollout = dream_rollout_png(world, episodes[k], forced[k], temperature, seed)
        atomic_write_bytes(out / "dream_rollout.png", rollout)
        written += ["teacher.png", "reconstructions.png", "dream_rollout.png"]
    return written
