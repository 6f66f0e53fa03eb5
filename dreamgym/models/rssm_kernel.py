"""An RSSM world's dream step, in the shape the batched dream core (`dreamgym.envs.dream`) steps.

The core keeps one row per env and hands a kernel the step's block of uniforms; the MDN-RNN's
kernel is `dreamgym.models.mdn_kernel.DreamKernel`, this is the RSSM's (`dreamgym.models.rssm`):

- **A row is [z | h | s]**: V's z of the current frame, then the RSSM's features [h, s], so the
  observation "zh" ([z, features], what the controller reads) is a view of the row, as it is
  for the MDN-RNN. The RSSM has no cell state: its `c` is (B, 0).
- **A step is the prior's**: h' = GRU(h, [s, a]), s' drawn from p(s' | h') at temperature τ
  (`dreamgym.models.rssm.temper`), then the heads on [h', s']: z' is the decoder's mean (the
  dream's randomness is s's), the reward, and P(done) with the training weight undone and the
  calibrated offset added.
- **The draw from the step's uniforms**: Gaussian s by Box–Muller (`normal_from_uniform`),
  categorical s by inverse CDF, one uniform per group; the done draw is the block's last column.
  So a step calls the generator once, and rows that share their noise (`noise_groups`) dream
  alike, as in an MDN-RNN dream.
- **A reset is the posterior's**: a new episode's state is the one the real-env tracker reaches
  on its first frame (`RSSMMemory` with the posterior's mean): [h, s] from h = s = 0, a zero
  action and the frame's z, so a dream starts where a real episode's tracking would.

The step runs in float32 (the MDN kernel's bfloat16 matmul modes are not offered here).
"""

from __future__ import annotations

import math

import torch

from dreamgym.models.mdn_kernel import StepNoise, run_parts
from dreamgym.models.noise import gaussian_width, normal_from_uniform
from dreamgym.models.rssm import RSSM, RSSMState, temper


class RSSMKernel:
    """The dream's step of one RSSM: state rows in, next rows, reward and P(done) out."""

    def __init__(self, rssm: RSSM) -> None:
        c = rssm.config
        self.model = rssm
        self.latent, self.deter, self.stoch = c.latent_dim, c.deter_dim, c.stoch_size
        self.action = c.action_dim
        self.width = c.latent_dim + c.feature_dim
        """Columns of a state row [z | h | s]."""
        choices = c.groups if c.stoch == "categorical" else 0
        gauss = gaussian_width(c.stoch_dim) if c.stoch == "gaussian" else 0
        self.noise = StepNoise(
            slice(0, choices), slice(choices, choices + gauss), choices + gauss, choices + gauss + 1
        )

    # --- state rows -----------------------------------------------------------------------------
    def new_rows(self, batch: int, device: torch.device | str) -> torch.Tensor:
        """(batch, width) state rows of zeros (every env is reset before its first step)."""
        return torch.zeros(batch, self.width, device=device)

    def new_cell(self, batch: int, device: torch.device | str) -> torch.Tensor:
        """The RSSM has no cell state: (batch, 0)."""
        return torch.zeros(batch, 0, device=device)

    def z(self, x: torch.Tensor) -> torch.Tensor:
        """The z view of state rows."""
        return x[:, : self.latent]

    def h(self, x: torch.Tensor) -> torch.Tensor:
        """The features [h, s] view of state rows (what "zh" shows beside z)."""
        return x[:, self.latent :]

    def zh(self, x: torch.Tensor) -> torch.Tensor:
        """The [z | h | s] rows themselves (obs "zh")."""
        return x

    def reset_rows(
        self, x: torch.Tensor, c: torch.Tensor, rows: torch.Tensor, z0: torch.Tensor
    ) -> None:
        """Rows `rows` start an episode at z0 (R, Z): the posterior's mean state on that frame."""
        model, n = self.model, rows.shape[0]
        state = model.initial_state(n, x.device)
        zero_action = torch.zeros(n, self.action, device=x.device)
        first = model.observe(state, z0, zero_action, sample=False)
        x.index_copy_(0, rows, torch.cat([z0, first.h, first.s], dim=1))

    # --- the step ---------------------------------------------------------------------------
    def step(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        actions: torch.Tensor,
        uniforms: torch.Tensor,
        temperature: float,
        parts: list[slice] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One prior step of every row: → (next rows, reward (B,), P(done) (B,)).

        `c` is the (B, 0) cell the core keeps for every kernel; `parts` are row ranges stepped
        side by side on threads (`dreamgym.models.mdn_kernel.split_rows`), as the MDN kernel's.
        """
        b = x.shape[0]
        x_next = torch.empty_like(x)
        reward = torch.empty(b, device=x.device)
        p_done = torch.empty(b, device=x.device)
        args = (x, actions, uniforms, x_next, reward, p_done)

        def step_part(rows: slice) -> None:
            self._step_rows(tuple(t[rows] for t in args), temperature)

        run_parts(step_part, parts or [slice(0, b)])
        return x_next, reward, p_done

    def _step_rows(self, args: tuple[torch.Tensor, ...], temperature: float) -> None:
        x, actions, uniforms, x_next, reward, p_done = args
        model, lat, deter = self.model, self.latent, self.deter
        state = RSSMState(x[:, lat : lat + deter], x[:, lat + deter :])
        h = model.transition(state, actions)
        s = self.draw(model.prior_stats(h), uniforms, temperature)
        features = x_next[:, lat:]
        features[:, :deter].copy_(h)
        features[:, deter:].copy_(s)
        heads = model.heads(features)
        x_next[:, :lat].copy_(heads.z_mean)
        reward.copy_(heads.reward)
        p_done.copy_(model.done_probability(heads.done_logit))

    def draw(self, stats: torch.Tensor, uniforms: torch.Tensor, temperature: float) -> torch.Tensor:
        """s' from the prior's `stats` at τ, by the step's uniforms (see the module docstring)."""
        c = self.model.config
        if c.stoch == "gaussian":
            mean, std = stats.chunk(2, dim=-1)
            if temperature == 0:
                return mean.clone()
            eps = normal_from_uniform(uniforms[:, self.noise.gaussians], c.stoch_dim)
            return torch.addcmul(mean, std * math.sqrt(temperature), eps)
        logp = stats.unflatten(-1, (c.groups, c.classes))
        if temperature == 0:
            index = logp.argmax(dim=-1)
        else:
            cdf = temper(c, stats, temperature).unflatten(-1, (c.groups, c.classes)).exp()
            cdf = cdf.cumsum(dim=-1)
            u = uniforms[:, self.noise.choices].unsqueeze(-1)
            index = (cdf <= u).sum(dim=-1).clamp_(max=c.classes - 1)
        return torch.nn.functional.one_hot(index, c.classes).to(stats.dtype).flatten(-2)
