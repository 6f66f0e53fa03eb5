"""M's dream step in few, large torch ops: the LSTM, the heads and the draw of z_{t+1}.

The dream (`dreamgym.envs.dream`) spends its time here, so the step is laid out for the CPU's
(and GPU's) matmul units and for as few passes over memory as torch's eager ops allow:

- **One row per env holds its state**: x = [z | h | 1 | a]. The LSTM's gates are one matmul,
  x @ [W_ih(z); W_hh; b_ih + b_hh; W_ih(a)] (biases ride on the column of ones), and the heads
  are a second one on the slice [h | 1] of the next row, so neither needs a `cat`; [z | h] (the
  paper's controller input, obs "zh") is a view of the row, not a copy.
- **One sigmoid for all four gates**: tanh(x) = 1 − 2σ(−2x), so the cell gate's weights are
  scaled by −2 when they are prepared and a single in-place sigmoid covers (i, f, o, g); tanh(c)
  is done the same way (torch's CPU tanh is 4× slower than its sigmoid).
- **The mixture draw without `argmax`**: inverse CDF over K as elementwise ops that select the
  drawn component's μ and raw log σ on the way (`dreamgym.models.mixture.pick_components`); only
  the chosen log σ goes through the bounding sigmoid and the exp.
- **One block of uniforms per step** (`StepNoise`): the choices, the Gaussians (Box–Muller) and
  the done draw, so a step calls the generator once and common random numbers (`noise_groups`)
  repeat one block.

Precision: the two matmuls run as `mode` (`MATMUL_MODES`: float32; bfloat16 where the hardware
has it, `dreamgym.utils.hardware`; or bfloat16's numbers through float32 matmuls where it does
not); the LSTM state (h, c), the mixture's weights and the sampling are float32 in every mode.
The kernel draws what `MDNRNN.step` + `sample_mdn` draw from the same
uniforms, up to float rounding (a test holds it to that).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import torch

from dreamgym.models.mdnrnn import LOG_SIGMA_MAX, LOG_SIGMA_MIN, MATMUL_MODES, MDNRNN, rows_mm
from dreamgym.models.mixture import pick_components
from dreamgym.models.noise import gaussian_width, normal_from_uniform


class StepNoise(NamedTuple):
    """Where each kind of noise sits in a step's block of uniforms (columns)."""

    choices: slice  # one uniform per mixture choice (Z per dim, 1 shared)
    gaussians: slice  # gaussian_width(Z) uniforms → Z normals
    done: int  # the done draw (termination="sample")
    width: int


