"""Training the RSSM memory on V's latents: whole episodes, state carried, KL balancing, free bits.

The data are M's (`LatentEpisodes`, one (mu, logvar) per frame, z drawn afresh each epoch) and
so are the batches: rows of whole episodes back to back, cut into `seq_len` chunks, the state
carried (detached) from chunk to chunk and restarted exactly where an episode starts
(`dreamgym.training.streams`). The loss per step (Hafner et al. 2019, 2021, 2023):

- the z decoder's Gaussian NLL of z_{t+1} from the posterior's features (summed over z's dims);
- reward MSE and the done BCE with the done steps weighted (`RSSMConfig.done_pos_weight`, M's
  `done_weight`; the dream divides it out of the odds again);
- the KL(posterior ‖ prior) with balancing (DreamerV2, §2: α of the gradient trains the prior
  towards the posterior, 1 − α the posterior towards the prior) and free bits (DreamerV3: each
  side's KL is clipped below at `free_nats`, so a KL already small is not pressed further);
- optionally latent overshooting (PlaNet, §4): priors rolled d = 2 … D steps ahead of each
  posterior, scored by their KL to the (fixed) posterior of the frame they reach.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from dreamgym.models.rssm import (
    RSSM,
    Posteriors,
    RSSMConfig,
    RSSMState,
    kl_divergence,
    z_log_prob,
)
from dreamgym.training.mdn import LatentEpisodes
from dreamgym.training.streams import make_streams, stream_chunks

SEED_RSSM = 6
"""Stream of the seed sequence an RSSM epoch's shuffling and sampling draw from."""


@dataclass(frozen=True)
class RSSMTrainConfig:
    """How the RSSM is trained (the model's own sizes are `RSSMConfig`)."""

    epochs: int = 10
    """Passes over the training episodes."""
    batch: int = 32
    """Rows of episodes trained side by side."""
    seq_len: int = 50
    """Steps per chunk (truncated backpropagation through time; the state is carried)."""
    lr: float = 6e-4
    """Adam's learning rate (DreamerV2's world model: 2e-4 … 6e-4)."""
    grad_clip: float = 100.0
    """Global gradient norm clip (DreamerV2: 100); 0 = off."""
    kl_balance: float = 0.8
    """α: the share of the KL's gradient that trains the prior (DreamerV2: 0.8)."""
    free_nats: float = 1.0
    """Each side of the KL is clipped below at this many nats per step (DreamerV3: 1)."""
    kl_weight: float = 1.0
    """Weight of the balanced KL."""
    reward_weight: float = 1.0
    """Weight of the reward MSE."""
    overshooting: int = 0
    """D: also score priors 2 … D steps ahead (latent overshooting); 0 or 1 = off."""
    overshooting_weight: float = 1.0
    """Weight of the overshooting KL (averaged over its depths)."""
    z_means: bool = False
    """Observe and decode V's means (mu) instead of z drawn from N(mu, σ²) afresh each epoch (M's
    recipe): with draws a Gaussian posterior can copy V's per-frame noise into s, which no prior
    can predict, so the KL grows while the open-loop error does not fall."""
    mask_terminal_z: bool = False
    """Leave the frame after a terminated step out of the z NLL (as M's `--mask-terminal-z`)."""
    seed: int = 0
    """Seeds every epoch's shuffling and z draws (with the epoch number)."""
    progress: bool = True
    """Show a tqdm bar."""

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch < 1 or self.seq_len < 1:
            raise ValueError(
                f"epochs ≥ 0, batch ≥ 1 and seq_len ≥ 1 needed, got {self.epochs}, "
                f"{self.batch}, {self.seq_len}"
            )
        if not 0.0 <= self.kl_balance <= 1.0:
            raise ValueError(f"kl_balance must be in [0, 1], got {self.kl_balance}")
        if self.overshooting < 0:
            raise ValueError(f"overshooting must be ≥ 0, got {self.overshooting}")


@dataclass
class RSSMTrainResult:
    """A trained RSSM and one record per epoch (mean losses per step, held-out ones, seconds)."""

    model: RSSM
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return float(sum(r["seconds"] for r in self.history))


