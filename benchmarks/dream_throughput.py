"""How fast the batched dream steps, against the real env, a per-env loop, and the machine's FLOPs.

Prints one Markdown table per thread count. Everything is measured in the same run, so the
ratios compare like with like on a machine whose load changes over time:

- dream env-steps/s at num_envs 1, 16, 256, 1024, 4096 with the torch-level `step_tensors`
  (obs_mode "zh", the paper's CarRacing size: latent 32, hidden 256, K 5), and the Gymnasium
  numpy `step` at 1024;
- the same model stepped env by env in a Python loop (16 separate `num_envs=1` cores);
- the real `CarRacing-v3` with random actions;
- float32 and bfloat16 matmul GFLOP/s (N×N @ N×N; N = 1024 on CPU, 8192 on CUDA) on the same
  threads: the FLOP limit of each precision. Each dream row is a share of the rate of the
  precision its matmuls run in (`--precision`, the dream's `DreamSettings.precision`).

The header names the CPU (model, its SIMD/bf16 flags) or the GPU, so a table says what machine's
limit it measured. `--device cuda` runs unchanged on a GPU, with batches up to 65,536 envs.

Usage: python benchmarks/dream_throughput.py [--threads 1,2] [--device cpu] [--steps 100]
           [--precision auto|float32|bfloat16[,...]]
See benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from dreamgym.envs.dream import DreamVectorEnv, dream_precision, resolve_device
from dreamgym.envs.real import make_real_env
from dreamgym.models.mdn_kernel import MIN_SPLIT_ROWS, split_rows
from dreamgym.utils.hardware import BF16_CPU_FLAGS, cpu_flags, cpu_model, native_bf16
from dreamgym.utils.threads import torch_threads
from dreamgym.world import World

ENV_ID = "CarRacing-v3"
NUM_ENVS = (1, 16, 256, 1024, 4096)
CUDA_NUM_ENVS = (1024, 4096, 16384, 65536)
"""Default batch sizes on a GPU, which needs far larger batches than a CPU core to fill."""
REFERENCE_ENVS = 1024
"""The batch size the targets are stated at."""
LOOP_ENVS = 16
"""Separate one-env cores stepped one after another in the per-env loop."""
MATMUL_SIZE = {"cpu": 1024, "cuda": 8192}
"""N of the N×N @ N×N matmul that measures the FLOP limit (a GPU needs a larger one)."""
SHOWN_FLAGS = ("avx2", "fma", "avx512f", *BF16_CPU_FLAGS, "amx_tile")
"""CPU flags the header names: what decides the float32 and bfloat16 matmul rates."""
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ModelSize:
    latent: int
    action: int
    hidden: int
    mixtures: int
    mixture: str = "shared"
    """"shared" (the bundled worlds) or "per_dim" (new worlds: K·Z logits, a choice per dim)."""


def dream_step_flops(m: ModelSize) -> dict[str, int]:
    """FLOPs of one dream step for one env (a multiply-add counts 2).

    - LSTM gates: [x, h] @ [W_ih; W_hh]ᵀ, 4H outputs from Z + A + H inputs: 2·4H·(Z+A+H);
    - heads: h @ W_headᵀ, K logits (K·Z per dim) + K·Z means + K·Z log σ + reward + done:
      2·H·(K + 2KZ + 2) shared;
    - elementwise (an estimate, each add/mul/exp/log/sigmoid/tanh counted as one FLOP):
      LSTM 2 bias adds (8H) + 3 sigmoid and 2 tanh (5H) + c' = f·c + i·g (3H) + h' = o·tanh(c') (H)
      = 17H; heads: head bias (K+2KZ+2), log-softmax (≈4K), bounded log σ (≈4KZ);
      sampling: the mixture draw (≈4K per choice; counted as it was for Gumbel-max, so figures
      compare across versions), σ = exp(log σ)·√τ and z = μ + σ·ε (4Z), done (≈4).
    """
    z, a, h, k = m.latent, m.action, m.hidden, m.mixtures
    logits = k if m.mixture == "shared" else k * z  # per dim: softmax and the draw on K·Z
    head_out = logits + 2 * k * z + 2
    lstm = 2 * 4 * h * (z + a + h)
    heads = 2 * h * head_out
    elementwise = 17 * h + head_out + 4 * logits + 4 * k * z + 4 * logits + 4 * z + 4
    return {"lstm": lstm, "heads": heads, "elementwise": elementwise}


class Bench:
    """Best-of-`repeats` timings, each paired with a short matmul timing taken just before it.

    On a shared machine other jobs steal time unevenly; the best of several runs is the least
    disturbed one, and sampling the matmul rate between all the other timings makes its best
    (the FLOP limit) come from the same stretch of time as theirs. The float32 rate, and the
    bfloat16 rate where the hardware does bf16 natively, are sampled that way; an emulated
    bfloat16 matmul is 100× slower, so it is measured once, on a 256×256 matmul.
    """

    def __init__(self, device: torch.device, repeats: int, clock: str = "wall") -> None:
        self.device = device
        self.repeats = repeats
        # "cpu": process CPU time, which does not count the time other jobs hold the core
        # (per CPU-second with several threads); "wall": elapsed time.
        self.clock = time.process_time if clock == "cpu" else time.perf_counter
        self.bf16_native = native_bf16(device)
        self.rates = {name: 0.0 for name in DTYPES}
        """Best GFLOP/s of an N×N @ N×N matmul per dtype name: each precision's FLOP limit."""
        n = MATMUL_SIZE.get(device.type, 1024)
        sizes = {"float32": n, "bfloat16": n if self.bf16_native else 256}
        self._mats = {
            name: [torch.randn(sizes[name], sizes[name], device=device, dtype=dt) for _ in "ab"]
            for name, dt in DTYPES.items()
        }
        self._sampled = ("float32", "bfloat16") if self.bf16_native else ("float32",)
        if not self.bf16_native:
            self._sample_matmul("bfloat16", iters=1)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def _sample_matmul(self, name: str, iters: int = 4) -> None:
        a, b = self._mats[name]
        torch.mm(a, b)
        self.sync()
        t0 = self.clock()
        for _ in range(iters):
            torch.mm(a, b)
        self.sync()
        rate = iters * 2 * a.shape[0] ** 3 / (self.clock() - t0) / 1e9
        self.rates[name] = max(self.rates[name], rate)

    def _sample_all(self) -> None:
        for name in self._sampled:
            self._sample_matmul(name)

    def rate(self, fn: Callable[[], None], items: int) -> float:
        """Best items/s of `fn` (one call = `items` items) over the repeats, after a warm-up."""
        fn()  # warm-up: allocations, first-call dispatch, the fused-weight caches
        self.sync()
        best = 0.0
        for _ in range(self.repeats):
            self._sample_all()
            t0 = self.clock()
            fn()
            self.sync()
            best = max(best, items / (self.clock() - t0))
        self._sample_all()
        return best


def random_action_tensor(venv: DreamVectorEnv, gen: torch.Generator) -> torch.Tensor:
    low = torch.as_tensor(venv.single_action_space.low)
    high = torch.as_tensor(venv.single_action_space.high)
    u = torch.rand(venv.num_envs, *low.shape, generator=gen)
    return (low + (high - low) * u).to(venv.device)


def ensemble_members(world: World, size: int) -> list[World]:
    """`size` − 1 members for an ensemble dream of `world`: its V, M initialised anew (seeds 1…)."""
    members = []
    for k in range(1, size):
        member = world.copy_to(world.device)
        gen = torch.Generator().manual_seed(k)
        with torch.no_grad():
            for p in member.mdnrnn.parameters():
                p.copy_(torch.randn(p.shape, generator=gen).mul_(p.std().item() or 0.01))
        members.append(member)
    return members


def dream_rate(
    bench: Bench,
    world: World,
    n: int,
    steps: int,
    precision: str,
    members: list[World] | None = None,
) -> float:
    """env-steps/s of `step_tensors` with `n` envs (actions pre-drawn on the device); with
    `members`, of the ensemble dream that steps them beside the world."""
    venv = DreamVectorEnv(
        world, num_envs=n, device=bench.device, precision=precision, ensemble=members or []
    )
    venv.reset_tensors(seed=0)
    actions = [random_action_tensor(venv, torch.Generator().manual_seed(i)) for i in range(8)]

    def run() -> None:
        for i in range(steps):
            venv.step_tensors(actions[i % 8])

    return bench.rate(run, n * steps)


def dream_numpy_rate(bench: Bench, world: World, n: int, steps: int, precision: str) -> float:
    """env-steps/s of the Gymnasium `step` (numpy actions in, numpy arrays out)."""
    venv = DreamVectorEnv(world, num_envs=n, device=bench.device, precision=precision)
    venv.reset(seed=0)
    rng = np.random.default_rng(0)
    space = venv.single_action_space
    actions = [rng.uniform(space.low, space.high, (n, 3)).astype(np.float32) for _ in range(8)]

    def run() -> None:
        for i in range(steps):
            venv.step(actions[i % 8])

    return bench.rate(run, n * steps)


def per_env_loop_rate(bench: Bench, world: World, steps: int) -> float:
    """env-steps/s when each env is its own `num_envs=1` core, stepped in a Python loop."""
    cores = [DreamVectorEnv(world, num_envs=1, device=bench.device) for _ in range(LOOP_ENVS)]
    for i, core in enumerate(cores):
        core.reset_tensors(seed=i)
    actions = [random_action_tensor(cores[0], torch.Generator().manual_seed(i)) for i in range(8)]
    loop_steps = max(1, steps // 4)

    def run() -> None:
        for i in range(loop_steps):
            for core in cores:
                core.step_tensors(actions[i % 8])

    return bench.rate(run, LOOP_ENVS * loop_steps)


def real_rate(bench: Bench, steps: int) -> float:
    """steps/s of the real env with uniform random actions, best of `repeats` chunks (reset not
    timed; a chunk that ends the episode is cut short)."""
    env = make_real_env(ENV_ID)
    env.reset(seed=0)
    env.action_space.seed(0)
    chunk = max(1, steps // bench.repeats)
    best = 0.0
    for _ in range(bench.repeats):
        actions = [env.action_space.sample() for _ in range(chunk)]
        t0 = bench.clock()
        done_steps = 0
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            done_steps += 1
            if terminated or truncated:
                break
        best = max(best, done_steps / (bench.clock() - t0))
        if terminated or truncated:
            env.reset()
    env.close()
    return best


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def machine() -> str:
    """The device's name: the GPU, or the CPU's model and the flags that set its matmul rates."""
    cpu = f"CPU {cpu_model()} ({os.cpu_count()} cores; flags: "
    flags = set(cpu_flags())
    cpu += " ".join(f for f in SHOWN_FLAGS if f in flags) or "none of " + " ".join(SHOWN_FLAGS)
    cpu += ")"
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name()}; {cpu}"
    return cpu


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="1", help="torch threads, comma-separated (e.g. 1,2)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--steps", type=int, default=100, help="batched dream steps per timing")
    parser.add_argument("--repeats", type=int, default=5, help="timings per cell; the best is kept")
    parser.add_argument("--real-steps", type=int, default=300, help="real CarRacing steps timed")
    parser.add_argument(
        "--precision",
        default="auto",
        help="the dream's precision(s), comma-separated: auto (bfloat16 where native), float32, "
        "bfloat16 (emulated bfloat16 is ~25× slower: use small --num-envs)",
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time; cpu: process CPU time (discounts other jobs; per CPU-second)",
    )
    parser.add_argument(
        "--num-envs",
        default=None,
        help="dream batch sizes, comma-separated (default: "
        f"{','.join(map(str, NUM_ENVS))}; on CUDA {','.join(map(str, CUDA_NUM_ENVS))})",
    )
    parser.add_argument(
        "--ensemble",
        type=int,
        default=1,
        help="also time an ensemble dream of this many M's at 1024 envs (its FLOPs: K × one's)",
    )
    return parser.parse_args(argv)


def table(
    args: argparse.Namespace, world: World, threads: int, sizes: list[int]
) -> tuple[dict[tuple[str, int], float], dict[str, float]]:
    """One thread count's table: dream rows per precision, the loop, the real env.

    Returns the dream's env-steps/s per (precision, num_envs) and the matmul GFLOP/s per dtype
    (for the scaling table across thread counts)."""
    device, per_env = resolve_device(args.device), sum(dream_step_flops(model_size(world)).values())
    torch.set_num_threads(threads)
    bench = Bench(device, args.repeats, args.clock)
    real = real_rate(bench, args.real_steps)
    loop = per_env_loop_rate(bench, world, args.steps)
    precisions = dict.fromkeys(dream_precision(p, device) for p in args.precision.split(","))
    rows: list[tuple[str, str, float]] = []
    dream: dict[tuple[str, int], float] = {}
    for precision in precisions:
        for n in sizes:
            steps = args.steps if n >= 16 else args.steps * 4
            rate = dream_rate(bench, world, n, steps, precision)
            dream[(precision, n)] = rate
            rows.append((f"dream step_tensors, {n} envs", precision, rate))
        if REFERENCE_ENVS in sizes:
            rate = dream_numpy_rate(bench, world, REFERENCE_ENVS, args.steps, precision)
            rows.append((f"dream numpy step, {REFERENCE_ENVS} envs", precision, rate))
            if args.ensemble > 1:
                members = ensemble_members(world, args.ensemble)
                rate = dream_rate(bench, world, REFERENCE_ENVS, args.steps, precision, members)
                name = f"ensemble dream ({args.ensemble} M's), {REFERENCE_ENVS} envs"
                rows.append((name, precision, rate))
    rows.append((f"dream per-env loop ({LOOP_ENVS} × num_envs=1)", "float32", loop))
    rows.append((f"real {ENV_ID}, random actions", "", real))
    rates = ", ".join(f"{k} {v:.1f}" for k, v in bench.rates.items())
    emulated = "" if bench.bf16_native else " (bfloat16 emulated, 256×256)"
    print(
        f"\n## {threads} thread(s), {args.clock} clock — matmul GFLOP/s: {rates}{emulated}; "
        f"load {load_average()}\n"
    )
    print("| what | precision | env-steps/s | × real | × per-env loop | GFLOP/s | % of matmul |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, precision, rate in rows:
        is_dream = name.startswith(("dream", "ensemble"))
        gf = rate * per_env * (args.ensemble if name.startswith("ensemble") else 1) / 1e9
        share = 100 * gf / bench.rates[precision] if is_dream else float("nan")
        cells = [name, precision, f"{rate:,.0f}", f"{rate / real:,.1f}"]
        cells += [f"{rate / loop:,.1f}", f"{gf:.1f}", f"{share:.0f}%"] if is_dream else ["", "", ""]
        print("| " + " | ".join(cells) + " |")
        if name == f"dream step_tensors, {REFERENCE_ENVS} envs":
            print_targets(rate, real, loop, share, precision)
    return dream, dict(bench.rates)


def parts_side_by_side(world: World, n: int, threads: int, steps: int, repeats: int) -> float:
    """The most `threads` threads can speed up this step on this machine: the kernel's parts of
    an `n`-env batch stepped side by side (as the dream does), against one part stepped alone
    on one thread, as a speed-up over one thread (`threads` = perfect). Shared caches and memory
    bandwidth make two cores slower side by side than each alone; this measures that and
    nothing of the dream's own serial work (noise draw, episode ends), which the dream rows add.
    """
    torch.set_num_threads(threads)
    venv = DreamVectorEnv(world, num_envs=n, device="cpu", precision="float32")
    venv.reset_tensors(seed=0)
    kernel, x, c = venv.kernel, venv._x.clone(), venv._c.clone()
    actions = venv.encode_actions(random_action_tensor(venv, torch.Generator().manual_seed(0)))
    u = torch.rand(n, kernel.noise.width, generator=torch.Generator().manual_seed(0))
    parts = split_rows(n, venv.device)
    one = parts[0]
    alone = (x[one], c[one], actions[one], u[one])

    def best(fn: Callable[[], None]) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    with torch.inference_mode(), torch_threads(1):
        t_alone = best(lambda: kernel.step(*alone, 1.0, [slice(0, one.stop)]))
        t_side = best(lambda: kernel.step(x, c, actions, u, 1.0, parts))
    return t_alone * n / (one.stop - one.start) / t_side


def scaling(
    args: argparse.Namespace,
    world: World,
    runs: dict[int, tuple[dict[tuple[str, int], float], dict[str, float]]],
) -> None:
    """Speed-up of each thread count over one thread, beside what the machine allows."""
    dream1, rates1 = runs[1]
    print("\n## threads against one thread (float32; same run)\n")
    print("| threads | num_envs | dream ×1 thread | matmul ×1 thread | step's parts side by side |")
    print("|---:|---:|---:|---:|---:|")
    for threads, (dream, rates) in runs.items():
        if threads == 1:
            continue
        for (precision, n), rate in dream.items():
            if precision != "float32" or n < 2 * MIN_SPLIT_ROWS or (precision, n) not in dream1:
                continue
            ceiling = parts_side_by_side(world, n, threads, max(10, args.steps // 4), args.repeats)
            cells = [
                str(threads),
                str(n),
                f"{rate / dream1[(precision, n)]:.2f}",
                f"{rates['float32'] / rates1['float32']:.2f}",
                f"{ceiling:.2f}",
            ]
            print("| " + " | ".join(cells) + " |")


def print_targets(rate: float, real: float, loop: float, share: float, precision: str) -> None:
    target = "≥ 40% of bf16" if precision == "bfloat16" else "≥ 60% of float32"
    print(
        f"|  ↳ at {REFERENCE_ENVS} envs ({precision}): {rate / real:,.0f}× real (target ≥ 1000×), "
        f"{rate / loop:,.0f}× the per-env loop (target ≥ 20×), {share:.0f}% of the matmul rate "
        f"(target {target}) | | | | | | |"
    )


def model_size(world: World) -> ModelSize:
    cfg = world.mdnrnn.config
    return ModelSize(cfg.latent_dim, cfg.action_dim, cfg.hidden_dim, cfg.n_mixtures, cfg.mixture)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    thread_counts = [int(t) for t in args.threads.split(",")]
    default_sizes = CUDA_NUM_ENVS if device.type == "cuda" else NUM_ENVS
    sizes = [int(n) for n in args.num_envs.split(",")] if args.num_envs else list(default_sizes)

    world = World.untrained(ENV_ID, n_initial=2).to(device)
    m = model_size(world)
    flops = dream_step_flops(m)
    print(
        f"# dream throughput — {ENV_ID} world (untrained), device {device}, torch {torch.__version__}"
    )
    print(f"machine: {machine()}")
    print(
        f"model: latent {m.latent}, action {m.action}, hidden {m.hidden}, K {m.mixtures} "
        f"({m.mixture}); "
        f"FLOPs per env-step: LSTM {flops['lstm']:,} + heads {flops['heads']:,} + "
        f"elementwise ≈{flops['elementwise']:,} = {sum(flops.values()):,}"
    )
    print(f"load average (1, 5, 15 min) at start: {load_average()}; cores: {os.cpu_count()}")
    runs = {threads: table(args, world, threads, sizes) for threads in thread_counts}
    if device.type == "cpu" and 1 in runs and len(runs) > 1:
        scaling(args, world, runs)


if __name__ == "__main__":
    gym.logger.min_level = gym.logger.ERROR
    main()
