"""Held-out k-step open-loop z error: how far a memory's imagination drifts from real episodes.

For windows of held-out episodes, a memory is conditioned on the real z's of `context` frames
(the MDN-RNN teacher-forced, the RSSM through its posterior), then rolled forward by its own
predictions with the real actions; its z at k steps ahead is compared with V's z of the real
frame there. The RMSE per z dim at each horizon k is reported beside the "copy the last real z"
baseline, which says how much the frames move at all. One measure, the same windows, for any
memory family, so two memories trained on the same data and V can be put side by side.

Real z's are V's means (mu) of the frames. A "mean" rollout feeds each step's expected z (the
MDN-RNN's mixture mean; the RSSM at τ = 0: its prior's mean or mode, decoded); a "sampled" one
feeds draws at τ = 1. The last frame of each episode is left out of the targets by default: in
TakeCover it is the terminal frame (V's black screen), which M is not asked to predict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from dreamgym.models.mdnrnn import MDNRNN, mdn_mean, sample_mdn
from dreamgym.models.rssm import RSSM, RSSMState
from dreamgym.training.mdn import LatentEpisodes

OPENLOOP_HORIZONS = (1, 10, 50)
"""The horizons k (steps ahead) reported by default."""


@dataclass(frozen=True)
class OpenLoopConfig:
    """Which windows are scored and how the memory is rolled."""

    horizons: tuple[int, ...] = OPENLOOP_HORIZONS
    """Steps ahead at which the error is reported (the rollout runs to the largest)."""
    context: int = 50
    """Real frames the memory sees before it runs open loop (≥ 1)."""
    stride: int = 25
    """A window starts every `stride` frames of an episode (long enough for context + horizon)."""
    sampled: bool = False
    """Also roll with draws at τ = 1 and report their RMSE (`rmse_sampled`)."""
    drop_last_frame: bool = True
    """Leave each episode's last frame (a terminal frame) out of the targets."""
    batch: int = 512
    """Windows rolled side by side."""
    seed: int = 0
    """Seeds the sampled rollouts."""

    def __post_init__(self) -> None:
        if not self.horizons or min(self.horizons) < 1:
            raise ValueError(f"horizons must be ≥ 1, got {self.horizons}")
        if self.context < 1 or self.stride < 1 or self.batch < 1:
            raise ValueError(
                f"context, stride and batch must be ≥ 1, got {self.context}, {self.stride}, "
                f"{self.batch}"
            )


@dataclass
class OpenLoopReport:
    """RMSE of z per horizon k: the memory's mean rollout, its sampled one, copy-last."""

    windows: int
    rmse: dict[int, float]
    copy_last: dict[int, float]
    rmse_sampled: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "rmse": self.rmse,
            "copy_last": self.copy_last,
            "rmse_sampled": self.rmse_sampled,
        }


class OpenLoopMemory(Protocol):
    """What the measure needs of a memory: condition on real frames, then roll open loop."""

    def condition(self, z: torch.Tensor, actions: torch.Tensor) -> Any:
        """State after real frames z (B, C, Z), reached by actions (B, C − 1, A)."""

    def rollout(
        self, state: Any, actions: torch.Tensor, temperature: float, generator: torch.Generator
    ) -> torch.Tensor:
        """Predicted z (B, K, Z) of the K frames that `actions` (B, K, A) lead to."""


class MDNRNNOpenLoop:
    """The MDN-RNN teacher-forced over the context, then fed its own mean (or draws)."""

    def __init__(self, rnn: MDNRNN) -> None:
        self.rnn = rnn

    def condition(self, z: torch.Tensor, actions: torch.Tensor) -> Any:
        if z.shape[1] == 1:
            return (*self.rnn.initial_state(z.shape[0], z.device), z[:, 0])
        _, (h, c) = self.rnn(z[:, :-1], actions)
        return h, c, z[:, -1]

    def rollout(
        self, state: Any, actions: torch.Tensor, temperature: float, generator: torch.Generator
    ) -> torch.Tensor:
        h, c, z = state
        out = []
        for k in range(actions.shape[1]):
            pred, (h, c) = self.rnn.step(z, actions[:, k], (h, c))
            if temperature == 0:
                z = mdn_mean(pred.logpi, pred.mu)
            else:
                z = sample_mdn(pred.logpi, pred.mu, pred.logsigma, temperature, generator)
            out.append(z)
        return torch.stack(out, dim=1)


