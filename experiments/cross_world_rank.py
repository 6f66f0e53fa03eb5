"""Does a dream rank controllers as reality does? Dream means of controllers trained in WORLD,
in WORLD's dream and in each MEMBER's (M's trained on the same V), WORLD's M tracking h beside a
member's dream as on real frames (`EnsembleEvaluator`); beside their known real means, with the
rank correlation of each dream with reality (the 2026-12-02 tables of both model cards).

usage: python experiments/cross_world_rank.py WORLD TAU N SEED [MEMBER ...] -- NAME=CONTROLLER:REAL ...
e.g.   python experiments/cross_world_rank.py doom_takecover 0.1 64 300000 worlds/doom-h512 -- \\
           shipped=dreamgym/worlds/doom_takecover:680.6 s1=runs/doom-s1:560.5 s2=runs/doom-s2:510.8
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from dreamgym.agents.population import EnsembleEvaluator
from dreamgym.policies.linear import LinearController
from dreamgym.world import World


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ (no ties expected): the correlation of the ranks."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv: list[str]) -> None:
    if "--" not in argv or len(argv) < 6:
        raise SystemExit(__doc__)
    cut = argv.index("--")
    world_path, tau, n, seed = argv[0], float(argv[1]), int(argv[2]), int(argv[3])
    world = World.load(world_path, device="cpu")
    members = [World.load(m, device="cpu") for m in argv[4:cut]]
    real, dream = [], []
    for item in argv[cut + 1 :]:
        name, spec = item.split("=", 1)
        path, real_mean = spec.rsplit(":", 1)
        ctrl = LinearController.load(path, world=world)
        ev = EnsembleEvaluator(
            world, members, 1, n, obs_mode=ctrl.obs_mode, temperature=tau, device="cpu",
            action_head=ctrl.head.mapping,
        )  # fmt: skip
        t0 = time.perf_counter()
        means = ev(ctrl.get_params()[None], seed=seed)[0].reshape(ev.size, n).mean(axis=1)
        real.append(float(real_mean))
        dream.append(means)
        cells = " ".join(f"{x:8.1f}" for x in means)
        print(f"{name:12s} real {float(real_mean):7.1f} | dreams {cells} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
    table = np.array(dream)
    for k in range(table.shape[1]):
        label = "own dream" if k == 0 else f"member {k} ({argv[3 + k]})"
        print(
            f"{label}: rank correlation with reality {rank_correlation(table[:, k], np.array(real)):+.2f}"
        )


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1:])
