"""Held-out metrics: each of V's and M's scores next to a trivial baseline, and the float16 check.

M is scored on whole validation *episodes* from h_0 = 0 (as the dream starts), with z sampled
from V's posterior under a fixed seed; V by its reconstruction error from z = mu.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from dreamgym.models.mdnrnn import MDNRNN, mdn_log_prob
from dreamgym.models.vae import ConvVAE
from dreamgym.training.config import SEED_EVAL
from dreamgym.training.mdn import LatentEpisodes, rnn_batch
from dreamgym.training.vae import evaluate_vae, mean_frame_mse

EVAL_EPISODES_PER_BATCH = 16
VAL_FRAMES_MAX = 4096
"""V's held-out metrics use at most this many validation frames (evenly spaced)."""
FLOAT16_TOLERANCE = 0.01
"""weights_dtype="auto" keeps float16 if no held-out metric moves by more than 1 % (relative)."""


def eval_generator(data: LatentEpisodes, seed: int) -> torch.Generator:
    """The held-out metrics' generator (z drawn from V's posterior, a memory's own draws): fixed
    by the run's seed, apart from training's streams."""
    return torch.Generator(device=data.mu.device).manual_seed(
        int(np.random.default_rng([seed, SEED_EVAL]).integers(2**62))
    )


