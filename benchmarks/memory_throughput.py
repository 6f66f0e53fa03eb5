"""Dream env-steps/s of worlds side by side, in one run: an MDN-RNN world against an RSSM world.

Each world is stepped by the one batched core (`DreamVectorEnv.step_tensors`, actions drawn
beforehand on the device), at each batch size and thread count, best of `--repeats` timings;
the table gives every world's rate and its ratio to the first world's in the same cell, since
these machines are noisy and only ratios measured together compare.

usage: python benchmarks/memory_throughput.py --worlds doom_takecover path/to/rssm-world \\
           --num-envs 256,1024 --threads 1,2
"""

from __future__ import annotations

import argparse
import time

import torch

from dreamgym.envs.dream import DreamVectorEnv
from dreamgym.world import World


def actions_for(venv: DreamVectorEnv, seed: int) -> torch.Tensor:
    """A batch of random valid actions for `venv` (Discrete or Box)."""
    gen = torch.Generator().manual_seed(seed)
    space = venv.single_action_space
    if hasattr(space, "n"):
        return torch.randint(int(space.n), (venv.num_envs,), generator=gen) + int(space.start)
    low, high = torch.as_tensor(space.low), torch.as_tensor(space.high)
    return low + (high - low) * torch.rand(venv.num_envs, *low.shape, generator=gen)


def dream_rate(world: World, num_envs: int, steps: int, repeats: int) -> float:
    """Best env-steps/s over `repeats` timings of `steps` batched steps (float32)."""
    venv = DreamVectorEnv(world, num_envs=num_envs, device="cpu", precision="float32")
    venv.reset_tensors(seed=0)
    actions = [actions_for(venv, i) for i in range(8)]
    for i in range(5):  # warm-up
        venv.step_tensors(actions[i % 8])
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(steps):
            venv.step_tensors(actions[i % 8])
        best = max(best, num_envs * steps / (time.perf_counter() - start))
    return best


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worlds", nargs="+", required=True, help="bundled names or directories")
    p.add_argument("--num-envs", default="256,1024", help="batch sizes, comma-separated")
    p.add_argument("--threads", default="1", help="torch threads, comma-separated")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    worlds = [World.load(w) for w in args.worlds]
    sizes = [int(n) for n in args.num_envs.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    names = [f"{w.name} ({w.memory_kind}, features {w.feature_dim})" for w in worlds]
    print("| threads | envs | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(worlds))
    before = torch.get_num_threads()
    try:
        for t in threads:
            torch.set_num_threads(t)
            for n in sizes:
                rates = [dream_rate(w, n, args.steps, args.repeats) for w in worlds]
                cells = [f"{r:,.0f} ({r / rates[0]:.2f}×)" for r in rates]
                print(f"| {t} | {n} | " + " | ".join(cells) + " |", flush=True)
    finally:
        torch.set_num_threads(before)


if __name__ == "__main__":
    main()
