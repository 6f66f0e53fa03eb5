"""V's training throughput: dreamgym's loop vs a plain PyTorch loop, in images per second.

    python benchmarks/vae_training.py [--threads 1 2] [--rounds 3] [--seconds 6] [--data DATA]

Rows (same frames, same Adam learning rate; each row is one configuration):

- `plain, textbook V`: the paper's ConvVAE written the obvious way (the first transposed conv
  applied to a 1×1 map), float32 NCHW input, default Adam, batch 100 — what a user would write;
- `plain, dreamgym V`: the same loop with dreamgym's ConvVAE, whose decoder computes that first
  transposed conv as the matmul it is (same weights, same result);
- `+ channels_last`, `+ fused Adam`, `+ torch.compile`: one change each on top of the previous
  row (the compile happens in the untimed warm-up step);
- `bf16 autocast`: for reference; it pays only with native bf16 math (AVX-512 BF16, AMX, CUDA):
  emulated on an AVX2 CPU it is ~10x slower;
- `dreamgym.train (batch B, auto → P)`: the real `train_vae_epoch` code path with the precision
  `dreamgym train --vae-precision auto` picks on this machine (P), as the command runs it.

Rows are measured in interleaved rounds (the machine may be shared) and the median is printed.
Frames are random uint8 unless `--data` points at a dataset (the content does not change speed).

Each cell is `img/s ×textbook (% of matmul)`. The last figure is the row's float32 arithmetic rate
(img/s × the FLOPs of one training step per image, forward + backward, counted by
`torch.utils.flop_counter`) as a share of a 1024×1024 float32 `torch.mm` timed between the rows of
every round (best sample): the practical FLOP limit of this CPU at that thread count. A float32 loop
cannot pass 100 %, so a speed-up target over the textbook row that needs more than 100 % / its
share can only come from cheaper arithmetic (native bf16), not from a better float32 loop.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from dreamgym.models.vae import ConvVAE, VAEConfig, vae_loss
from dreamgym.training.vae import (
    autocast_dtype,
    frames_to_batch,
    make_adam,
    prepare_vae_for_training,
    train_vae_epoch,
)


class TextbookVAE(ConvVAE):
    """The paper's V with the decoder applied literally: fc → 1×1 map → transposed convs."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.fc_dec(z).view(-1, 1024, 1, 1))


