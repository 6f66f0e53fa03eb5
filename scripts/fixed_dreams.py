"""Dream means of `diagnose`'s fixed-policy suite (and any other policies) against real means
measured before: the dream side of `dreamgym diagnose` alone, for comparing many trial worlds of
one env, or one world at several τ or termination rules, without replaying the real episodes.

usage: python scripts/fixed_dreams.py WORLD [--tau T] [--n N] [--seed S] [--real JSON]
           [--termination sample|threshold] [--done-threshold P] [--extra SPEC ...]
           [--precision auto|float32|bfloat16]
e.g.   python scripts/fixed_dreams.py worlds/car-cov384 --tau 1.0 --n 64 --seed 300000 \\
           --real '{"no action (stands still)": -93.3, "random": -33.8}' --extra bundled

--real maps a suite label (as `diagnose` prints it) to its real mean; a row is "ok" when the dream
mean is within ±25% of it or ±30 (the issues' bound), "OFF" when not. The model cards' session-10
sections were measured with it. Each dream mean comes with its bootstrap 95% interval, so two
runs that differ only in `--precision` (same seed) can be compared row by row.
"""

from __future__ import annotations

import argparse
import json

import torch

from dreamgym.envs.dream import dream_precision
from dreamgym.evaluation.diagnose.suite import fidelity_check, fixed_suite
from dreamgym.evaluation.dream import evaluate_dream
from dreamgym.evaluation.stats import summarize
from dreamgym.utils.hardware import PRECISION_HELP, PRECISIONS
from dreamgym.world import World


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("world", help="a bundled name or a bundle directory")
    p.add_argument("--tau", type=float, default=None, help="dream τ (default: the world's)")
    p.add_argument("--n", type=int, default=64, help="dreams per policy")
    p.add_argument("--seed", type=int, default=300000, help="seed of the dreams")
    p.add_argument("--real", default="{}", help="JSON {suite label: real mean}")
    p.add_argument("--termination", choices=("sample", "threshold"), default="sample")
    p.add_argument("--done-threshold", type=float, default=0.5)
    p.add_argument("--extra", nargs="*", default=[], help="more policy specs (e.g. bundled)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    world = World.load(args.world, device="cpu")
    real = json.loads(args.real)
    print(
        f"{world.name}: τ {args.tau if args.tau is not None else world.temperature}, "
        f"{args.n} dreams per policy, seed {args.seed}, termination {args.termination}, "
        f"precision {dream_precision(args.precision, 'cpu')}"
        + (f" (p > {args.done_threshold:g})" if args.termination == "threshold" else "")
    )
    for label, spec in fixed_suite(world) + [(e, e) for e in args.extra]:
        r = evaluate_dream(
            world,
            spec,
            args.n,
            args.seed,
            temperature=args.tau,
            device="cpu",
            termination=args.termination,
            done_threshold=args.done_threshold,
            precision=args.precision,
        )
        ci = summarize(r, args.seed)["ci95"]
        line = f"{label:34s} dream {r.mean():8.1f} ± {r.std():6.1f} [{ci[0]:8.1f}, {ci[1]:8.1f}]"
        if label in real:
            check = fidelity_check(r.mean(), real[label], rel_tol=0.25, abs_tol=30.0)
            ratio = "" if check["ratio"] is None else f"{check['ratio']:.2f}"
            line += f"   real {real[label]:8.1f}  {ratio:>5s}  {'ok' if check['ok'] else 'OFF'}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