class RSSMOpenLoop:
    """The RSSM's posterior (its mean or mode) over the context, then its prior at τ."""

    def __init__(self, rssm: RSSM) -> None:
        self.rssm = rssm

    def condition(self, z: torch.Tensor, actions: torch.Tensor) -> Any:
        m = self.rssm
        state = m.initial_state(z.shape[0], z.device)
        state = m.observe(
            state, z[:, 0], actions.new_zeros(z.shape[0], actions.shape[-1]), sample=False
        )
        for j in range(1, z.shape[1]):
            state = m.observe(state, z[:, j], actions[:, j - 1], sample=False)
        return state

    def rollout(
        self, state: RSSMState, actions: torch.Tensor, temperature: float, generator: Any
    ) -> torch.Tensor:
        out = []
        for k in range(actions.shape[1]):
            step = self.rssm.imagine(state, actions[:, k], temperature, generator)
            state = step.state
            out.append(step.z)
        return torch.stack(out, dim=1)


def openloop_memory(model: MDNRNN | RSSM | OpenLoopMemory) -> OpenLoopMemory:
    """The open-loop view of a memory (an MDN-RNN, an RSSM, or anything already one)."""
    if isinstance(model, MDNRNN):
        return MDNRNNOpenLoop(model)
    if isinstance(model, RSSM):
        return RSSMOpenLoop(model)
    if hasattr(model, "condition") and hasattr(model, "rollout"):
        return model
    raise TypeError(f"no open-loop view of a {type(model).__name__}; pass an MDNRNN or RSSM")


def openloop_windows(
    lengths: np.ndarray, episodes: np.ndarray, context: int, horizon: int, stride: int, drop: bool
) -> np.ndarray:
    """(W, 2) windows (episode, t0): frames t0 − context + 1 … t0 real, t0 + 1 … t0 + horizon
    predicted; every `stride` frames of each episode long enough."""
    out = []
    for e in np.asarray(episodes, dtype=np.int64):
        last = int(lengths[e]) - (1 if drop else 0)  # last frame that may be a target
        t0 = np.arange(context - 1, last - horizon + 1, stride)
        out.append(np.stack([np.full_like(t0, e), t0], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


def _window_batch(
    data: LatentEpisodes, windows: np.ndarray, context: int, horizon: int
) -> tuple[torch.Tensor, ...]:
    """(context z (B, C, Z), context actions (B, C − 1, A), actions ahead (B, K, A), targets)."""
    ep, t0 = windows[:, 0], windows[:, 1]
    frames = data.frame_start[ep][:, None] + t0[:, None] + np.arange(-context + 1, horizon + 1)
    steps = data.step_start[ep][:, None] + t0[:, None] + np.arange(-context + 1, horizon)
    device = data.mu.device
    z = data.mu[torch.from_numpy(frames).to(device)]
    a = data.actions[torch.from_numpy(steps).to(device)]
    return z[:, :context], a[:, : context - 1], a[:, context - 1 :], z[:, context:]


@torch.no_grad()
def openloop_error(
    model: MDNRNN | RSSM | OpenLoopMemory,
    data: LatentEpisodes,
    episodes: np.ndarray,
    config: OpenLoopConfig | None = None,
) -> OpenLoopReport:
    """RMSE of z at each horizon k for `model` on `episodes` (held out), and copy-last's.

    Raises ValueError when no episode is long enough for context + the largest horizon.
    """
    config = config or OpenLoopConfig()
    memory = openloop_memory(model)
    for m in (model, getattr(memory, "rnn", None), getattr(memory, "rssm", None)):
        if isinstance(m, torch.nn.Module):
            m.eval()
    horizon = max(config.horizons)
    windows = openloop_windows(
        data.lengths, episodes, config.context, horizon, config.stride, config.drop_last_frame
    )
    if len(windows) == 0:
        raise ValueError(
            f"no held-out episode has {config.context} + {horizon} frames"
            f"{' (its last frame left out)' if config.drop_last_frame else ''}; lower "
            "context or the horizons"
        )
    gen = torch.Generator(device=data.mu.device).manual_seed(config.seed)
    kinds = {"rmse": 0.0, "copy_last": None} | ({"rmse_sampled": 1.0} if config.sampled else {})
    sums = {name: torch.zeros(horizon, dtype=torch.float64) for name in kinds}
    for i in range(0, len(windows), config.batch):
        z_ctx, a_ctx, a_ahead, target = _window_batch(
            data, windows[i : i + config.batch], config.context, horizon
        )
        for name, temperature in kinds.items():
            if temperature is None:
                pred = z_ctx[:, -1:].expand_as(target)
            else:
                state = memory.condition(z_ctx, a_ctx)
                pred = memory.rollout(state, a_ahead, temperature, gen)
            err = (pred.float() - target).pow(2).sum(dim=(0, 2)).double().cpu()
            sums[name] += err
    count = len(windows) * data.mu.shape[1]
    rmse = {
        name: {k: float((s[k - 1] / count).sqrt()) for k in config.horizons}
        for name, s in sums.items()
    }
    return OpenLoopReport(
        windows=len(windows),
        rmse=rmse["rmse"],
        copy_last=rmse["copy_last"],
        rmse_sampled=rmse.get("rmse_sampled", {}),
    )
