"""M as an RSSM: a recurrent state-space model over V's latent z (PlaNet; DreamerV2/V3).

The state at frame t is (h_t, s_t): h a GRU's deterministic state, s a stochastic one. Every step
has two views of s (Hafner et al. 2019, PlaNet, §3):

- the **prior** p(s_t | h_t), what the model expects before it sees the frame (the dream's
  imagination);
- the **posterior** q(s_t | h_t, z_t), what it believes after it sees V's z_t (the real-env
  tracker, and training).

h_t = GRU(h_{t-1}, [s_{t-1}, a_{t-1}]): the action that led into frame t. From the features
[h_t, s_t] a decoder predicts z_t (a Gaussian, its std learned per dim or fixed), a reward head
the reward of the step into t, and a done head the logit of that step ending the episode. The
heads read the posterior's features in training and the prior's in a dream (Dreamer): a death
is a property of the imagined state, so it comes with the frame the prior imagines (where the
last frame is a terminal screen, the done head learns to read it there).

The stochastic state is one of (`RSSMConfig.stoch`):

- `"gaussian"` (PlaNet): a diagonal Gaussian, std = softplus(·) + `min_std`;
- `"categorical"` (DreamerV2/V3): `groups` one-hot vectors of `classes` classes, sampled with
  straight-through gradients; each distribution is mixed with 1% uniform (`unimix`, DreamerV3 §
  "Robustness") so no class's probability (and no KL) reaches an extreme.

Temperature τ scales the prior's randomness when the dream imagines (`imagine`), in the spirit of
Ha & Schmidhuber 2018, §4.5: a Gaussian prior's std is multiplied by √τ; a categorical prior's
logits (log-probabilities after unimix) are divided by τ, i.e. probabilities p^{1/τ}
renormalised, as the MDN-RNN's mixture weights. τ = 1 is the model as trained, τ < 1 calmer
dreams, τ = 0 the prior's mean (Gaussian) or mode (categorical), τ > 1 "nightmares".

The memory protocol a dream or a tracker uses: `initial_state(batch)`, `observe(state, z, a)`
(posterior update from a real frame's z; `a` is the action that led into that frame, zeros at an
episode's first frame), `imagine(state, a, temperature, generator)` (a prior step: the next
state, the z it decodes to, the reward and the done probability) and `features(state)` ([h, s],
what an agent sees beside z). The weights are plain tensors (`state_dict` → safetensors) and the
config a plain dict (`RSSMConfig.to_dict`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

STOCH_KINDS = ("gaussian", "categorical")
"""The stochastic state: a diagonal Gaussian (PlaNet) or one-hot categoricals (DreamerV2/V3)."""
Z_LOG_STD_MIN = -5.0
"""A learned decoder std is bounded below by exp(Z_LOG_STD_MIN), so the z NLL cannot blow up."""


@dataclass
class RSSMConfig:
    """Hyper-parameters of the RSSM memory."""

    latent_dim: int = 32
    """Size of z (must match V)."""
    action_dim: int = 3
    """Width of the action input (Box: its size; Discrete: n, one-hot)."""
    deter_dim: int = 256
    """GRU units (h)."""
    hidden_dim: int = 256
    """Units of the small MLPs (input, prior, posterior, decoder and heads)."""
    stoch: str = "gaussian"
    """"gaussian" (PlaNet) or "categorical" (DreamerV2/V3)."""
    stoch_dim: int = 32
    """Gaussian: dims of s."""
    groups: int = 16
    """Categorical: number of one-hot vectors in s."""
    classes: int = 16
    """Categorical: classes per one-hot vector."""
    min_std: float = 0.1
    """Gaussian: lower bound of the prior's and posterior's std (PlaNet)."""
    unimix: float = 0.01
    """Categorical: weight of the uniform mixed into every distribution (DreamerV3: 1%)."""
    z_std: float = 0.0
    """The z decoder's std: 0 = learned per dim (a free parameter); > 0 = fixed at this value."""
    done_pos_weight: float = 1.0
    """Weight of done examples in the done loss; `done_probability` divides it out of the odds."""
    done_logit_offset: float = 0.0
    """Added to the done logit at inference (`dreamgym calibrate`'s fit, as the MDN-RNN's)."""

    def __post_init__(self) -> None:
        if self.stoch not in STOCH_KINDS:
            raise ValueError(f"stoch must be one of {STOCH_KINDS}, got {self.stoch!r}")
        sizes = ("latent_dim", "action_dim", "deter_dim", "hidden_dim")
        sizes += ("stoch_dim", "groups", "classes")
        for name in sizes:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if not 0.0 <= self.unimix < 1.0:
            raise ValueError(f"unimix must be in [0, 1), got {self.unimix}")
        if not math.isfinite(float(self.done_logit_offset)):
            raise ValueError(f"done_logit_offset must be finite, got {self.done_logit_offset}")
        for name in ("min_std", "z_std", "done_pos_weight"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be a finite number ≥ 0, got {value}")
        if self.done_pos_weight <= 0:
            raise ValueError(f"done_pos_weight must be > 0, got {self.done_pos_weight}")

    @property
    def stoch_size(self) -> int:
        """Width of s: `stoch_dim` (Gaussian) or groups × classes (categorical, one-hot)."""
        return self.stoch_dim if self.stoch == "gaussian" else self.groups * self.classes

    @property
    def stats_size(self) -> int:
        """Width of a distribution's parameters: mean and std, or the log-probabilities."""
        return 2 * self.stoch_dim if self.stoch == "gaussian" else self.groups * self.classes

    @property
    def feature_dim(self) -> int:
        """Width of `RSSM.features`: [h, s]."""
        return self.deter_dim + self.stoch_size

    def to_dict(self) -> dict:
        return {"memory": "rssm", **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> RSSMConfig:
        d = dict(d)
        kind = d.pop("memory", "rssm")
        if kind != "rssm":
            raise ValueError(f"config is for memory {kind!r}, not 'rssm'")
        return cls(**d)


class RSSMState(NamedTuple):
    """The memory's state at a frame: h (B, deter_dim), s (B, stoch_size)."""

    h: torch.Tensor
    s: torch.Tensor


class Imagined(NamedTuple):
    """One prior step (`RSSM.imagine`); the z, reward and done of the step into the new state."""

    state: RSSMState
    z: torch.Tensor  # (B, Z): the decoder's mean at the imagined state (its randomness is s's)
    reward: torch.Tensor  # (B,)
    done_probability: torch.Tensor  # (B,): with the training's positive weight divided out


class Heads(NamedTuple):
    """What the features [h, s] predict; leading dims (B,) or (B, T)."""

    z_mean: torch.Tensor  # (..., Z)
    z_log_std: torch.Tensor  # (Z,) or broadcastable
    reward: torch.Tensor  # (...,)
    done_logit: torch.Tensor  # (...,) as trained (weighted by done_pos_weight)


class Posteriors(NamedTuple):
    """`RSSM.observe_sequence`: the posterior states of frames 1 … T of a chunk, and the last."""

    h: torch.Tensor  # (B, T, deter_dim)
    s: torch.Tensor  # (B, T, stoch_size)
    stats: torch.Tensor  # (B, T, stats_size)
    final: RSSMState


def mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    """One hidden ELU layer (PlaNet's and DreamerV2's activation)."""
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ELU(), nn.Linear(hidden, n_out))


class RSSM(nn.Module):
    """GRU deterministic state, Gaussian or categorical stochastic state, over V's z."""

    def __init__(self, config: RSSMConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or RSSMConfig()
        self.img_in = nn.Sequential(nn.Linear(c.stoch_size + c.action_dim, c.hidden_dim), nn.ELU())
        self.gru = nn.GRUCell(c.hidden_dim, c.deter_dim)
        self.prior_net = mlp(c.deter_dim, c.hidden_dim, c.stats_size)
        self.embed = nn.Sequential(nn.Linear(c.latent_dim, c.hidden_dim), nn.ELU())
        self.post_net = mlp(c.deter_dim + c.hidden_dim, c.hidden_dim, c.stats_size)
        self.decoder = mlp(c.feature_dim, c.hidden_dim, c.latent_dim)
        self.reward_head = mlp(c.feature_dim, c.hidden_dim, 1)
        self.done_head = mlp(c.feature_dim, c.hidden_dim, 1)
        self.z_log_std = nn.Parameter(torch.zeros(c.latent_dim), requires_grad=c.z_std == 0.0)
        if c.z_std > 0:
            with torch.no_grad():
                self.z_log_std.fill_(math.log(c.z_std))

    # -- the memory protocol ----------------------------------------------------------------------

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> RSSMState:
        """h = 0, s = 0: the state before an episode's first frame."""
        c, device = self.config, device or self.z_log_std.device
        return RSSMState(
            torch.zeros(batch, c.deter_dim, device=device),
            torch.zeros(batch, c.stoch_size, device=device),
        )

    def observe(
        self,
        state: RSSMState,
        z: torch.Tensor,
        action: torch.Tensor,
        generator: torch.Generator | None = None,
        sample: bool = True,
    ) -> RSSMState:
        """The posterior state at a real frame z (B, Z), reached by `action` (B, A) from `state`.

        At an episode's first frame pass `initial_state` and a zero action. `sample=False`
        takes the posterior's mean (Gaussian) or mode (categorical) instead of a draw.
        """
        h = self.transition(state, action)
        stats = self.posterior_stats(h, self.embed(z))
        return RSSMState(h, self.sample(stats, 1.0 if sample else 0.0, generator))

    def imagine(
        self,
        state: RSSMState,
        action: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Imagined:
        """One prior step at temperature τ (see the module docstring): next state, z, r, P(done)."""
        h = self.transition(state, action)
        s = self.sample(self.prior_stats(h), temperature, generator)
        new = RSSMState(h, s)
        heads = self.heads(self.features(new))
        return Imagined(new, heads.z_mean, heads.reward, self.done_probability(heads.done_logit))

    def observe_sequence(
        self,
        state: RSSMState | None,
        z_first: torch.Tensor,
        z_next: torch.Tensor,
        actions: torch.Tensor,
        resets: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Posteriors:
        """Posterior states along a chunk of steps (B, T), as training reads episodes.

        Step t goes from frame t by `actions[:, t]` to frame t + 1 and observes its z,
        `z_next[:, t]`. Where `resets[:, t]` an episode starts: the state first restarts from
        `initial_state` on that episode's first frame `z_first[:, t]` (zero action), so nothing
        of the previous episode reaches it. `state` None: every row starts at `initial_state`
        (then column 0 must be an episode start, or the chunk is read as one from h = 0).
        The first frame only seeds the state (its posterior is not scored: a dream takes that
        frame from V, as the MDN-RNN's reset bank does).
        """
        b, t_len = actions.shape[:2]
        if state is None:
            state = self.initial_state(b, actions.device)
        embedded = self.embed(z_next)
        zero_action = torch.zeros_like(actions[:, 0])
        hs, ss, stats = [], [], []
        for t in range(t_len):
            if resets is not None and bool(resets[:, t].any()):
                first = self.observe(self.initial_state(b), z_first[:, t], zero_action, generator)
                keep = resets[:, t].unsqueeze(-1)
                state = RSSMState(
                    torch.where(keep, first.h, state.h), torch.where(keep, first.s, state.s)
                )
            h = self.transition(state, actions[:, t])
            post = self.posterior_stats(h, embedded[:, t])
            state = RSSMState(h, self.sample(post, 1.0, generator))
            hs.append(h)
            ss.append(state.s)
            stats.append(post)
        stack = torch.stack
        return Posteriors(stack(hs, dim=1), stack(ss, dim=1), stack(stats, dim=1), state)

    def features(self, state: RSSMState) -> torch.Tensor:
        """[h, s] (..., deter_dim + stoch_size): what the heads read and an agent sees beside z."""
        return torch.cat([state.h, state.s], dim=-1)

    # -- the parts ---------------------------------------------------------------------------------

    def transition(self, state: RSSMState, action: torch.Tensor) -> torch.Tensor:
        """h' = GRU(h, [s, a]), the deterministic step prior and posterior share (any leading dims)."""
        x = self.img_in(torch.cat([state.s, action], dim=-1))
        lead = x.shape[:-1]
        h = self.gru(x.reshape(-1, x.shape[-1]), state.h.reshape(-1, state.h.shape[-1]))
        return h.view(*lead, -1)

    def prior_stats(self, h: torch.Tensor) -> torch.Tensor:
        """Parameters of p(s | h) (..., stats_size), see `distribution`."""
        return self.distribution(self.prior_net(h))

    def posterior_stats(self, h: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
        """Parameters of q(s | h, z) from h and `embed(z)`."""
        return self.distribution(self.post_net(torch.cat([h, embedded], dim=-1)))

    def distribution(self, raw: torch.Tensor) -> torch.Tensor:
        """A net's raw output → [mean, std] (Gaussian, std ≥ min_std) or unimixed log-probs."""
        c = self.config
        if c.stoch == "gaussian":
            mean, raw_std = raw.chunk(2, dim=-1)
            return torch.cat([mean, F.softplus(raw_std) + c.min_std], dim=-1)
        logits = raw.unflatten(-1, (c.groups, c.classes))
        probs = torch.softmax(logits, dim=-1)
        if c.unimix > 0:
            probs = (1.0 - c.unimix) * probs + c.unimix / c.classes
        return probs.log().flatten(-2)

    def sample(
        self, stats: torch.Tensor, temperature: float, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A draw of s from `distribution`'s stats at temperature τ (`temper`; 0: mean or mode).

        Gaussian: mean + std·√τ·ε, reparameterised. Categorical: one class per group from
        p^{1/τ} renormalised, as one-hot with straight-through gradients (DreamerV2, §2).
        """
        c = self.config
        tempered = temper(c, stats, temperature)
        if c.stoch == "gaussian":
            mean, std = tempered.chunk(2, dim=-1)
            if temperature == 0:
                return mean
            eps = torch.randn(mean.shape, generator=generator, device=mean.device)
            return mean + std * eps
        logp = stats.unflatten(-1, (c.groups, c.classes))
        if temperature == 0:
            index = logp.argmax(dim=-1)
        else:
            p = tempered.detach().unflatten(-1, (c.groups, c.classes)).exp().reshape(-1, c.classes)
            index = torch.multinomial(p, 1, generator=generator).view(logp.shape[:-1])
        probs = logp.exp()
        onehot = F.one_hot(index, c.classes).to(probs.dtype)
        return (onehot + probs - probs.detach()).flatten(-2)  # straight-through

    def heads(self, features: torch.Tensor) -> Heads:
        """Features [h, s] → the z decoder's mean and log std, the reward and the done logit."""
        log_std = self.z_log_std.clamp(min=Z_LOG_STD_MIN)
        return Heads(
            self.decoder(features),
            log_std,
            self.reward_head(features).squeeze(-1),
            self.done_head(features).squeeze(-1),
        )

    def done_probability(self, done_logit: torch.Tensor) -> torch.Tensor:
        """P(done) with the training's positive weight w undone (odds divided by w) and the
        calibrated `done_logit_offset` added."""
        c = self.config
        return torch.sigmoid(done_logit + (c.done_logit_offset - math.log(c.done_pos_weight)))


def temper(config: RSSMConfig, stats: torch.Tensor, temperature: float) -> torch.Tensor:
    """`distribution` stats at temperature τ: Gaussian std × √τ; categorical log p / τ,
    renormalised (p^{1/τ} / Σ p^{1/τ}). τ = 0 gives std 0 or the mode's one-hot (as log-probs
    of 0 and −inf). τ = 1 returns `stats` itself."""
    if temperature < 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number ≥ 0, got {temperature}")
    if temperature == 1.0:
        return stats
    if config.stoch == "gaussian":
        mean, std = stats.chunk(2, dim=-1)
        return torch.cat([mean, std * math.sqrt(temperature)], dim=-1)
    logp = stats.unflatten(-1, (config.groups, config.classes))
    if temperature == 0:
        mode = F.one_hot(logp.argmax(dim=-1), config.classes).bool()
        return torch.where(mode, 0.0, -math.inf).to(stats.dtype).flatten(-2)
    return torch.log_softmax(logp / temperature, dim=-1).flatten(-2)


def kl_divergence(config: RSSMConfig, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) (...,) in nats, summed over s's dims (or groups), for two `distribution` stats."""
    if config.stoch == "gaussian":
        m1, s1 = p.chunk(2, dim=-1)
        m2, s2 = q.chunk(2, dim=-1)
        kl = torch.log(s2 / s1) + (s1.pow(2) + (m1 - m2).pow(2)) / (2 * s2.pow(2)) - 0.5
        return kl.sum(dim=-1)
    lp = p.unflatten(-1, (config.groups, config.classes))
    lq = q.unflatten(-1, (config.groups, config.classes))
    return (lp.exp() * (lp - lq)).sum(dim=(-2, -1))


def entropy(config: RSSMConfig, stats: torch.Tensor) -> torch.Tensor:
    """Entropy (...,) in nats of a `distribution`'s stats, summed over s's dims (or groups)."""
    if config.stoch == "gaussian":
        std = stats.chunk(2, dim=-1)[1]
        return (0.5 * math.log(2 * math.pi * math.e) + std.log()).sum(dim=-1)
    probs = stats.unflatten(-1, (config.groups, config.classes)).exp()
    return -torch.special.xlogy(probs, probs).sum(dim=(-2, -1))


def z_log_prob(heads: Heads, z: torch.Tensor) -> torch.Tensor:
    """log N(z; decoder mean, decoder std) (...,), summed over z's dims."""
    log_std = heads.z_log_std
    err = (z - heads.z_mean) * torch.exp(-log_std)
    return (-0.5 * err.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(dim=-1)