def plain_step(
    model_cls: type[ConvVAE],
    frames: np.ndarray,
    batch: int,
    channels_last: bool = False,
    fused: bool = False,
    bf16: bool = False,
    compiled: bool = False,
) -> Callable[[], int]:
    """One training step of a straightforward loop; returns a closure that does one step."""
    torch.manual_seed(0)
    vae = model_cls(VAEConfig(latent_dim=32))
    if channels_last:
        vae = vae.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3, fused=fused or None)
    forward = torch.compile(vae) if compiled else vae
    rng = np.random.default_rng(0)

    def step() -> int:
        idx = rng.integers(0, len(frames), batch)
        x = torch.from_numpy(frames[idx]).permute(0, 3, 1, 2)
        x = x.float().div(255.0) if channels_last else x.contiguous().float().div(255.0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            recon, mu, logvar = forward(x)
        loss, _, _ = vae_loss(recon.float(), x, mu.float(), logvar.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        return batch

    return step


def dreamgym_step(frames: np.ndarray, batch: int, precision: str = "auto") -> Callable[[], int]:
    """`train_vae_epoch` (the code `dreamgym train` runs) over a few batches per call."""
    device = torch.device("cpu")
    torch.manual_seed(0)
    vae = prepare_vae_for_training(ConvVAE(VAEConfig(latent_dim=32)), device)
    opt = make_adam(vae.parameters(), 1e-3)
    counter = iter(range(10**9))
    chunk = 4 * batch

    def step() -> int:
        epoch = next(counter)
        idx = np.random.default_rng(epoch).integers(0, len(frames), chunk)
        train_vae_epoch(
            vae, opt, frames, idx, batch, seed=0, epoch=epoch, device=device, precision=precision
        )
        return chunk

    return step


def train_flops_per_image(model_cls: type[ConvVAE], batch: int = 8) -> float:
    """FLOPs of one float32 training step (forward, loss, backward) per image."""
    vae = model_cls(VAEConfig(latent_dim=32))
    x = torch.rand(batch, 3, 64, 64)
    with FlopCounterMode(display=False) as counter:
        recon, mu, logvar = vae(x)
        loss, _, _ = vae_loss(recon, x, mu, logvar)
        loss.backward()
    return counter.get_total_flops() / batch


def matmul_rate(seconds: float = 1.0, n: int = 1024) -> float:
    """FLOP/s of a float32 n×n @ n×n `torch.mm` at the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return count * 2 * n**3 / (time.perf_counter() - start)


def measure(step: Callable[[], int], seconds: float) -> float:
    step()  # warm-up (allocator, oneDNN primitive cache)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        n += step()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--data", default=None, help="a dataset directory (default: random frames)")
    args = parser.parse_args()

    if args.data:
        from dreamgym.data import iter_episodes

        frames = np.concatenate([a["frames"] for _, a in iter_episodes(args.data)])[:20000]
    else:
        frames = np.random.default_rng(0).integers(0, 256, (5000, 64, 64, 3), dtype=np.uint8)
    assert frames_to_batch(frames, np.arange(2), torch.device("cpu")).shape == (2, 3, 64, 64)

    picked = autocast_dtype("auto", torch.device("cpu"))
    auto = "auto → " + ("bfloat16" if picked is not None else "float32")
    rows: dict[str, Callable[[], Callable[[], int]]] = {
        "plain, textbook V (batch 100)": lambda: plain_step(TextbookVAE, frames, 100),
        "plain, dreamgym V (batch 100)": lambda: plain_step(ConvVAE, frames, 100),
        "  + channels_last": lambda: plain_step(ConvVAE, frames, 100, channels_last=True),
        "  + fused Adam": lambda: plain_step(ConvVAE, frames, 100, channels_last=True, fused=True),
        "  + torch.compile": lambda: plain_step(
            ConvVAE, frames, 100, channels_last=True, fused=True, compiled=True
        ),
        "  bf16 autocast (reference)": lambda: plain_step(
            ConvVAE, frames, 100, channels_last=True, fused=True, bf16=True
        ),
        f"dreamgym.train (batch 100, {auto})": lambda: dreamgym_step(frames, 100),
        f"dreamgym.train (batch 256, {auto})": lambda: dreamgym_step(frames, 256),
    }
    flops = train_flops_per_image(ConvVAE)
    print(
        f"torch {torch.__version__}, {len(frames)} frames, median of {args.rounds} rounds, "
        f"{flops / 1e9:.3f} GFLOP per image per training step, load {os.getloadavg()[0]:.1f}"
    )
    header = f"{'configuration':40s}" + "".join(
        f"{f'{t} thr img/s ×textbook (% matmul)':>36s}" for t in args.threads
    )
    print(header)
    print("-" * len(header))
    results: dict[tuple[str, int], list[float]] = {}
    peak: dict[int, float] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        steps = {name: make() for name, make in rows.items()}
        for _ in range(args.rounds):
            for name, step in steps.items():
                peak[threads] = max(peak.get(threads, 0.0), matmul_rate())
                results.setdefault((name, threads), []).append(measure(step, args.seconds))
    base = {t: statistics.median(results[(next(iter(rows)), t)]) for t in args.threads}
    for name in rows:
        cells = ""
        for t in args.threads:
            v = statistics.median(results[(name, t)])
            share = 100 * v * flops / peak[t]
            cells += f"{v:14.1f} ×{v / base[t]:.2f} ({share:5.1f} %)"
        print(f"{name:40s}{cells}")
    for t in args.threads:
        print(
            f"{t} thread(s): float32 matmul {peak[t] / 1e9:.1f} GFLOP/s; 2× the textbook row "
            f"would need {200 * base[t] * flops / peak[t]:.0f} % of it"
        )


if __name__ == "__main__":
    main()