def balanced_kl(
    config: RSSMConfig, post: torch.Tensor, prior: torch.Tensor, alpha: float, free: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(α·max(free, KL(sg q ‖ p)) + (1 − α)·max(free, KL(q ‖ sg p)), the plain KL) per step."""
    dyn = kl_divergence(config, post.detach(), prior)
    rep = kl_divergence(config, post, prior.detach())
    loss = alpha * dyn.clamp(min=free) + (1.0 - alpha) * rep.clamp(min=free)
    return loss, dyn.detach()


def overshooting_kl(
    model: RSSM,
    post: Posteriors,
    prior: torch.Tensor,
    actions: torch.Tensor,
    valid: torch.Tensor,
    resets: torch.Tensor | None,
    depth: int,
    free: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Mean KL(sg q_{t+d} ‖ p(s_{t+d} | s_t rolled d steps by the prior)) over d = 2 … D.

    Each rollout starts from the one-step prior draw at every step of the chunk (all at once)
    and counts only where its steps stay in one episode and inside the chunk's valid steps.
    """
    config, target = model.config, post.stats.detach()
    h, s = post.h, model.sample(prior, 1.0, generator)
    ok = valid
    reset = resets if resets is not None else torch.zeros_like(valid)
    terms = []
    for d in range(2, depth + 1):
        if h.shape[1] < 2:
            break
        h, s, ok = h[:, :-1], s[:, :-1], ok[:, :-1] & valid[:, d - 1 :] & ~reset[:, d - 1 :]
        h = model.transition(RSSMState(h, s), actions[:, d - 1 :])
        p = model.prior_stats(h)
        s = model.sample(p, 1.0, generator)
        kl = kl_divergence(config, target[:, d - 1 :], p).clamp(min=free)
        m = ok.float()
        terms.append((kl * m).sum() / m.sum().clamp(min=1.0))
    return torch.stack(terms).mean() if terms else prior.new_zeros(())


def rssm_loss(
    model: RSSM,
    batch: tuple[torch.Tensor, ...],
    resets: torch.Tensor | None,
    state: RSSMState | None,
    config: RSSMTrainConfig,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], RSSMState]:
    """The loss of one chunk (module docstring), its parts, and the final state to carry.

    `batch` is M's (z_in, actions, z_target, rewards, dones, mask) (`stream_chunks`); `resets`
    marks episode starts (None: every row starts one at column 0).
    """
    z_in, actions, z_tgt, rewards, dones, mask = batch
    if resets is None:
        resets = torch.zeros_like(mask)
        resets[:, 0] = True
    post = model.observe_sequence(state, z_in, z_tgt, actions, resets, generator)
    prior = model.prior_stats(post.h)
    heads = model.heads(torch.cat([post.h, post.s], dim=-1))
    m = mask.float()
    denom = m.sum().clamp(min=1.0)
    zm = m * (dones < 0.5).float() if config.mask_terminal_z else m
    nll = -(z_log_prob(heads, z_tgt) * zm).sum() / zm.sum().clamp(min=1.0)
    reward = ((heads.reward - rewards).pow(2) * m).sum() / denom
    pos_weight = torch.tensor(model.config.done_pos_weight, device=m.device)
    bce = F.binary_cross_entropy_with_logits(
        heads.done_logit, dones, pos_weight=pos_weight, reduction="none"
    )
    done = (bce * m).sum() / denom
    kl_loss, kl = balanced_kl(model.config, post.stats, prior, config.kl_balance, config.free_nats)
    kl_loss = (kl_loss * m).sum() / denom
    total = nll + config.reward_weight * reward + done + config.kl_weight * kl_loss
    parts = {
        "nll": nll.detach(),
        "reward_mse": reward.detach(),
        "done_bce": done.detach(),
        "kl": (kl * m).sum() / denom,
    }
    if config.overshooting > 1:
        over = overshooting_kl(
            model,
            post,
            prior,
            actions,
            mask,
            resets,
            config.overshooting,
            config.free_nats,
            generator,
        )
        total = total + config.overshooting_weight * over
        parts["overshooting_kl"] = over.detach()
    final = RSSMState(post.final.h.detach(), post.final.s.detach())
    return total, parts, final


def make_rssm(
    config: RSSMConfig, data: LatentEpisodes, episodes: np.ndarray, seed: int = 0
) -> RSSM:
    """A seeded RSSM on `data`'s device, its reward and done heads started at the base rates.

    A head that starts at what a constant would answer spends no epochs learning the bias
    (as M's `init_rnn_heads`); the done head starts at the weighted base rate's logit.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RSSM(config)
    steps = torch.cat(
        [
            torch.arange(int(data.step_start[e]), int(data.step_start[e] + data.lengths[e]))
            for e in episodes
        ]
    )
    rewards = data.rewards.cpu()[steps]
    dones = data.dones.cpu()[steps]
    rate = min(max(float(dones.mean()) if len(dones) else 0.0, 1e-4), 1.0 - 1e-4)
    with torch.no_grad():
        model.reward_head[-1].bias.fill_(float(rewards.mean()) if len(rewards) else 0.0)
        model.done_head[-1].bias.fill_(math.log(config.done_pos_weight * rate / (1.0 - rate)))
    return model.to(data.mu.device)


MEANS_LOGVAR = -60.0
"""log σ² that makes every draw of z its mean (σ ≈ 1e-13), for `RSSMTrainConfig.z_means`."""


def means_only(data: LatentEpisodes) -> LatentEpisodes:
    """`data` with σ ≈ 0, so every z drawn from it is V's mean."""
    logvar = torch.full_like(data.logvar, MEANS_LOGVAR)
    return LatentEpisodes(data.mu, logvar, data.actions, data.rewards, data.dones, data.lengths)


