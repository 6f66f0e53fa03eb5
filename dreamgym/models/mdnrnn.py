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

`mu` and `logsigma` are (..., K, Z) for both, so the mixture's functions
(`dreamgym.models.mixture`: likelihood, mean, sampling; importable from here too) tell the kinds
apart by the shape of `logpi` (`mixture_kind`) and serve both.

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

from dreamgym.models.mixture import (  # noqa: F401  (re-exported: their old home)
    LOG_2PI,
    NLL_REDUCTIONS,
    mdn_log_prob,
    mdn_mean,
    mdn_nll,
    mixture_kind,
    mixture_noise_width,
    pick_components,
    sample_mdn,
)

LOG_SIGMA_MIN = -5.0
"""log σ is bounded smoothly to [LOG_SIGMA_MIN, LOG_SIGMA_MAX] so the likelihood cannot blow up."""
LOG_SIGMA_MAX = 2.0
MATMUL_MODES = ("float32", "bfloat16", "bfloat16-emulated")
"""How the inference step's matmuls run: float32; bfloat16 operands on bf16 hardware (float32
sums, a bfloat16 result); or those same numbers through float32 matmuls (operands and result
rounded to bfloat16), for hardware where torch would emulate a bf16 matmul ~100× slower."""
MIXTURE_KINDS = ("per_dim", "shared")
"""`per_dim`: a mixture per latent dim (the paper's code); `shared`: one mixture over all of z."""
LEGACY_MIXTURE = "shared"
"""What a saved config without a `mixture` key was trained with (bundles before per-dim M)."""


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

        Without autograd this is the dream's arithmetic (`lstm_rows`, then the heads on the
        slice [h' | 1] of the next state rows; h' is a view with row stride Z + H + 1 + A).
        """
        if torch.is_grad_enabled():
            h, c = self.recurrent_step(z, actions, state)
            return self.heads(h), (h, c)
        x_next, c = self._rows_step(z, actions, state)
        lat, hid = self.config.latent_dim, self.config.hidden_dim
        out = rows_mm(x_next[:, lat : lat + hid + 1], self.fused_weight("head"))
        return self._split_heads(out[:, : self.head.out_features]), (x_next[:, lat : lat + hid], c)

    def recurrent_step(
        self, z: torch.Tensor, actions: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Only the LSTM update (what the transfer wrapper and the ensemble tracker need).

        Without autograd it is `lstm_rows`, the dream's own arithmetic, so h tracked beside a
        dream is bit for bit the dream's h; equal to `torch.lstm_cell` up to float rounding
        (~1e-6). With autograd it is `torch.lstm_cell`.
        """
        if torch.is_grad_enabled():
            lstm = self.lstm
            x = torch.cat([z, actions], dim=-1)
            return torch.lstm_cell(
                x, state, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0
            )
        x_next, c = self._rows_step(z, actions, state)
        lat = self.config.latent_dim
        return x_next[:, lat : lat + self.config.hidden_dim], c

    def _rows_step(
        self, z: torch.Tensor, actions: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`lstm_rows` from loose z, a, (h, c): → (next state rows with h' and the ones, c')."""
        h, c = state
        ones = torch.ones(z.shape[0], 1, device=z.device, dtype=z.dtype)
        x = torch.cat([z, h, ones, actions], dim=1)
        x_next = torch.empty_like(x)
        lat, hid = self.config.latent_dim, self.config.hidden_dim
        x_next[:, lat + hid].fill_(1.0)
        c = c.clone()
        self.lstm_rows(x, c, x_next[:, lat : lat + hid])
        return x_next, c

    def lstm_rows(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        h_out: torch.Tensor,
        mode: str = "float32",
    ) -> None:
        """The LSTM cell on state rows x = [z | h | 1 | a] (B, Z + H + 1 + A), inference only.

        One matmul x @ [W_ih(z); W_hh; b_ih + b_hh; W_ih(a)] gives the gates (biases ride on the
        column of ones), in the order (i, f, o, g) with g's weights scaled by −2 so that one
        in-place sigmoid covers all four: tanh(x) = 1 − 2σ(−2x) (torch's CPU tanh is 4× slower
        than its sigmoid). c (B, H) is updated in place; h' = o·tanh(c') is written into `h_out`
        (B, H). `dtype` is the matmul's (bfloat16: the gates are rounded to it, the cell
        arithmetic stays float32).
        """
        hid = self.config.hidden_dim
        gates = rows_mm(x, self.fused_weight("lstm", mode), mode)[:, : 4 * hid]
        gates.sigmoid_()  # (i, f, o, σ(−2g)); rows of a multiple of 16 (see fused_weight)
        i, f, o, s = gates.split(hid, dim=1)
        c.mul_(f).add_(i).addcmul_(i, s, value=-2.0)  # c' = f·c + i·tanh(g)
        torch.mul(c, -2.0, out=h_out).sigmoid_()
        torch.addcmul(o, o, h_out, value=-2.0, out=h_out)  # h' = o·tanh(c')

    def fused_weight(self, which: str, mode: str = "float32") -> torch.Tensor:
        """Cached matmul operands (inputs, outputs) for the inference step, as `mode` wants them
        (`MATMUL_MODES`: float32, bfloat16, or float32 holding bfloat16-rounded values).

        "lstm": (Z + H + 1 + A, 4H padded to 16) = [W_ih(z) | W_hh | b_ih + b_hh | W_ih(a)]ᵀ, gate
        columns (i, f, o, g) with g's × −2 (see `lstm_rows`); "head": (H + 1, head_size padded to
        16) = [W | b]ᵀ. Rebuilt when a weight is replaced (`.to`, `load_state_dict`) or changed
        in place (optimizer steps bump a tensor's version); writes through `.data` bypass the
        version counter and are not seen.
        """
        lstm = self.lstm
        if which == "lstm":
            params = (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
        else:
            params = (self.head.weight, self.head.bias)
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
        cache: dict = self.__dict__.setdefault("_fused_cache", {})
        if mode not in MATMUL_MODES:
            raise ValueError(f"matmul mode must be one of {MATMUL_MODES}, got {mode!r}")
        if (which, mode) not in cache or cache[which, mode][0] != key:
            with torch.inference_mode(False), torch.no_grad():
                lstm = which == "lstm"
                w = _lstm_operand(*params, self.config) if lstm else _head_operand(*params)
                if mode != "float32":
                    w = w.to(torch.bfloat16)
                if mode == "bfloat16-emulated":
                    w = w.float()
                cache[which, mode] = (key, w.contiguous())
        return cache[which, mode][1]

    def done_probability(self, done_logit: torch.Tensor) -> torch.Tensor:
        """P(done) with the training's positive weight w undone (odds divided by w), then the
        calibrated offset added to the logit (`MDNRNNConfig.done_logit_offset`)."""
        shift = self.config.done_logit_offset - math.log(self.config.done_pos_weight)
        return torch.sigmoid(done_logit + shift)


def rows_mm(a: torch.Tensor, w: torch.Tensor, mode: str = "float32") -> torch.Tensor:
    """a @ w as `mode` (MATMUL_MODES) computes it; float32 in, float32 out."""
    if mode == "float32":
        return torch.mm(a, w)
    if mode == "bfloat16":
        return torch.mm(a.to(torch.bfloat16), w).float()
    return torch.mm(a.to(torch.bfloat16).float(), w).to(torch.bfloat16).float()


def _lstm_operand(
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor,
    b_hh: torch.Tensor,
    config: MDNRNNConfig,
) -> torch.Tensor:
    """`MDNRNN.fused_weight("lstm")` before rounding: rows in the state row's order."""
    hid, lat = config.hidden_dim, config.latent_dim
    bias = (b_ih + b_hh).unsqueeze(1)
    w = torch.cat([w_ih[:, :lat], w_hh, bias, w_ih[:, lat:]], dim=1).float()
    w = w.view(4, hid, -1)[[0, 1, 3, 2]].clone()  # torch's (i, f, g, o) → (i, f, o, g)
    w[3].mul_(-2.0)
    # Zero gate columns up to a multiple of 16: torch's CPU sigmoid rounds the scalar tail of
    # a contiguous tensor differently from the rest, so a (B, 4H) tensor with a tail would
    # treat rows unequally; a padded one is sigmoided row by row, every row alike.
    w = torch.nn.functional.pad(w.reshape(4 * hid, -1), (0, 0, 0, -4 * hid % 16))
    return w.t()


def _head_operand(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """`MDNRNN.fused_weight("head")` before rounding: [W | b]ᵀ, outputs padded with zero
    columns to a multiple of 16 (MKL's sgemm ran ~1.3× faster on the paper's CarRacing head:
    482 → 496 outputs)."""
    w = torch.cat([weight, bias.unsqueeze(1)], dim=1).float()
    return torch.nn.functional.pad(w, (0, 0, 0, -w.shape[0] % 16)).t()
