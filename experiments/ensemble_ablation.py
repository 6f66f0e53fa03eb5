"""Which ensemble lever makes the dream rank and pay policies as reality does?

For one world and its members, a panel of policies whose real returns were measured before
(`dreamgym rank`, `evaluate --real --json` or `diagnose --json` reports) is dreamed once per
ensemble size K (the world and its first K − 1 members). Every penalty λ and halt h is read
off the same dreams (`ensemble_disagreement.py`: a penalty leaves the trajectory alone, a halt
cuts it at the first step with d > h), with h at quantiles of d on real episodes for that K.
Per (K, λ, h) it prints the panel's Spearman ρ and Pearson r (all policies and trained ones
alone, with CIs from resampled episodes), the shipped controller's dream/real and the range of
dream/real over the trained and the fixed policies. No real episode is played.

Real returns of different policies may come from different seeds: ρ compares means.

Usage: python experiments/ensemble_ablation.py --world W --members M1 M2 M3 M4 --sizes 1,3,5
           --real RANK.json EVAL.json DIAG.json [--policies SPEC ...] --shipped SPEC
           --data D1 D2 [--teacher-episodes 60] [--dream-episodes 64] [--seed 120000]
           [--lambdas 1,3] [--halts q99,q999] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ensemble_disagreement import dream_traces, teacher_forced_disagreement

from dreamgym.evaluation.diagnose.reuse import world_independent
from dreamgym.evaluation.rank.correlation import agreement
from dreamgym.world import World


def read_real(paths: list[str]) -> dict[str, np.ndarray]:
    """Real returns per policy spec from rank, evaluate and diagnose JSON reports."""
    found: dict[str, np.ndarray] = {}
    for path in paths:
        report = json.loads(Path(path).read_text())
        if isinstance(report.get("policies"), list):  # dreamgym rank
            rows = [(r["spec"], r["real"]["returns"]) for r in report["policies"]]
        elif isinstance(report.get("suite"), list):  # dreamgym diagnose
            rows = [(r["spec"], r["real"]["returns"]) for r in report["suite"]]
        elif report.get("mode") == "real":  # dreamgym evaluate --real
            rows = [(report["policy"], report["returns"])]
        else:
            raise ValueError(f"{path}: not a rank, diagnose or `evaluate --real` JSON report")
        for spec, returns in rows:
            found[spec] = np.asarray(returns, dtype=np.float64)
    return found


def variant_returns(
    rewards: np.ndarray, d: np.ndarray, lambdas: list[float], halts: dict[str, float]
) -> dict[str, np.ndarray]:
    """Per-episode dream returns under λ = 0, each penalty λ and each halt h (same dreams)."""
    total, dsum = rewards.sum(0), d.sum(0)
    out = {"λ=0": total}
    for lam in lambdas:
        out[f"λ={lam:g}"] = total - lam * dsum
    for name, h in halts.items():
        over = d > h
        first = np.where(over.any(0), over.argmax(0), rewards.shape[0])
        keep = np.arange(rewards.shape[0])[:, None] <= first[None, :]  # the halting step counts
        out[f"halt {name}"] = (rewards * keep).sum(0)
    return out


def ratios(specs: list[str], dream: dict[str, np.ndarray], real: dict[str, np.ndarray]) -> list:
    return [float(dream[s].mean() / real[s].mean()) for s in specs]


def summary(
    dream: dict[str, np.ndarray], real: dict[str, np.ndarray], shipped: str, seed: int
) -> dict:
    """ρ, r and flattery of the panel for one dream variant."""
    specs = list(dream)
    trained = [s for s in specs if not world_independent(s)]
    fixed = [s for s in specs if world_independent(s)]
    row = {}
    for name, picked in (("all", specs), ("trained", trained)):
        row[name] = agreement([dream[s] for s in picked], [real[s] for s in picked], seed, 1000)
    row["shipped_ratio"] = ratios([shipped], dream, real)[0]
    row["trained_ratios"] = ratios(trained, dream, real)
    row["fixed_ratios"] = ratios(fixed, dream, real)
    return row


def _label(spec: str) -> str:
    return Path(spec).name if "/" in spec else spec


def _fmt(a: dict) -> str:
    ci = a["spearman_ci95"]
    ci_txt = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    return f"{a['spearman']:.2f}{ci_txt}"


def print_tables(results: dict, shipped: str) -> None:
    print(
        "\n| K | dream | ρ all | ρ trained | r all | shipped dream/real "
        "| trained dream/real (median, max) | fixed dream/real |"
    )
    print("|---|---|---|---|---|---:|---|---|")
    for k, block in results.items():
        for name, row in block["variants"].items():
            t, f = row["trained_ratios"], row["fixed_ratios"]
            print(
                f"| {k} | {name} | {_fmt(row['all'])} | {_fmt(row['trained'])} "
                f"| {row['all']['pearson']:.2f} | {row['shipped_ratio']:.2f} "
                f"| {np.median(t):.2f}, {max(t):.2f} | {min(f):.2f}–{max(f):.2f} |"
            )
    print(f"\nshipped controller: {_label(shipped)}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--world", required=True)
    p.add_argument("--members", nargs="*", default=[])
    p.add_argument("--sizes", default="1,3,5", help="ensemble sizes K (the world counts)")
    p.add_argument("--real", nargs="+", required=True, help="rank/evaluate/diagnose JSON reports")
    p.add_argument("--policies", nargs="*", default=None, help="default: every policy in --real")
    p.add_argument("--shipped", required=True, help="the spec of the shipped-style controller")
    p.add_argument("--data", nargs="+", required=True, help="real episodes for d's quantiles")
    p.add_argument("--teacher-episodes", type=int, default=60)
    p.add_argument("--dream-episodes", type=int, default=64)
    p.add_argument("--seed", type=int, default=120000)
    p.add_argument("--lambdas", default="1,3")
    p.add_argument("--halts", default="q99,q999")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    real = read_real(args.real)
    specs = args.policies or list(real)
    missing = [s for s in specs + [args.shipped] if s not in real]
    if missing:
        raise SystemExit(f"no real returns for {missing}: add the report that holds them to --real")
    world = World.load(args.world)
    lambdas = [float(x) for x in args.lambdas.split(",") if x]
    results: dict[str, dict] = {}
    for k in [int(x) for x in args.sizes.split(",")]:
        if k - 1 > len(args.members):
            raise SystemExit(f"K = {k} needs {k - 1} members; --members has {len(args.members)}")
        members = args.members[: k - 1]
        t0 = time.perf_counter()
        halts, quantiles = {}, {}
        if members:
            worlds = [world] + [World.load(m) for m in members]
            d_real = teacher_forced_disagreement(
                worlds, args.data, args.teacher_episodes, args.seed
            )
            quantiles = {
                q: float(np.quantile(d_real, float("0." + q[1:]))) for q in ("q99", "q999")
            }
            halts = {f"{q} ({quantiles[q]:.3f})": quantiles[q] for q in args.halts.split(",")}
        dreams: dict[str, dict[str, np.ndarray]] = {}
        for spec in specs:
            rewards, d, _ = dream_traces(world, members, spec, args.dream_episodes, args.seed)
            for name, ret in variant_returns(rewards, d, lambdas if members else [], halts).items():
                dreams.setdefault(name, {})[spec] = ret
        results[str(k)] = {
            "members": members,
            "real_d_quantiles": quantiles,
            "seconds": time.perf_counter() - t0,
            "dream_means": {
                n: {s: float(v.mean()) for s, v in m.items()} for n, m in dreams.items()
            },
            "variants": {n: summary(m, real, args.shipped, args.seed) for n, m in dreams.items()},
        }
        print(
            f"# K = {k}: {len(specs)} policies dreamed in {results[str(k)]['seconds']:.0f} s",
            flush=True,
        )
    print_tables(results, args.shipped)
    if args.json:
        real_means = {s: float(real[s].mean()) for s in specs}
        Path(args.json).write_text(
            json.dumps({"argv": sys.argv, "real_means": real_means, "sizes": results}, indent=1)
        )


if __name__ == "__main__":
    main()
