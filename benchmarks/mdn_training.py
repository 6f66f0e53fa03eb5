"""M's training throughput in steps per second: whole-episode chunks vs windows, per-dim vs shared.

    python benchmarks/mdn_training.py [--threads 1] [--rounds 2] [--size tiny|paper|both]

Sizes: `tiny` (Z=4, H=16, K=2, batch 4, 100-step episodes, seq_len 16) and `paper` (Z=64,
H=512, K=5, batch 32, 1,000-step episodes as in the paper's Doom M, seq_len 1000 for episodes and
100 for windows). Each row runs `train_rnn_epoch` (forward, backward, clip, Adam) over synthetic
latents; rows are measured in interleaved rounds (the machine may be shared) and the median of
steps/s is printed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from dreamgym.models.mdnrnn import MDNRNN, MDNRNNConfig
from dreamgym.training import LatentEpisodes, LRSchedule, make_adam, train_rnn_epoch

SIZES = {
    "tiny": {"z": 4, "h": 16, "k": 2, "batch": 4, "episode": 100, "episodes": 16, "chunk": 16},
    "paper": {
        "z": 64,
        "h": 512,
        "k": 5,
        "batch": 32,
        "episode": 1000,
        "episodes": 32,
        "chunk": 1000,
    },
}
ROWS = [
    ("per_dim", "episodes"),
    ("shared", "episodes"),
    ("per_dim", "windows"),
    ("shared", "windows"),
]


def synthetic(size: dict, seed: int = 0) -> LatentEpisodes:
    """Random latents of `episodes` episodes of `episode` steps (content does not change speed)."""
    rng = np.random.default_rng(seed)
    lengths = np.full(size["episodes"], size["episode"])
    frames, steps = int((lengths + 1).sum()), int(lengths.sum())
    mu = rng.normal(size=(frames, size["z"])).astype(np.float32)
    dones = np.zeros(steps, dtype=bool)
    dones[np.cumsum(lengths) - 1] = True
    return LatentEpisodes.from_arrays(
        mu,
        np.full_like(mu, -2.0),
        rng.uniform(-1, 1, size=(steps, 3)).astype(np.float32),
        rng.normal(size=steps).astype(np.float32),
        dones,
        lengths,
    )


def steps_per_second(size: dict, data: LatentEpisodes, mixture: str, sequences: str) -> float:
    """One epoch of `train_rnn_epoch` over every episode; training steps (z predictions) per s."""
    torch.manual_seed(0)
    cfg = MDNRNNConfig(size["z"], 3, size["h"], size["k"], 10.0, mixture)
    rnn = MDNRNN(cfg)
    opt = make_adam(rnn.parameters(), 1e-3)
    seq_len = size["chunk"] if sequences == "episodes" else min(100, size["chunk"])
    start = time.perf_counter()
    train_rnn_epoch(
        rnn, opt, data, np.arange(len(data.lengths)), seq_len, size["batch"], 10.0, 1.0, 1.0,
        seed=0, epoch=0, sequences=sequences, nll_reduction="mean", mask_terminal_z=True,
        lr_schedule=LRSchedule(1e-3, 0.99999, 1e-5),
    )  # fmt: skip
    return float(data.lengths.sum()) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", choices=[*SIZES, "both"], default="both")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = list(SIZES) if args.size == "both" else [args.size]
    print(f"# M training, torch {torch.__version__}, {args.threads} thread(s)")
    print("| size | mixture | sequences | steps/s |\n|---|---|---|---|")
    for name in names:
        size, data = SIZES[name], synthetic(SIZES[name])
        results: dict[tuple[str, str], list[float]] = {row: [] for row in ROWS}
        for _ in range(args.rounds):
            for row in ROWS:
                results[row].append(steps_per_second(size, data, *row))
        for (mixture, sequences), v in results.items():
            print(f"| {name} | {mixture} | {sequences} | {statistics.median(v):,.0f} |")


if __name__ == "__main__":
    main()