class DreamKernel:
    """The dream's step of one MDN-RNN: state rows and c in, the next rows, reward and P(done) out.

    Inference only; the matmul operands are `MDNRNN.fused_weight`'s (cached on M, rebuilt when
    its weights change), the LSTM is `MDNRNN.lstm_rows` (so h tracked by `recurrent_step` beside
    a dream is the dream's own, bit for bit).
    """

    def __init__(self, mdnrnn: MDNRNN, mode: str = "float32") -> None:
        if mode not in MATMUL_MODES:
            raise ValueError(f"the dream's matmul mode must be one of {MATMUL_MODES}, got {mode!r}")
        c = mdnrnn.config
        self.model, self.mode = mdnrnn, mode
        self.latent, self.hidden, self.action = c.latent_dim, c.hidden_dim, c.action_dim
        self.mixtures = c.n_mixtures
        self.choices = c.latent_dim if c.mixture == "per_dim" else 1
        self.n_logits = c.n_mixtures * self.choices
        self.ones_col = c.latent_dim + c.hidden_dim
        self.width = self.ones_col + 1 + c.action_dim
        """Columns of a state row [z | h | 1 | a]."""
        gauss = gaussian_width(c.latent_dim)
        self._tail_row: torch.Tensor | None = None
        self.noise = StepNoise(
            slice(0, self.choices),
            slice(self.choices, self.choices + gauss),
            self.choices + gauss,
            self.choices + gauss + 1,
        )

    # --- state rows -----------------------------------------------------------------------------
    def new_rows(self, batch: int, device: torch.device | str) -> torch.Tensor:
        """(batch, width) state rows: z = h = a = 0 and the column of ones."""
        x = torch.zeros(batch, self.width, device=device)
        x[:, self.ones_col] = 1.0
        return x

    def z(self, x: torch.Tensor) -> torch.Tensor:
        """The z view of state rows."""
        return x[:, : self.latent]

    def h(self, x: torch.Tensor) -> torch.Tensor:
        """The h view of state rows."""
        return x[:, self.latent : self.ones_col]

    def zh(self, x: torch.Tensor) -> torch.Tensor:
        """The [z | h] view of state rows (obs "zh")."""
        return x[:, : self.ones_col]

    def new_cell(self, batch: int, device: torch.device | str) -> torch.Tensor:
        """The LSTM's cell state c (batch, H) of zeros, kept beside the rows."""
        return torch.zeros(batch, self.hidden, device=device)

    def reset_rows(
        self, x: torch.Tensor, c: torch.Tensor, rows: torch.Tensor, z0: torch.Tensor
    ) -> None:
        """Rows `rows` start an episode at z0 (R, Z): h = c = 0 (the paper's h_0), in place."""
        x[:, : self.latent].index_copy_(0, rows, z0)
        x[:, self.latent : self.ones_col].index_fill_(0, rows, 0.0)
        c.index_fill_(0, rows, 0.0)

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
        """One step of every row: → (next rows, reward (B,), P(done) (B,)).

        `x` (B, width) are the current rows (their action columns are overwritten with the
        encoded `actions`, nothing else of them changes), `c` (B, H) is updated in place, and
        `uniforms` is the step's noise block (B, ≥ `noise.width` − 1; see `StepNoise`). `parts`
        (default: `split_rows`) are row ranges stepped side by side, the last on the calling thread
        and the others on threads of their own, each running torch on one thread; the caller
        keeps its own ops on one thread meanwhile (`torch_threads(1)`), or the parts' matmuls
        would each start a team of threads.
        """
        b = x.shape[0]
        self._tail(x.device)  # made here, read by the threads
        x_next = torch.empty_like(x)
        reward = torch.empty(b, device=x.device)
        p_done = torch.empty(b, device=x.device)
        args = (x, c, actions, uniforms, x_next, reward, p_done)

        def step_part(rows: slice) -> None:
            self._step_rows(tuple(t[rows] for t in args), temperature)

        run_parts(step_part, split_rows(b, x.device) if parts is None else parts)
        return x_next, reward, p_done

    def _tail(self, device: torch.device) -> torch.Tensor:
        """[1, 0, …, 0]: the columns of a new row after h (the ones, then a placeholder action)."""
        if self._tail_row is None or self._tail_row.device != device:
            self._tail_row = torch.zeros(self.width - self.ones_col, device=device)
            self._tail_row[0] = 1.0
        return self._tail_row

    def _step_rows(self, args: tuple[torch.Tensor, ...], temperature: float) -> None:
        x, c, actions, uniforms, x_next, reward, p_done = args
        out = self.predict(x, c, actions, x_next)
        self.draw(out, uniforms, temperature, x_next[:, : self.latent])
        self.reward_and_done(out, reward, p_done)

    def predict(
        self, x: torch.Tensor, c: torch.Tensor, actions: torch.Tensor, x_next: torch.Tensor
    ) -> torch.Tensor:
        """The LSTM and the heads on rows `x`: h' into `x_next` (its z columns left for the draw),
        c updated in place; → the heads' output (B, padded outputs)."""
        lat = self.latent
        x[:, self.ones_col + 1 :].copy_(actions)
        x_next[:, self.ones_col :].copy_(self._tail(x.device))  # [1 | a = 0]
        self.model.lstm_rows(x, c, x_next[:, lat : self.ones_col], self.mode)
        head = self.model.fused_weight("head", self.mode)
        return rows_mm(x_next[:, lat : self.ones_col + 1], head, self.mode)

    def expected_z(self, out: torch.Tensor) -> torch.Tensor:
        """The mixture's mean of z_{t+1}, Σ_k π_k μ_k (B, Z), at τ = 1: what ensemble members
        compare (`EnsembleKernel`); it reads `out` and writes nothing into it."""
        b, k = out.shape[0], self.mixtures
        logits = out[:, : self.n_logits].view(b, k, self.choices)
        mu = out[:, self.n_logits : self.n_logits + k * self.latent].view(b, k, self.latent)
        return (torch.softmax(logits, dim=1) * mu).sum(dim=1)

    def draw(
        self, out: torch.Tensor, uniforms: torch.Tensor, temperature: float, z_out: torch.Tensor
    ) -> None:
        """z_{t+1} into `z_out` from the heads' output (B, padded outputs)."""
        b, k, lat = out.shape[0], self.mixtures, self.latent
        logits = out[:, : self.n_logits].view(b, k, self.choices)
        # μ and raw log σ of every component, as one (B, 2, K, Z) view of the output
        values = out[:, self.n_logits : self.n_logits + 2 * k * lat].view(b, 2, k, lat)
        mu, raw = pick_components(
            logits, uniforms[:, self.noise.choices], temperature, values
        ).unbind(1)
        # σ·√τ = exp(MIN + (MAX − MIN)·sigmoid(raw) + ½ log τ): the bound of `_split_heads`.
        shift = LOG_SIGMA_MIN + 0.5 * math.log(temperature)
        sigma = _sigmoid_(raw).mul_(LOG_SIGMA_MAX - LOG_SIGMA_MIN).add_(shift).exp_()
        eps = normal_from_uniform(uniforms[:, self.noise.gaussians], lat)
        torch.addcmul(mu, sigma, eps, out=z_out)

    def reward_and_done(
        self, out: torch.Tensor, reward: torch.Tensor, p_done: torch.Tensor
    ) -> None:
        """The expected reward and P(done) (the training weight undone, the offset added)."""
        c = self.model.config
        col = self.n_logits + 2 * self.mixtures * self.latent
        if c.has_reward_events:
            _sigmoid_(reward.copy_(out[:, col])).mul_(c.reward_event).add_(out[:, col + 1])
            col += 1
        else:
            reward.copy_(out[:, col])
        # P(done) as `MDNRNN.done_probability`: the training weight undone, the offset added
        shift = c.done_logit_offset - math.log(c.done_pos_weight)
        _sigmoid_(p_done.copy_(out[:, col + 1]).add_(shift))


