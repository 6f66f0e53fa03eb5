"""M: the MDN-RNN that predicts the next latent, the reward and the end of the episode.

An LSTM reads [z_t, a_t]; from its output h_{t+1} a mixture-density head gives p(z_{t+1}), and
two scalar heads give the reward r_t and a done logit (Ha & Schmidhuber 2018, §2.2 and appendix
A.2; done head as in their Doom experiment, §4.2). Temperature τ (§4.5): mixture weights π_k^{1/τ}
renormalised and σ scaled by √τ.

Two kinds of mixture (`MDNRNNConfig.mixture`):

- `"per_dim"` (default for new worlds, the paper's code, hardmaru/WorldModelsExperiments
  doomrnn.py): every latent dim has its own mixture of K one-dimensional Gaussians and picks its
  own component. `logpi` is (..., K, Z), normalised over K.
- `"shared"` (worlds trained before per-dim mixtures, whose config has no `mixture` key): one
  mixture of K diagonal Gaussians over all of z, one component choice for the whole vector.
  `logpi` is (..., K).

`mu` and `logsigma` are (..., K, Z) for both, so the functions below tell the kinds apart by the
shape of `logpi` (`mixture_kind`) and serve both.

Reward events (`MDNRNNConfig.reward_event` > 0, `dreamgym train --reward-events`): rewards that
come as discrete events on top of a per-step cost (CarRacing: +1000/N for each new track tile,
−0.1 a frame) are split in two. An event head gives the logit of "an event happens at this step"
and the reward head regresses what is left (the cost); the reward is their expectation,
reward + v · P(event), with v the event's size. A regressed spike of +3.3 on 30% of frames lets
the MSE err by a tenth of a point on every other frame (a parked car paid ≈ 0 instead of −0.1);
a classifier is sharp near P = 0 and cannot pay less than the cost or more than cost + v.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

from dreamgym.models.noise import draw_grouped

LOG_SIGMA_MIN = -5.0
"""log σ is bounded smoothly to [LOG_SIGMA_MIN, LOG_SIGMA_MAX] so the likelihood cannot blow up."""
LOG_SIGMA_MAX = 2.0
LOG_2PI = math.log(2.0 * math.pi)
MIXTURE_KINDS = ("per_dim", "shared")
"""`per_dim`: a mixture per latent dim (the paper's code); `shared`: one mixture over all of z."""
LEGACY_MIXTURE = "shared"
"""What a saved config without a `mixture` key was trained with (bundles before per-dim M)."""
NLL_REDUCTIONS = ("mean", "sum")
"""How the NLL of z_{t+1} is reduced over z's dims: averaged (the paper's code) or summed."""


@dataclass
class MDNRNNConfig:
    """Hyper-parameters of M."""

    latent_dim: int = 32
    """Size of z (must match V)."""
    action_dim: int = 3
    """Width of M's action input (Box: its size; Discrete: n, one-hot)."""
    hidden_dim: int = 256
    """LSTM units (the paper: 256 for CarRacing, 512 for Doom)."""
    n_mixtures: int = 5
    """K, the number of Gaussians in the mixture over z_{t+1}."""
    done_pos_weight: float = 1.0
    """Weight of positive (done) examples in the done loss; sampling undoes it (see done_probability)."""
    mixture: str = "per_dim"
    """"per_dim" (each latent dim its own mixture, the paper's code) or "shared" (one for all)."""
    done_logit_offset: float = 0.0
    """Added to the done logit when M is sampled (`dreamgym calibrate` fits it): teacher-forced
    along real episodes the done head can be calibrated while free-running dreams, which drift
    into states M is unsure of, still die too often. 0 = the head as trained."""
    reward_event: float = 0.0
    """v, the size of one reward event (see the module docstring); 0 = no event head, the reward
    head regresses the whole reward (every world trained before the option)."""
    reward_event_threshold: float = 0.0
    """A step whose reward exceeds this is an event (the event head's training label)."""

    def __post_init__(self) -> None:
        if self.mixture not in MIXTURE_KINDS:
            raise ValueError(f"mixture must be one of {MIXTURE_KINDS}, got {self.mixture!r}")
        offset = float(self.done_logit_offset)
        if not math.isfinite(offset):
            raise ValueError(f"done_logit_offset must be a finite number, got {offset}")
        self.done_logit_offset = offset
        event = float(self.reward_event)
        if not (math.isfinite(event) and event >= 0.0):
            raise ValueError(f"reward_event must be a finite number ≥ 0, got {event}")
        self.reward_event = event

    @property
    def has_reward_events(self) -> bool:
        """Whether M has an event head (`reward_event` > 0)."""
        return self.reward_event > 0.0

    def to_dict(self) -> dict:
        """The config as saved; options at their "off" value (an uncalibrated M, no event head)
        are left out, so configs written before them read back byte for byte."""
        d = asdict(self)
        for key in ("done_logit_offset", "reward_event"):
            if d[key] == 0.0:
                del d[key]
        if not self.has_reward_events:
            del d["reward_event_threshold"]
        return d

    def reward_events(self, rewards: torch.Tensor) -> torch.Tensor:
        """The event labels of real rewards (1.0 where r > reward_event_threshold)."""
        return (rewards > self.reward_event_threshold).to(rewards.dtype)

    @classmethod
    def from_dict(cls, d: dict) -> MDNRNNConfig:
        """A saved config; one without `mixture` predates per-dim mixtures and is "shared"."""
        return cls(**{"mixture": LEGACY_MIXTURE, **d})

    @property
    def head_size(self) -> int:
        """Outputs of M's head: mixture logits, means, log σ, then [event,] reward and done."""
        k, z = self.n_mixtures, self.latent_dim
        events = 1 if self.has_reward_events else 0
        return (k if self.mixture == "shared" else k * z) + 2 * k * z + 2 + events


class MDNOutput(NamedTuple):
    """One prediction of M; leading dims are (B,) for a step or (B, T) for a sequence."""

    logpi: torch.Tensor  # (..., K) shared or (..., K, Z) per dim: log weights, normalised over K
    mu: torch.Tensor  # (..., K, Z)
    logsigma: torch.Tensor  # (..., K, Z)
    reward: torch.Tensor  # (...,) expected reward (with events: cost + v · P(event))
    done_logit: torch.Tensor  # (...,) logit as trained (weighted by done_pos_weight)
    event_logit: torch.Tensor | None = None  # (...,) logit of a reward event; None: no event head


class MDNRNN(nn.Module):
    """M: LSTM over [z_t, a_t] with mixture, reward and done heads."""

    def __init__(self, config: MDNRNNConfig | None = None) -> None:
        super().__init__()
        self.config = config or MDNRNNConfig()
        c = self.config
        self.lstm = nn.LSTM(c.latent_dim + c.action_dim, c.hidden_dim, batch_first=True)
        self.head = nn.Linear(c.hidden_dim, c.head_size)

    @property
    def hidden_dim(self) -> int:
        return self.config.hidden_dim

    def initial_state(
        self, batch: int, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """h_0 = c_0 = 0, each (batch, hidden_dim)."""
        zeros = torch.zeros(batch, self.config.hidden_dim, device=device)
        return zeros, zeros.clone()

    def heads(self, h: torch.Tensor) -> MDNOutput:
        """LSTM output h (..., H) → the mixture, reward and done predictions."""
        return self._split_heads(self.head(h))

    def _split_heads(self, out: torch.Tensor) -> MDNOutput:
        """The head's raw output (..., head_size) → MDNOutput."""
        c = self.config
        k, z = c.n_mixtures, c.latent_dim
        lead = out.shape[:-1]
        n_logits = k if c.mixture == "shared" else k * z
        event_logit = None
        if c.has_reward_events:
            logits, mu, raw_sigma, event, reward, done = torch.split(
                out, [n_logits, k * z, k * z, 1, 1, 1], dim=-1
            )
            event_logit = event.squeeze(-1)
            reward = reward + c.reward_event * torch.sigmoid(event)
        else:
            logits, mu, raw_sigma, reward, done = torch.split(
                out, [n_logits, k * z, k * z, 1, 1], dim=-1
            )
        if c.mixture == "shared":
            logpi = torch.log_softmax(logits, dim=-1)
        else:
            logpi = torch.log_softmax(logits.reshape(*lead, k, z), dim=-2)
        logsigma = LOG_SIGMA_MIN + (LOG_SIGMA_MAX - LOG_SIGMA_MIN) * torch.sigmoid(raw_sigma)
        return MDNOutput(
            logpi,
            mu.reshape(*lead, k, z),
            logsigma.reshape(*lead, k, z),
            reward.squeeze(-1),
            done.squeeze(-1),
            event_logit,
        )

    def forward(
        self,
        z: torch.Tensor,
        actions: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        resets: torch.Tensor | None = None,
    ) -> tuple[MDNOutput, tuple[torch.Tensor, torch.Tensor]]:
        """Sequences z (B, T, Z), encoded actions (B, T, A) → predictions for each next step.

        `resets` (B, T) bool marks steps where an episode starts: (h, c) is zeroed just before
        them, so a row may hold several episodes back to back (whole-episode training with the
        state carried between chunks). The sequence is cut at the columns where any row resets
        and each piece runs through the fused `nn.LSTM`: one call per piece, not per step.
        """
        x = torch.cat([z, actions], dim=-1)
        if resets is None:
            if state is not None:
                state = (state[0].unsqueeze(0).contiguous(), state[1].unsqueeze(0).contiguous())
            h_seq, (h, c) = self.lstm(x, state)
            return self.heads(h_seq), (h.squeeze(0), c.squeeze(0))
        h, c = state if state is not None else self.initial_state(z.shape[0], z.device)
        h, c = h.unsqueeze(0), c.unsqueeze(0)
        cuts = torch.nonzero(resets.any(dim=0)).flatten().tolist()
        bounds = sorted({0, *cuts, x.shape[1]})
        pieces = []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            keep = (~resets[:, a]).to(x.dtype).view(1, -1, 1)
            piece, (h, c) = self.lstm(x[:, a:b], ((h * keep).contiguous(), (c * keep).contiguous()))
            pieces.append(piece)
        h_seq = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
        return self.heads(h_seq), (h.squeeze(0), c.squeeze(0))

    def step(
        self, z: torch.Tensor, actions: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[MDNOutput, tuple[torch.Tensor, torch.Tensor]]:
        """One batched step: z (B, Z), encoded actions (B, A), state (h, c) → predictions, new state.

        Without autograd, h is written beside a column of ones so the head's bias rides in its
        matmul (no bias broadcast); h is then a view with row stride H + 1, not contiguous.
        """
        if torch.is_grad_enabled():
            h, c = self.recurrent_step(z, actions, state)
            return self.heads(h), (h, c)
        hd = self.config.hidden_dim
        h_aug = torch.empty(z.shape[0], hd + 1, device=z.device, dtype=z.dtype)
        h_aug[:, hd].fill_(1.0)
        h, c = self._fused_lstm_step(z, actions, state, h_out=h_aug[:, :hd])
        w = self._fused_weight("head")  # output rows padded to a multiple of 16 (see below)
        out = torch.mm(h_aug, w.t())[:, : self.head.out_features]
        return self._split_heads(out), (h, c)

    def recurrent_step(
        self, z: torch.Tensor, actions: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Only the LSTM update (what the transfer wrapper needs to track h).

        Without autograd (the dream, the wrappers) this runs `_fused_lstm_step`: the same cell
        with one matmul instead of two plus two bias broadcasts, ~1.4× faster at 1024 envs; equal
        to `torch.lstm_cell` up to float rounding (~1e-6). With autograd it is `torch.lstm_cell`.
        """
        lstm = self.lstm
        if torch.is_grad_enabled():
            x = torch.cat([z, actions], dim=-1)
            return torch.lstm_cell(
                x, state, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0
            )
        return self._fused_lstm_step(z, actions, state)

    def _fused_lstm_step(
        self,
        z: torch.Tensor,
        actions: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        h_out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The LSTM cell as [z, a, h, 1] @ [W_ih | W_hh | b_ih + b_hh]ᵀ, gates reordered (i, f, o, g)
        so one in-place sigmoid covers three of them; h is written into `h_out` when given.
        Inference only: the fused weights are a copy."""
        h, c = state
        hd = self.config.hidden_dim
        ones = torch.ones(z.shape[0], 1, device=z.device, dtype=z.dtype)
        gates = torch.mm(torch.cat([z, actions, h, ones], dim=1), self._fused_weight("lstm").t())
        gates[:, : 3 * hd].sigmoid_()
        gates[:, 3 * hd :].tanh_()
        i, f, o, g = gates.split(hd, dim=1)
        c_next = f * c
        c_next.addcmul_(i, g)
        h_next = torch.tanh(c_next, out=h_out) if h_out is not None else torch.tanh(c_next)
        h_next.mul_(o)
        return h_next, c_next

    def _fused_weight(self, which: str) -> torch.Tensor:
        """Cached bias-augmented weights for the inference step.

        "lstm": (4H, Z + A + H + 1) = [W_ih | W_hh | b_ih + b_hh], gate rows reordered (i, f, o, g);
        "head": (head_size + pad, H + 1) = [W | b]. Rebuilt when a weight is replaced (`.to`,
        `load_state_dict`) or changed in place (optimizer steps bump a tensor's version); writes
        through `.data` bypass the version counter and are not seen.
        """
        lstm = self.lstm
        if which == "lstm":
            params = (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
        else:
            params = (self.head.weight, self.head.bias)
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
        cache: dict = self.__dict__.setdefault("_fused_cache", {})
        if which not in cache or cache[which][0] != key:
            with torch.inference_mode(False), torch.no_grad():
                if which == "lstm":
                    hd = self.config.hidden_dim
                    bias = (params[2] + params[3]).unsqueeze(1)
                    w = torch.cat([params[0], params[1], bias], dim=1)
                    w = w.view(4, hd, -1)[[0, 1, 3, 2]].reshape(4 * hd, -1)
                else:
                    w = torch.cat([params[0], params[1].unsqueeze(1)], dim=1)
                    # Zero rows up to a multiple of 16 outputs: MKL's sgemm runs ~1.3× faster
                    # on the head (327 → 336 outputs for the paper's CarRacing size).
                    w = torch.nn.functional.pad(w, (0, 0, 0, -w.shape[0] % 16))
                cache[which] = (key, w.contiguous())
        return cache[which][1]

    def _fused_lstm_weight(self) -> torch.Tensor:
        """(4H, Z + A + H + 1) copy of the LSTM weights and summed biases, gate order (i, f, o, g).

        Cached; rebuilt when a weight is replaced (`.to`, `load_state_dict`) or changed in place
        (optimizer steps bump the tensors' version). Writes through `.data` are not seen.
        """
        lstm = self.lstm
        params = (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
        cache = self.__dict__.get("_fused_cache")
        if cache is None or cache[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                hd = self.config.hidden_dim
                w = torch.cat([params[0], params[1], (params[2] + params[3]).unsqueeze(1)], dim=1)
                w = w.view(4, hd, -1)[[0, 1, 3, 2]].reshape(4 * hd, -1).contiguous()
            cache = (key, w)
            self.__dict__["_fused_cache"] = cache
        return cache[1]

    def done_probability(self, done_logit: torch.Tensor) -> torch.Tensor:
        """P(done) with the training's positive weight w undone (odds divided by w), then the
        calibrated offset added to the logit (`MDNRNNConfig.done_logit_offset`)."""
        shift = self.config.done_logit_offset - math.log(self.config.done_pos_weight)
        return torch.sigmoid(done_logit + shift)


def mixture_kind(logpi: torch.Tensor, mu: torch.Tensor) -> str:
    """ "per_dim" when logpi is (..., K, Z) like mu, "shared" when it is (..., K)."""
    if logpi.shape == mu.shape:
        return "per_dim"
    if logpi.shape == mu.shape[:-1]:
        return "shared"
    raise ValueError(
        f"logpi {tuple(logpi.shape)} fits neither a shared mixture (mu's shape without Z) nor a "
        f"per-dim one (mu's shape) for mu {tuple(mu.shape)}"
    )


def mdn_log_prob(
    logpi: torch.Tensor, mu: torch.Tensor, logsigma: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """log p(target) under the mixture; target (..., Z) → (...,). Stable via logsumexp.

    Per dim: log p = Σ_d log Σ_k π_kd N(z_d; μ_kd, σ_kd) (each dim its own mixture); shared:
    log Σ_k π_k Π_d N(z_d; μ_kd, σ_kd).
    """
    t = target.unsqueeze(-2)  # (..., 1, Z)
    normed = (t - mu) * torch.exp(-logsigma)
    if mixture_kind(logpi, mu) == "per_dim":
        lognormal = -0.5 * normed.pow(2) - logsigma - 0.5 * LOG_2PI  # (..., K, Z)
        return torch.logsumexp(logpi + lognormal, dim=-2).sum(dim=-1)
    comp = (-0.5 * normed.pow(2) - logsigma - 0.5 * LOG_2PI).sum(dim=-1)  # (..., K)
    return torch.logsumexp(logpi + comp, dim=-1)


def mdn_nll(
    logpi: torch.Tensor,
    mu: torch.Tensor,
    logsigma: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "sum",
) -> torch.Tensor:
    """Mean negative log-likelihood per step, optionally masked.

    `reduction` says how a step's NLL is reduced over z's dims: "sum" (the joint NLL of z) or
    "mean" (the paper's code: the loss is the mean over every (step, dim)).
    """
    if reduction not in NLL_REDUCTIONS:
        raise ValueError(f"reduction must be one of {NLL_REDUCTIONS}, got {reduction!r}")
    nll = -mdn_log_prob(logpi, mu, logsigma, target)
    if reduction == "mean":
        nll = nll / mu.shape[-1]
    if mask is None:
        return nll.mean()
    mask = mask.to(nll.dtype)
    return (nll * mask).sum() / mask.sum().clamp(min=1.0)


def mdn_mean(logpi: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """The mixture's mean E[z] = Σ_k π_k μ_k (per dim or shared), (..., Z)."""
    if mixture_kind(logpi, mu) == "per_dim":
        return (logpi.exp() * mu).sum(dim=-2)
    return (logpi.exp().unsqueeze(-1) * mu).sum(dim=-2)


def sample_mdn(
    logpi: torch.Tensor,
    mu: torch.Tensor,
    logsigma: torch.Tensor,
    temperature: float,
    generator: torch.Generator | None = None,
    noise_groups: int | None = None,
) -> torch.Tensor:
    """Draw z_{t+1} (B, Z) at temperature τ: weights ∝ π^{1/τ}, σ × √τ (paper §4.5).

    A per-dim mixture picks a component for each dim on its own (τ scales each dim's logits);
    a shared one picks one component for the whole of z. `noise_groups` R: rows i ≡ j (mod R)
    use the same random numbers (common random numbers, `dreamgym.models.noise`); None: every
    row its own.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b, k, z = mu.shape
    per_dim = mixture_kind(logpi, mu) == "per_dim"
    # Gumbel-max on logπ/τ picks component k with probability π_k^{1/τ} / Σ π^{1/τ}.
    shape = (b, k, z) if per_dim else (b, k)
    like = {"generator": generator, "device": mu.device, "dtype": mu.dtype}
    u = draw_grouped(lambda s: torch.rand(s, **like), shape, noise_groups)
    gumbel = -torch.log(-torch.log(u.clamp_(1e-20, 1.0 - 1e-7)))
    if per_dim:
        sel = torch.argmax(logpi / temperature + gumbel, dim=1, keepdim=True)  # (B, 1, Z)
    else:
        idx = torch.argmax(logpi / temperature + gumbel, dim=-1)
        sel = idx.view(b, 1, 1).expand(b, 1, z)
    mu_k = mu.gather(1, sel).squeeze(1)
    sigma_k = torch.exp(logsigma.gather(1, sel).squeeze(1)) * math.sqrt(temperature)
    eps = draw_grouped(lambda s: torch.randn(s, **like), (b, z), noise_groups)
    return mu_k + sigma_k * eps