def held_out_batches(
    data: LatentEpisodes, episodes: np.ndarray, gen: torch.Generator
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Whole held-out episodes, shortest first, EVAL_EPISODES_PER_BATCH at a time, as `rnn_batch`
    gives them (z_in, actions, z_tgt, rewards, dones, mask), their z drawn with `gen`."""
    order = np.asarray(episodes)[np.argsort(data.lengths[episodes], kind="stable")]
    for i in range(0, len(order), EVAL_EPISODES_PER_BATCH):
        eps = order[i : i + EVAL_EPISODES_PER_BATCH]
        eps = eps[data.lengths[eps] > 0]
        if len(eps):
            windows = np.stack([eps, np.zeros_like(eps), data.lengths[eps]], axis=1)
            yield rnn_batch(data, windows, gen)


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
    mask_terminal_z: bool = False,
) -> dict[str, Any]:
    """M on whole held-out episodes from h_0 = 0 (as in the dream), z sampled with a fixed seed.

    `mask_terminal_z` leaves the z targets after terminated steps out of the NLL and its
    baselines, as M's training did.

    Reports the NLL of z_{t+1} per step and per latent dim next to two baselines (a static
    Gaussian fitted to the training z, and "z_{t+1} ~ N(z_t, Var Δz)"), the reward MAE next to
    predicting the training mean, and done metrics at the dream's rule p > 0.5 (weight undone);
    with an event head, the same metrics for its events (`reward_events`).
    """
    rnn.eval()
    gen = eval_generator(data, seed)
    nll, static, copy, r_true, r_pred, d_true, p_done = [], [], [], [], [], [], []
    p_event: list[np.ndarray] = []
    e_true: list[np.ndarray] = []
    for z_in, actions, z_tgt, rewards, dones, mask in held_out_batches(data, episodes, gen):
        out, _ = rnn(z_in, actions)
        m = mask.cpu().numpy()
        zm = m & (dones.cpu().numpy() < 0.5) if mask_terminal_z else m
        zi, zt = z_in.cpu().double().numpy()[zm], z_tgt.cpu().double().numpy()[zm]
        log_p = mdn_log_prob(out.logpi, out.mu, out.logsigma, z_tgt)
        nll.append(-log_p.cpu().double().numpy()[zm])
        static.append(_gaussian_nll(zt, stats["z_mean"], stats["z_var"]))
        copy.append(_gaussian_nll(zt, zi, stats["dz_var"]))
        r_true.append(rewards.cpu().double().numpy()[m])
        r_pred.append(out.reward.cpu().double().numpy()[m])
        d_true.append(dones.cpu().numpy()[m] > 0.5)
        p_done.append(rnn.done_probability(out.done_logit).cpu().double().numpy()[m])
        if out.event_logit is not None:
            p_event.append(torch.sigmoid(out.event_logit).cpu().double().numpy()[m])
            e_true.append(rnn.config.reward_events(rewards).cpu().numpy()[m] > 0.5)
    z_dim = data.mu.shape[1]
    nll_a, r_t, r_p = np.concatenate(nll), np.concatenate(r_true), np.concatenate(r_pred)
    steps = int(nll_a.size)
    events = (
        {"reward_events": done_metrics(np.concatenate(p_event), np.concatenate(e_true))}
        if p_event
        else {}
    )
    return {
        "steps": steps,
        "nll_per_step": float(nll_a.mean()),
        "nll_per_dim": float(nll_a.mean() / z_dim),
        "baseline_static_gaussian_nll_per_dim": float(np.concatenate(static).mean() / z_dim),
        "baseline_previous_z_nll_per_dim": float(np.concatenate(copy).mean() / z_dim),
        "reward_mae": float(np.abs(r_p - r_t).mean()),
        "reward_mae_baseline_mean": float(np.abs(stats["reward_mean"] - r_t).mean()),
        "done": done_metrics(np.concatenate(p_done), np.concatenate(d_true)),
        **events,
    }


def roundtrip_float16(module: nn.Module) -> nn.Module:
    """A copy of `module` whose weights went through float16 (what a float16 bundle loads)."""
    clone = copy.deepcopy(module)
    with torch.no_grad():
        for p in clone.parameters():
            p.copy_(p.half().float())
    return clone


def relative_change(a: float | None, b: float | None) -> float:
    if a is None or b is None:
        return 0.0
    return abs(a - b) / max(abs(a), 1e-12)


def vae_held_out(
    vae: ConvVAE, frames: np.ndarray, train_frames: np.ndarray, val_frames: np.ndarray
) -> tuple[dict[str, Any], dict[str, Any]]:
    """V's held-out metrics beside the mean frame's, and the same after a float16 round trip
    (either memory's metrics start with these)."""
    cpu = torch.device("cpu")
    v_idx = val_frames[
        np.linspace(0, len(val_frames) - 1, min(VAL_FRAMES_MAX, len(val_frames))).astype(int)
    ]
    vm = evaluate_vae(vae, frames, v_idx, cpu)
    vm["frames"] = int(len(v_idx))
    vm["baseline_mean_frame_mse"] = mean_frame_mse(frames, train_frames, v_idx)
    return vm, evaluate_vae(roundtrip_float16(vae), frames, v_idx, cpu)


def held_out_metrics(
    vae: ConvVAE,
    rnn: MDNRNN,
    frames: np.ndarray,
    train_frames: np.ndarray,
    val_frames: np.ndarray,
    latents: LatentEpisodes,
    val_eps: np.ndarray,
    stats: dict[str, Any],
    seed: int,
    mask_terminal_z: bool = False,
) -> dict[str, Any]:
    """V's and M's held-out metrics on the CPU, and the same after a float16 round trip.

    `float16_check.lossless` says whether a float16 bundle predicts as well (no metric moves by
    more than FLOAT16_TOLERANCE, relative): what `--weights-dtype auto` decides by.
    """
    vm, vm16 = vae_held_out(vae, frames, train_frames, val_frames)
    rm = evaluate_rnn(rnn, latents, val_eps, stats, seed, mask_terminal_z)
    rm16 = evaluate_rnn(roundtrip_float16(rnn), latents, val_eps, stats, seed, mask_terminal_z)
    changes = {
        "vae_recon_mse": relative_change(vm["recon_mse"], vm16["recon_mse"]),
        "rnn_nll_per_dim": relative_change(rm["nll_per_dim"], rm16["nll_per_dim"]),
        "reward_mae": relative_change(rm["reward_mae"], rm16["reward_mae"]),
        "done_f1": relative_change(rm["done"]["f1"], rm16["done"]["f1"]),
    }
    return {
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
    }
