"""Train a controller inside a dream, then see how much of its score survives in reality.

The World Models recipe (Ha & Schmidhuber 2018, §4): evolve a small linear controller with CMA-ES
entirely inside the learned world, then run it in the real env through V and M. The gap report
compares both return distributions; a dream score far above the real one means the controller
found a flaw in M (§4.5) — retrain at a higher temperature τ.

    python examples/transfer_and_gap.py --world carracing --generations 20 --out runs/transfer

The same two steps on the command line:

    dreamgym controller --world carracing --generations 20 --out runs/transfer/controller
    dreamgym gap --world carracing --policy runs/transfer/controller --episodes 8 --out runs/transfer/gap
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dreamgym.controllers import ControllerConfig, train_controller
from dreamgym.evaluation import GapConfig, gap, gap_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", default="carracing", help="bundled world name or directory")
    parser.add_argument("--out", default="runs/transfer", help="where the controller and report go")
    parser.add_argument("--generations", type=int, default=10, help="CMA-ES generations")
    parser.add_argument("--popsize", type=int, default=32, help="candidates per generation")
    parser.add_argument("--rollouts", type=int, default=8, help="dream rollouts per candidate")
    parser.add_argument(
        "--temperature", type=float, default=None, help="dream τ (default: world's)"
    )
    parser.add_argument(
        "--episodes", type=int, default=8, help="episodes in each of dream and reality"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="cap episodes (quick runs)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    # What the controller's dream and the gap's two runs share: the world, τ, the cap, the seed.
    shared = {k: getattr(args, k) for k in ("world", "temperature", "max_steps", "seed")}

    # 1. CMA-ES in the dream: a whole generation (popsize × rollouts) is one batched dream.
    #    Re-running the same command resumes from the last finished generation.
    search = {k: getattr(args, k) for k in ("generations", "popsize", "rollouts")}
    result = train_controller(ControllerConfig(out=str(out / "controller"), **search, **shared))
    print(
        f"best dream fitness {result.best_fitness:.2f} (generation {result.best_generation}), "
        f"{result.seconds_per_generation:.1f} s per generation"
    )

    # 2. The same controller in the dream and in reality, and the random baseline for scale.
    for policy, folder in ((str(result.out), "gap"), ("random", "gap_random")):
        config = GapConfig(policy=policy, episodes=args.episodes, out=str(out / folder), **shared)
        report = gap(config)
        print(gap_table(report))


if __name__ == "__main__":
    main()
