"""M: the MDN-RNN's training data, windows, batches, loss and epochs.

M learns p(z_{t+1} | z_t, a_t, h_t), the reward r_t and done_t = terminated_t (truncation is not
death) from windows of `seq_len` steps (short episodes padded and masked; Ha & Schmidhuber 2018,
§A.2). Rare deaths are up-weighted in the done loss (`done_weight`, automatic by default); the
weight is stored in the bundle and the dream divides it out of the odds again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dreamgym.models.mdnrnn import MDNRNN, mdn_log_prob
from dreamgym.training.config import SEED_RNN
from dreamgym.training.episodes import episode_starts

DONE_WEIGHT_CAP = 100.0
"""Automatic done weight = non-done steps / done steps, capped here (rare deaths, not infinite)."""


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
    rng = np.random.default_rng([seed, SEED_RNN, epoch])
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