class EnsembleKernel:
    """K M's on one V stepped together: each member keeps its own (h, c), all share z.

    Every step each member reads [z_t, a_t] with its own LSTM state and predicts z_{t+1}; one
    member, drawn per env and step from uniforms of its own (so the step's block of noise is
    the one-world dream's: identical members dream exactly the world's dream), gives z_{t+1},
    the reward and P(done) (as MBPO and MOPO step their ensembles), and every member moves on
    from that z. The members' disagreement about z_{t+1} is

        d = max_k sqrt(mean_j (E_k[z_j] − Ē[z_j])²),

    E_k the member's mixture mean and Ē the members' average: the largest RMS distance of one
    member's prediction from the ensemble's, in z's units (V's z is ~N(0, 1)). It is 0 for
    identical members and grows with their spread; MOPO's penalty is r − λ·d, MOReL's halt
    ends the dream where d passes a threshold (`DreamVectorEnv`'s `uncertainty_penalty` and
    `uncertainty_halt`). A step costs K members' matmuls: 1/K of one member's speed.
    """

    def __init__(self, kernels: list[DreamKernel]) -> None:
        if len(kernels) < 2:
            raise ValueError("an ensemble needs at least two members")
        first = kernels[0]
        for k in kernels[1:]:
            if (k.latent, k.action, k.width - k.hidden) != (
                first.latent,
                first.action,
                first.width - first.hidden,
            ):
                raise ValueError("ensemble members must share z's and the actions' sizes")
        self.kernels = kernels
        self.latent = first.latent
        for k in kernels[1:]:
            if (k.mixtures, k.choices) != (first.mixtures, first.choices):
                raise ValueError(
                    "ensemble members must share the mixture's layout (--mixtures, --mixture)"
                )
        self.noise = first.noise

    @property
    def size(self) -> int:
        return len(self.kernels)

    def step(
        self,
        xs: list[torch.Tensor],
        cs: list[torch.Tensor],
        actions: torch.Tensor,
        uniforms: torch.Tensor,
        member_uniforms: torch.Tensor,
        temperature: float,
        parts: list[slice] | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step of every row in every member: → (next rows per member, reward, P(done),
        disagreement d (B,)). As `DreamKernel.step` (`uniforms` is the same block: with one
        member this dreams what `DreamKernel.step` dreams); `member_uniforms` (B,) pick each
        row's drawing member. Each member's `cs` is updated in place, the rows' action columns
        overwritten, `parts` stepped side by side on threads."""
        b, device = xs[0].shape[0], xs[0].device
        size = len(self.kernels)
        pick = (member_uniforms * size).long().clamp_(max=size - 1)
        for k in self.kernels:
            k._tail(device)
        nexts = [torch.empty_like(x) for x in xs]
        reward = torch.empty(b, device=device)
        p_done = torch.empty(b, device=device)
        spread = torch.empty(b, device=device)
        args = (xs, cs, actions, uniforms, pick, nexts, reward, p_done, spread)
        parts = split_rows(b, device) if parts is None else parts
        run_parts(lambda rows: self._step_rows(args, rows, temperature), parts)
        return nexts, reward, p_done, spread

    def _step_rows(self, args: tuple, rows: slice, temperature: float) -> None:
        xs, cs, actions, uniforms, picks, nexts, reward, p_done, spread = args
        lat = self.latent
        u, pick = uniforms[rows], picks[rows]
        means, rewards, dones = [], [], []
        chosen: torch.Tensor | None = None
        for i, kernel in enumerate(self.kernels):
            out = kernel.predict(xs[i][rows], cs[i][rows], actions[rows], nexts[i][rows])
            means.append(kernel.expected_z(out))
            r = torch.empty(out.shape[0], device=out.device)
            p = torch.empty_like(r)
            kernel.reward_and_done(out, r, p)  # each member's own calibration
            rewards.append(r)
            dones.append(p)
            # the drawing member's heads, row by row (the members share the heads' layout)
            chosen = out if chosen is None else torch.where((pick == i).unsqueeze(1), out, chosen)
        assert chosen is not None
        z = nexts[0][rows, :lat]
        self.kernels[0].draw(chosen, u, temperature, z)
        for x_next in nexts[1:]:
            x_next[rows, :lat].copy_(z)
        which = pick.unsqueeze(1)
        reward[rows] = torch.gather(torch.stack(rewards, 1), 1, which).squeeze(1)
        p_done[rows] = torch.gather(torch.stack(dones, 1), 1, which).squeeze(1)
        stacked = torch.stack(means)  # (K, B, Z)
        dev = (stacked - stacked.mean(0)).pow_(2).mean(2).sqrt_()  # (K, B)
        spread[rows] = dev.amax(0)


def _sigmoid_(t: torch.Tensor) -> torch.Tensor:
    """In-place sigmoid as 1 / (1 + exp(−t)): torch's CPU sigmoid rounds the last elements of a
    contiguous tensor (its scalar tail) differently from the rest, and a row must come out the
    same wherever it sits in the batch (rows that share their noise, CRN, are bit-identical;
    a batch split across threads dreams what the whole batch dreams)."""
    return t.neg_().exp_().add_(1.0).reciprocal_()


MIN_SPLIT_ROWS = 256
"""Fewest rows a thread steps on its own: below it, a thread's share is too small to pay for
handing it over."""


def split_rows(batch: int, device: torch.device) -> list[slice]:
    """The row ranges a CPU step runs on separate threads: one per torch thread (at most one per
    MIN_SPLIT_ROWS rows), or the whole batch (one thread, or a GPU).

    Why threads of our own and not torch's intra-op threads: a step is ~40 ops, most of them too
    small for torch to parallelise, and each parallel one is a fork and a join of the OpenMP
    team, where every thread must be running: on a machine with other jobs, a join waits for a
    descheduled thread, and 2 intra-op threads ran a 1,024-env step 17× SLOWER than one
    (measured at load 3–4 on 2 cores). Parts of the batch stepped side by side, each on one
    thread, share nothing but the weights (torch releases the GIL inside every op) and meet
    once per step. Every row is computed by the same ops either way: the dream does not change.
    """
    threads = torch.get_num_threads() if device.type == "cpu" else 1
    parts = max(1, min(threads, batch // MIN_SPLIT_ROWS))
    bounds = [batch * i // parts for i in range(parts + 1)]
    return [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def run_parts(step_part: Callable[[slice], None], parts: list[slice]) -> None:
    """`step_part(rows)` for every part: the last on the calling thread (one hand-over fewer per
    step), the others side by side on pool threads that run torch on one thread each."""
    if len(parts) == 1:
        step_part(parts[0])
        return
    pool = _pool(len(parts) - 1)
    done = [pool.submit(_inference, step_part, rows) for rows in parts[:-1]]
    step_part(parts[-1])
    for future in done:
        future.result()


def _inference(step_part: Callable[[slice], None], rows: slice) -> None:
    with torch.inference_mode():  # a pool thread does not inherit the caller's mode
        step_part(rows)


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(size: int) -> ThreadPoolExecutor:
    """A process-wide pool of `size` threads that run torch on one thread each."""
    if size not in _POOLS:
        _POOLS[size] = ThreadPoolExecutor(
            size, thread_name_prefix="dream-step", initializer=torch.set_num_threads, initargs=(1,)
        )
    return _POOLS[size]
