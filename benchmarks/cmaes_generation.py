"""What one CMA-ES generation costs in the batched dream: what a faster dream step buys.

A generation of `dreamgym controller` at the paper's settings is 64 candidates × 16 rollouts
stepped as ONE dream of 1,024 envs until every episode has ended (at most the world's 1,000
steps for CarRacing), then the CMA-ES mean re-scored on 64 more dreams (`--eval-mean-every 1`,
the default). This times exactly those two calls of `dreamgym.agents.population`, with the
candidates drawn around the world's shipped controller (σ = 0.1, as a search late in its run:
controllers that drive, so episodes run long), and reports the wall time of each and the
env-steps per second. Same seed, same candidates: two runs (two commits, two precisions)
time the same work.

Usage: python benchmarks/cmaes_generation.py [--world carracing] [--threads 1] [--repeats 2]
           [--precision auto|float32|bfloat16] [--device cpu]
"""

from __future__ import annotations

import argparse
import inspect
import time

import numpy as np
import torch

from dreamgym.agents.population import PopulationEvaluator
from dreamgym.policies.loading import load_policy
from dreamgym.world import World

POPSIZE, ROLLOUTS, MEAN_ROLLOUTS = 64, 16, 64
SIGMA = 0.1
SEED = 12345


def evaluator(
    world: World, popsize: int, rollouts: int, args: argparse.Namespace
) -> PopulationEvaluator:
    kwargs = {"device": args.device}
    if "precision" in inspect.signature(PopulationEvaluator).parameters:  # older trees: none
        kwargs["precision"] = args.precision
    return PopulationEvaluator(world, popsize, rollouts, **kwargs)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", default="carracing", help="a bundled name or a bundle directory")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=2, help="generations timed; the best is kept")
    p.add_argument("--precision", default="auto", help="the dream's precision (newer trees)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    world = World.load(args.world, device=args.device)
    shipped = load_policy("bundled", world).controller.get_params()
    rng = np.random.default_rng(SEED)
    params = shipped + SIGMA * rng.standard_normal((POPSIZE, shipped.size))
    generation = evaluator(world, POPSIZE, ROLLOUTS, args)
    mean = evaluator(world, 1, MEAN_ROLLOUTS, args)
    best: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, ev, x in (
            ("candidates", generation, params),
            ("mean", mean, params.mean(0, keepdims=True)),
        ):
            t0 = time.perf_counter()
            returns = ev(x, seed=SEED)
            seconds = time.perf_counter() - t0
            best[name] = min(best.get(name, np.inf), seconds)
            best[name + "_return"] = float(returns.mean())
    env = getattr(generation.env, "precision", "float32")
    print(
        f"{world.name}: {POPSIZE} × {ROLLOUTS} candidates + mean on {MEAN_ROLLOUTS} dreams, "
        f"{args.threads} thread(s), device {args.device}, precision {env}"
    )
    print(
        f"candidates {best['candidates']:.1f} s (mean return {best['candidates_return']:.1f}), "
        f"mean {best['mean']:.1f} s (return {best['mean_return']:.1f}), "
        f"generation {best['candidates'] + best['mean']:.1f} s"
    )


if __name__ == "__main__":
    main()
