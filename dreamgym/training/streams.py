"""Whole-episode training data for M: rows of episodes back to back, cut into stateful chunks.

As in the paper's code (hardmaru/WorldModelsExperiments, doomrnn.py), M learns from whole
episodes: each batch row is a stream of whole episodes played one after the other, cut into
chunks of `seq_len` steps; the LSTM state (h, c) is carried from one chunk to the next (detached:
truncated backpropagation through time) and zeroed exactly where an episode starts (`resets`), so
every step is predicted from its episode's whole past, as in the dream. Rows are packed to about
the same length (each episode to the shortest row), so little is padded; padded steps are
masked out of every loss.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # mdn.py imports this module for its epoch loop
    from dreamgym.training.mdn import LatentEpisodes


@dataclass
class EpisodeStreams:
    """Per row and step: the frame of z_t, the step index, episode starts, and validity."""

    frames: np.ndarray  # (R, T) int64: frame of z_t (its target z_{t+1} is the next frame)
    steps: np.ndarray  # (R, T) int64: index into the step arrays
    resets: np.ndarray  # (R, T) bool: the first step of an episode
    valid: np.ndarray  # (R, T) bool: False on the padding after a row's last episode

    @property
    def rows(self) -> int:
        return int(self.frames.shape[0])

    @property
    def length(self) -> int:
        return int(self.frames.shape[1])

    def n_chunks(self, seq_len: int) -> int:
        return math.ceil(self.length / seq_len)


def make_streams(
    data: LatentEpisodes, episodes: np.ndarray, rows: int, rng: np.random.Generator
) -> EpisodeStreams:
    """Shuffle `episodes` and deal each to the row with the fewest steps so far (≤ `rows` rows)."""
    lengths = data.lengths
    eps = [int(e) for e in rng.permutation(np.asarray(episodes)) if lengths[e] > 0]
    n_rows = max(1, min(int(rows), len(eps)))
    heap = [(0, r) for r in range(n_rows)]
    members: list[list[int]] = [[] for _ in range(n_rows)]
    for e in eps:
        total, r = heapq.heappop(heap)
        members[r].append(e)
        heapq.heappush(heap, (total + int(lengths[e]), r))
    totals = [sum(int(lengths[e]) for e in m) for m in members]
    width = max(totals) if totals else 0
    frames = np.zeros((n_rows, width), dtype=np.int64)
    steps = np.zeros((n_rows, width), dtype=np.int64)
    resets = np.zeros((n_rows, width), dtype=bool)
    valid = np.zeros((n_rows, width), dtype=bool)
    for r, m in enumerate(members):
        t = 0
        for e in m:
            n = int(lengths[e])
            frames[r, t : t + n] = data.frame_start[e] + np.arange(n)
            steps[r, t : t + n] = data.step_start[e] + np.arange(n)
            resets[r, t] = True
            t += n
        valid[r, :t] = True
    return EpisodeStreams(frames, steps, resets, valid)


def stream_chunks(
    data: LatentEpisodes, streams: EpisodeStreams, seq_len: int, generator: torch.Generator
) -> Iterator[tuple[tuple[torch.Tensor, ...], torch.Tensor]]:
    """Consecutive chunks of the streams: ((z_in, actions, z_tgt, rewards, dones, mask), resets).

    z is sampled once per frame from N(mu, σ²) (Ha & Schmidhuber 2018, §A.2): a step's target
    z_{t+1} is the next step's input, across chunk borders too; an episode's first input is a
    fresh sample of its first frame.
    """
    device = data.mu.device
    carry = torch.zeros(streams.rows, data.mu.shape[1], device=device)
    for a in range(0, streams.length, seq_len):
        cols = slice(a, a + seq_len)
        fi = torch.from_numpy(streams.frames[:, cols]).to(device)
        si = torch.from_numpy(streams.steps[:, cols]).to(device)
        resets = torch.from_numpy(streams.resets[:, cols]).to(device)
        mask = torch.from_numpy(streams.valid[:, cols]).to(device)
        nxt = fi + 1
        eps = torch.randn((*fi.shape, data.mu.shape[1]), generator=generator, device=device)
        z_tgt = data.mu[nxt] + torch.exp(0.5 * data.logvar[nxt]) * eps
        z_in = torch.cat([carry.unsqueeze(1), z_tgt[:, :-1]], dim=1)
        starts = fi[resets]
        eps0 = torch.randn((len(starts), data.mu.shape[1]), generator=generator, device=device)
        z_in[resets] = data.mu[starts] + torch.exp(0.5 * data.logvar[starts]) * eps0
        carry = z_tgt[:, -1]
        batch = (z_in, data.actions[si], z_tgt, data.rewards[si], data.dones[si], mask)
        yield batch, resets