def _epoch_chunks(
    data: LatentEpisodes, episodes: np.ndarray, config: RSSMTrainConfig, epoch: int
) -> tuple[Any, torch.Generator, int]:
    """(the epoch's chunks, its generator, how many) — seeded by (seed, SEED_RSSM, epoch)."""
    if config.z_means:
        data = means_only(data)
    rng = np.random.default_rng([config.seed, SEED_RSSM, epoch])
    gen = torch.Generator(device=data.mu.device).manual_seed(int(rng.integers(2**62)))
    streams = make_streams(data, episodes, config.batch, rng)
    return stream_chunks(data, streams, config.seq_len, gen), gen, streams.n_chunks(config.seq_len)


def train_rssm_epoch(
    model: RSSM,
    optimizer: torch.optim.Optimizer,
    data: LatentEpisodes,
    episodes: np.ndarray,
    config: RSSMTrainConfig,
    epoch: int,
    bar: Any = None,
) -> dict[str, float]:
    """One pass over `episodes` (every step once, state carried); mean losses per step."""
    chunks, gen, _ = _epoch_chunks(data, episodes, config, epoch)
    model.train()
    sums: dict[str, float] = {}
    steps, state = 0, None
    start = time.perf_counter()
    for batch, resets in chunks:
        loss, parts, state = rssm_loss(model, batch, resets, state, config, gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        n = int(batch[-1].sum())
        steps += n
        for k, v in {"loss": loss.detach(), **parts}.items():
            sums[k] = sums.get(k, 0.0) + float(v) * n
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.2f}", kl=f"{float(parts['kl']):.2f}")
    record = {k: v / max(steps, 1) for k, v in sums.items()}
    record["seconds"] = time.perf_counter() - start
    return record


@torch.no_grad()
def evaluate_rssm(
    model: RSSM, data: LatentEpisodes, episodes: np.ndarray, config: RSSMTrainConfig
) -> dict[str, float]:
    """The training loss's parts on `episodes` (held out), without gradients; means per step."""
    chunks, gen, _ = _epoch_chunks(data, episodes, config, 0)
    model.eval()
    sums: dict[str, float] = {}
    steps, state = 0, None
    for batch, resets in chunks:
        _, parts, state = rssm_loss(model, batch, resets, state, config, gen)
        n = int(batch[-1].sum())
        steps += n
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v) * n
    return {k: v / max(steps, 1) for k, v in sums.items()}


def train_rssm(
    model: RSSM,
    data: LatentEpisodes,
    episodes: np.ndarray,
    config: RSSMTrainConfig,
    val_episodes: np.ndarray | None = None,
) -> RSSMTrainResult:
    """Train `model` (e.g. from `make_rssm`) for `config.epochs` epochs on `episodes` of `data`.

    Returns the model and one record per epoch (with `val_*` parts when `val_episodes` are
    given). A non-finite loss stops the run with an error naming the epoch.
    """
    episodes = np.asarray(episodes, dtype=np.int64)
    if len(episodes) == 0 or int(data.lengths[episodes].sum()) == 0:
        raise ValueError("train_rssm needs at least one training episode with a step")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    n_chunks = _epoch_chunks(data, episodes, config, 0)[2]
    result = RSSMTrainResult(model)
    bar = tqdm(
        total=n_chunks * config.epochs,
        desc="RSSM",
        unit="batch",
        disable=not config.progress,
        dynamic_ncols=True,
    )
    try:
        for epoch in range(config.epochs):
            bar.set_description(f"RSSM epoch {epoch + 1}/{config.epochs}")
            record = train_rssm_epoch(model, optimizer, data, episodes, config, epoch, bar)
            if not math.isfinite(record["loss"]):
                raise FloatingPointError(
                    f"RSSM epoch {epoch + 1}: the loss is {record['loss']}; lower lr or "
                    "grad_clip, or check the latents for NaN"
                )
            if val_episodes is not None and len(val_episodes):
                val = evaluate_rssm(model, data, np.asarray(val_episodes), config)
                record.update({f"val_{k}": v for k, v in val.items()})
            record["epoch"] = epoch + 1
            result.history.append(record)
    finally:
        bar.close()
    return result
