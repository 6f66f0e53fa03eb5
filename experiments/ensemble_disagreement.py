"""Where do ensemble members disagree, and what would a penalty or a halt do to each policy?

1. **On real episodes** (teacher-forced): every member reads the recorded z's and actions of
   real episodes from the datasets and predicts the next z; d per step as the ensemble dream
   measures it (`dreamgym.models.mdn_kernel.EnsembleKernel`). Its quantiles say how much the
   members disagree where they have data: a halt threshold above them leaves real-like states
   alone (MOReL sets its threshold from the data the same way).
2. **In the ensemble dream**, per policy (λ = 0, no halt): the dream return, Σd per episode, and,
   computed from the same dreams, the return under each penalty λ (r − λ·d leaves the
   trajectory unchanged, so it is R − λ·Σd) and under each halt h (the return until the first
   step with d > h: the trajectory is the same until then). No real episode is played.

Usage: python experiments/ensemble_disagreement.py --world W --members M1 M2 --data D1 D2
           [--policies bundled random constant:0 ...] [--real-episodes 100] [--dream-episodes 256]
           [--seed 120000] [--lambdas 0,1,5] [--halts q99,max] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from dreamgym.envs.dream import DreamVectorEnv
from dreamgym.models.mixture import mdn_mean
from dreamgym.policies.loading import load_policy
from dreamgym.training.episodes import load_episodes, select_training_data
from dreamgym.training.vae import encode_frames
from dreamgym.world import World


def teacher_forced_disagreement(
    worlds: list[World], data: list[str], episodes: int, seed: int
) -> np.ndarray:
    """d at every step of `episodes` real episodes (drawn at random from `data`)."""
    dirs, manifests, selected = select_training_data(data, None)
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(selected), size=min(episodes, len(selected)), replace=False))
    out = []
    for e in picked:
        entry, steps = selected[e]
        part = load_episodes(
            entry["data_dir"],
            manifests[dirs.index(entry["data_dir"])],
            [(entry, steps)],
            progress=False,
        )
        mu, _ = encode_frames(worlds[0].vae, part.frames, torch.device("cpu"), progress=False)
        z = torch.as_tensor(mu[:-1])
        a = torch.as_tensor(part.actions)
        means = []
        for w in worlds:
            h = torch.zeros(1, w.hidden_dim)
            state = (h, h.clone())
            preds = []
            with torch.inference_mode():
                for t in range(z.shape[0]):
                    step, state = w.mdnrnn.step(z[t : t + 1], a[t : t + 1], state)
                    preds.append(mdn_mean(step.logpi, step.mu))
            means.append(torch.cat(preds))
        stacked = torch.stack(means)
        out.append((stacked - stacked.mean(0)).pow(2).mean(2).sqrt().amax(0).numpy())
    return np.concatenate(out)


def dream_traces(
    world: World, members: list[str], spec: str, episodes: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rewards, d, alive) per step and episode (T, N) of `spec` in the ensemble dream."""
    policy = load_policy(spec, world, seed=seed)
    env = DreamVectorEnv(
        world,
        num_envs=episodes,
        device="cpu",
        ensemble=members,
        autoreset_mode=AutoresetMode.DISABLED,
        obs_mode=policy.obs_mode,
    )
    obs = env.reset_tensors(seed=seed)
    alive = torch.ones(episodes, dtype=torch.bool)
    rewards, spreads, alives = [], [], []
    for _ in range(env.max_episode_steps):
        step = env.step_tensors(torch.as_tensor(np.asarray(policy.act(obs.numpy()))))
        alives.append(alive.clone())
        rewards.append(torch.where(alive, step.reward, 0.0))
        d = env.last_disagreement  # None in a world's own dream (no members): d = 0
        spreads.append(torch.where(alive, 0.0 if d is None else d, 0.0))
        alive &= ~step.done
        obs = step.obs
        if not bool(alive.any()):
            break
    return (
        torch.stack(rewards).double().numpy(),
        torch.stack(spreads).double().numpy(),
        torch.stack(alives).numpy(),
    )


def summarise(
    rewards: np.ndarray,
    d: np.ndarray,
    alive: np.ndarray,
    lambdas: list[float],
    halts: dict[str, float],
) -> dict[str, float]:
    total, dsum = rewards.sum(0), d.sum(0)
    row = {
        "return": float(total.mean()),
        "steps": float(alive.sum(0).mean()),
        "d_mean": float(d.sum() / alive.sum()),
        "d_sum": float(dsum.mean()),
    }
    for lam in lambdas:
        row[f"λ={lam:g}"] = float((total - lam * dsum).mean())
    for name, h in halts.items():
        over = (d > h) & alive
        first = np.where(over.any(0), over.argmax(0), rewards.shape[0])
        keep = np.arange(rewards.shape[0])[:, None] <= first[None, :]  # the halting step counts
        row[f"halt {name}"] = float((rewards * keep).sum(0).mean())
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--world", required=True)
    p.add_argument("--members", nargs="+", required=True)
    p.add_argument("--data", nargs="+", required=True, help="datasets of real episodes")
    p.add_argument("--policies", nargs="+", default=["bundled", "random"])
    p.add_argument("--real-episodes", type=int, default=100)
    p.add_argument("--dream-episodes", type=int, default=256)
    p.add_argument("--seed", type=int, default=120000)
    p.add_argument("--lambdas", default="0,1,5,20")
    p.add_argument("--halts", default="q99,q999,max")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    world = World.load(args.world)
    worlds = [world] + [World.load(m) for m in args.members]
    real = teacher_forced_disagreement(worlds, args.data, args.real_episodes, args.seed)
    quantiles = {
        "q50": np.quantile(real, 0.5),
        "q99": np.quantile(real, 0.99),
        "q999": np.quantile(real, 0.999),
        "max": real.max(),
    }
    print(f"# d on {args.real_episodes} real episodes ({real.size} steps), teacher-forced")
    print(" ".join(f"{k} {v:.4f}" for k, v in quantiles.items()))
    halts = {k: float(quantiles[k]) for k in args.halts.split(",")}
    lambdas = [float(x) for x in args.lambdas.split(",")]
    rows = {}
    for spec in args.policies:
        traces = dream_traces(world, args.members, spec, args.dream_episodes, args.seed)
        rows[spec] = summarise(*traces, lambdas, halts)
    cols = list(next(iter(rows.values())))
    print(f"\n# ensemble dream, {args.dream_episodes} dreams per policy, seeds {args.seed}+\n")
    print("| policy | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for spec, row in rows.items():
        print(f"| {spec} | " + " | ".join(f"{row[c]:.4g}" for c in cols) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "argv": sys.argv,
                    "real_d_quantiles": {k: float(v) for k, v in quantiles.items()},
                    "halts": halts,
                    "policies": rows,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
