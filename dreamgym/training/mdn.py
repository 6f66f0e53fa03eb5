"""M: the MDN-RNN's training data, batches, loss and epochs.

M learns p(z_{t+1} | z_t, a_t, h_t), the reward r_t and done_t = terminated_t (truncation is not
death; Ha & Schmidhuber 2018, §A.2) from one of two kinds of batches (`sequences`):

- "episodes" (new worlds; the paper's code): rows of whole episodes back to back, cut into
  chunks of `seq_len` steps, the LSTM state carried between chunks and zeroed at episode starts
  (`dreamgym.training.streams`);
- "windows" (worlds before): windows of `seq_len` steps at a random phase, each from h = 0 (short
  episodes padded and masked).

Rare deaths are up-weighted in the done loss (`done_weight`; the paper's code: 10); the weight is
stored in the bundle and the dream divides it out of the odds again. The z target after a
terminated step (the env's terminal frame, e.g. ViZDoom's black screen) can be left out of the
NLL (`mask_terminal_z`): the dream never steps past a termination, so it is not worth learning.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dreamgym.models.mdnrnn import MDNRNN, NLL_REDUCTIONS, mdn_log_prob, sample_mdn
from dreamgym.training.config import RNN_SEQUENCES, SEED_RNN
from dreamgym.training.episodes import episode_starts
from dreamgym.training.streams import make_streams, stream_chunks

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


State = tuple[torch.Tensor, torch.Tensor]


def mix_in_samples(
    rnn: MDNRNN,
    batch: tuple[torch.Tensor, ...],
    state: State | None,
    resets: torch.Tensor | None,
    fraction: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """z_in with `fraction` of its frames replaced by M's own one-step samples (τ = 1).

    Parallel scheduled sampling (Duckworth et al. 2019): one teacher-forced pass without
    gradients predicts every next frame, and a random `fraction` of the inputs z_t (never an
    episode's first frame, which the dream also takes from V) become M's draw for z_t instead of
    V's. The targets stay real, so M learns to predict reality from inputs like the dream's own
    (in a parked car's dream the sampled z wanders, and M reads the wandering as motion).
    """
    z_in, actions = batch[0], batch[1]
    with torch.no_grad():
        out, _ = rnn(z_in, actions, state, resets)
        b, t = z_in.shape[:2]
        draw = sample_mdn(
            out.logpi.flatten(0, 1),
            out.mu.flatten(0, 1),
            out.logsigma.flatten(0, 1),
            1.0,
            generator,
        ).view(b, t, -1)
        u = torch.rand((b, t), generator=generator, device=z_in.device)
        swap = u < fraction
        swap[:, 0] = False  # its one-step prediction came from the previous chunk
        if resets is not None:
            swap &= ~resets
    mixed = z_in.clone()
    mixed[:, 1:][swap[:, 1:]] = draw[:, :-1][swap[:, 1:]].to(z_in.dtype)
    return mixed


def sequence_loss(
    rnn: MDNRNN,
    batch: tuple[torch.Tensor, ...],
    done_weight: float,
    reward_weight: float,
    nll_reduction: str = "sum",
    mask_terminal_z: bool = False,
    state: State | None = None,
    resets: torch.Tensor | None = None,
    reward_overpay: float = 1.0,
    reward_sum_weight: float = 0.0,
    sampled_inputs: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], State]:
    """Masked mixture NLL + reward_weight × reward MSE + done BCE (positives weighted).

    With an event head (`MDNRNNConfig.reward_event`) the reward term is the MSE of the regressed
    cost (the reward less v × the event label) plus the events' BCE, both × reward_weight.

    The NLL is summed or averaged over z's dims (`nll_reduction`), and leaves out the targets
    after terminated steps when `mask_terminal_z`. A reward M over-predicts weighs
    `reward_overpay` times one it under-predicts in the MSE (1: symmetric): where the target is
    uncertain (a new tile or not) M then errs low, so a controller cannot farm the dream's
    optimism. `reward_sum_weight` adds the squared sum of each row's reward errors (over its
    masked steps, divided like the MSE): zero-mean noise costs about what the MSE does, while a
    steady bias of b over a row of n steps costs n times b² — the error that decides a 1,000-step
    return. `sampled_inputs` > 0 feeds M that fraction of its own samples as inputs
    (`mix_in_samples`, drawn with `generator`). Returns the loss, its parts (`reward_mse`
    unweighted) and the final LSTM state (to carry into the next chunk of the same rows).
    """
    if nll_reduction not in NLL_REDUCTIONS:
        raise ValueError(f"nll_reduction must be one of {NLL_REDUCTIONS}, got {nll_reduction!r}")
    z_in, actions, z_tgt, rewards, dones, mask = batch
    if sampled_inputs > 0:
        z_in = mix_in_samples(rnn, batch, state, resets, sampled_inputs, generator)
    out, final = rnn(z_in, actions, state, resets)
    m = mask.float()
    denom = m.sum().clamp(min=1.0)
    zm = m * (dones < 0.5).float() if mask_terminal_z else m
    nll_step = -mdn_log_prob(out.logpi, out.mu, out.logsigma, z_tgt)
    if nll_reduction == "mean":
        nll_step = nll_step / z_tgt.shape[-1]
    nll = (nll_step * zm).sum() / (zm.sum().clamp(min=1.0) if mask_terminal_z else denom)
    reward = ((out.reward - rewards).pow(2) * m).sum() / denom  # what the dream pays, reported
    predicted, target = out.reward, rewards
    event_bce = None
    if out.event_logit is not None:  # events classified, the rest (the cost) regressed
        c = rnn.config
        events = c.reward_events(rewards)
        predicted = out.reward - c.reward_event * torch.sigmoid(out.event_logit)
        target = rewards - c.reward_event * events
        bce_events = F.binary_cross_entropy_with_logits(out.event_logit, events, reduction="none")
        event_bce = (bce_events * m).sum() / denom
    err2 = (predicted - target).pow(2)
    over = torch.where(predicted > target, reward_overpay, 1.0) if reward_overpay != 1.0 else 1.0
    reward_loss = (err2 * over * m).sum() / denom
    if reward_sum_weight > 0:
        row_error = ((predicted - target) * m).sum(dim=-1)
        reward_loss = reward_loss + reward_sum_weight * row_error.pow(2).sum() / denom
    if event_bce is not None:
        reward_loss = reward_loss + event_bce
    pos_weight = torch.tensor(done_weight, device=m.device)
    bce = F.binary_cross_entropy_with_logits(
        out.done_logit, dones, pos_weight=pos_weight, reduction="none"
    )
    done = (bce * m).sum() / denom
    total = nll + reward_weight * reward_loss + done
    parts = {"nll": nll.detach(), "reward_mse": reward.detach(), "done_bce": done.detach()}
    if event_bce is not None:
        parts["event_bce"] = event_bce.detach()
    return total, parts, final


def rnn_loss(
    rnn: MDNRNN,
    batch: tuple[torch.Tensor, ...],
    done_weight: float,
    reward_weight: float,
    nll_reduction: str = "sum",
    mask_terminal_z: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`sequence_loss` of a batch of independent windows from h = 0 (loss and parts)."""
    total, parts, _ = sequence_loss(
        rnn, batch, done_weight, reward_weight, nll_reduction, mask_terminal_z
    )
    return total, parts


@dataclass(frozen=True)
class LRSchedule:
    """lr_t = (lr − floor) · decay^t + floor per optimizer step t (the paper's code: 1e-3 decaying
    ×0.99999 a step towards 1e-5); decay 1 is a constant lr."""

    lr: float
    decay: float = 1.0
    floor: float = 0.0

    def at(self, step: int) -> float:
        if self.decay >= 1.0:
            return self.lr
        return (self.lr - self.floor) * self.decay**step + self.floor

    def apply(self, optimizer: torch.optim.Optimizer) -> None:
        """Set the lr for the optimizer's next step (its step count survives a resume)."""
        if self.decay >= 1.0:
            return
        lr = self.at(optimizer_steps(optimizer))
        for group in optimizer.param_groups:
            group["lr"] = lr


def optimizer_steps(optimizer: torch.optim.Optimizer) -> int:
    """How many steps Adam has taken (its per-parameter "step" state; 0 before the first)."""
    for st in optimizer.state.values():
        if "step" in st:
            return int(st["step"])
    return 0


def auto_done_weight(dones: np.ndarray) -> float:
    """Non-done / done steps, capped at DONE_WEIGHT_CAP; 1 when no episode terminated."""
    pos = int(np.count_nonzero(dones))
    if pos == 0:
        return 1.0
    return float(min(max((dones.size - pos) / pos, 1.0), DONE_WEIGHT_CAP))


def reward_event_options(rewards: np.ndarray, threshold: float | None) -> dict[str, float]:
    """M's event-head options for `--reward-events THRESHOLD` (none when off).

    The event's size v is what an event step pays above a typical step: the mean reward of the
    event steps less the median of the others (CarRacing: ≈ 3.3 = +1000/N for a tile, less the
    −0.1 frame cost; the median ignores the rare −100 for leaving the playfield).
    """
    if threshold is None:
        return {}
    rewards = np.asarray(rewards, dtype=np.float64)
    events = rewards > threshold
    if not events.any() or events.all():
        what = "no" if not events.any() else "every"
        raise ValueError(
            f"--reward-events {threshold}: {what} training reward exceeds {threshold} "
            f"(rewards span [{rewards.min():.4g}, {rewards.max():.4g}]); pick a threshold "
            "between the per-step reward and the events', or leave --reward-events out"
        )
    size = float(rewards[events].mean() - np.median(rewards[~events]))
    if not size > 0:
        raise ValueError(
            f"--reward-events {threshold}: the event steps pay no more than the others "
            f"(size {size:.4g}); pick a higher threshold"
        )
    return {"reward_event": size, "reward_event_threshold": float(threshold)}


def init_rnn_heads(rnn: MDNRNN, rewards: np.ndarray, dones: np.ndarray) -> None:
    """Start the reward head at the mean reward and the done head at the (weighted) base rate
    (with an event head: the reward head at the mean cost, the event head at the event rate).

    A head that starts at the answer a constant would give spends no epochs learning the bias
    (Karpathy's "init well" recipe); without it, a briefly trained M ends dream episodes at
    random because an untrained done head says p = 0.5.
    """
    w = rnn.config.done_pos_weight
    rate = min(max(float(np.mean(dones)) if dones.size else 0.0, 1e-4), 1.0 - 1e-4)
    mean_reward = float(np.mean(rewards)) if rewards.size else 0.0
    c = rnn.config
    if c.has_reward_events:
        events = c.reward_events(torch.as_tensor(rewards, dtype=torch.float64)).numpy()
        p = min(max(float(np.mean(events)) if rewards.size else 0.0, 1e-4), 1.0 - 1e-4)
        cost = rewards - c.reward_event * events
        mean_reward = float(np.mean(cost)) if rewards.size else 0.0
    with torch.no_grad():
        rnn.head.bias[-2] = mean_reward
        rnn.head.bias[-1] = math.log(w * rate / (1.0 - rate))
        if c.has_reward_events:
            rnn.head.bias[-3] = math.log(p / (1.0 - p))


def count_rnn_batches(
    data: LatentEpisodes, episodes: np.ndarray, seq_len: int, batch: int, sequences: str
) -> int:
    """About how many batches an epoch has (for the progress bar; the phase or packing moves)."""
    rng = np.random.default_rng(0)
    if sequences == "episodes":
        return make_streams(data, episodes, batch, rng).n_chunks(seq_len)
    return math.ceil(len(make_windows(data.lengths, episodes, seq_len, rng)) / batch)


def _epoch_batches(
    data: LatentEpisodes,
    episodes: np.ndarray,
    seq_len: int,
    batch: int,
    sequences: str,
    rng: np.random.Generator,
    gen: torch.Generator,
) -> Iterator[tuple[tuple[torch.Tensor, ...], torch.Tensor | None]]:
    """An epoch's batches and their episode starts (None: independent windows from h = 0)."""
    if sequences == "episodes":
        yield from stream_chunks(data, make_streams(data, episodes, batch, rng), seq_len, gen)
        return
    windows = make_windows(data.lengths, episodes, seq_len, rng)
    windows = windows[rng.permutation(len(windows))]
    for i in range(0, len(windows), batch):
        yield rnn_batch(data, windows[i : i + batch], gen), None


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
    *,
    sequences: str = "windows",
    nll_reduction: str = "sum",
    mask_terminal_z: bool = False,
    lr_schedule: LRSchedule | None = None,
    reward_overpay: float = 1.0,
    reward_sum_weight: float = 0.0,
    sampled_inputs: float = 0.0,
) -> dict[str, float]:
    """One pass of M over `episodes` (every step once); mean losses per step.

    `sequences="episodes"`: `batch` rows of whole episodes in `seq_len` chunks, the LSTM state
    carried (detached) from chunk to chunk; "windows": `batch` windows a step, each from h = 0.
    """
    if sequences not in RNN_SEQUENCES:
        raise ValueError(f"sequences must be one of {RNN_SEQUENCES}, got {sequences!r}")
    rng = np.random.default_rng([seed, SEED_RNN, epoch])
    gen = torch.Generator(device=data.mu.device).manual_seed(int(rng.integers(2**62)))
    rnn.train()
    sums = {"loss": 0.0, "nll": 0.0, "reward_mse": 0.0, "done_bce": 0.0}
    if rnn.config.has_reward_events:
        sums["event_bce"] = 0.0
    steps = 0
    start = time.perf_counter()
    state: State | None = None
    for b, resets in _epoch_batches(data, episodes, seq_len, batch, sequences, rng, gen):
        loss, parts, final = sequence_loss(
            rnn,
            b,
            done_weight,
            reward_weight,
            nll_reduction,
            mask_terminal_z,
            state,
            resets,
            reward_overpay=reward_overpay,
            reward_sum_weight=reward_sum_weight,
            sampled_inputs=sampled_inputs,
            generator=gen,
        )
        if resets is not None:  # truncated BPTT: carry the state, not its gradient
            state = (final[0].detach(), final[1].detach())
        if lr_schedule is not None:
            lr_schedule.apply(optimizer)
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
