"""Refit M's reward head by least squares with its LSTM frozen; write the result as a new world.

usage: python scripts/refit_reward_row.py WORLD OUT [--extra DATA ...] [--extra-holdout K]
           [--terminal include|exclude]
           [--sum-weight W] [--window N] [--ridge L] [--latents OUT_OF_TRAIN/latents.safetensors]

Why: a controller reads M's hidden state h, so any change to the LSTM needs a new controller. The
reward row of M's head is linear in h, so it can be refitted alone, in closed form, and the
world's controllers keep their real scores exactly; only the dream's rewards change. The fit is
teacher-forced, as M's training: V's mean z of each recorded frame and the recorded actions from
h = 0 at every episode start, over the world's own training data (its held-out episodes left out
and scored) plus any `--extra` datasets. `--sum-weight` adds the return-consistency term of
`dreamgym train --reward-sum-weight` over `--window`-step pieces of each episode. Worlds with a
reward-event head are not supported. The model card's session-12 section was measured with it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from dreamgym.spaces import encode_actions_np
from dreamgym.training.episodes import load_manifests, select_from_datasets
from dreamgym.training.vae import encode_frames
from dreamgym.world import World


def hidden_states(world: World, frames_mu: torch.Tensor, actions: np.ndarray) -> np.ndarray:
    """h after each (z_t, a_t) of one episode, from h = 0 (what M's reward head reads)."""
    a = torch.from_numpy(encode_actions_np(actions, world.action_space))
    h, _ = world.mdnrnn.lstm(torch.cat([frames_mu[:-1], a], -1).unsqueeze(0))
    return h[0].numpy().astype(np.float64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("world", help="a bundled name or a bundle directory")
    p.add_argument("out", help="directory of the refitted world (must not exist)")
    p.add_argument("--extra", nargs="*", default=[], help="more datasets to fit on")
    p.add_argument(
        "--extra-holdout", type=int, default=0, help="last K episodes of each extra held out"
    )
    p.add_argument("--terminal", choices=("include", "exclude"), default="include")
    p.add_argument("--sum-weight", type=float, default=0.0, help="return-consistency weight")
    p.add_argument("--window", type=int, default=100, help="steps per return-consistency piece")
    p.add_argument("--ridge", type=float, default=1.0, help="L2 on the weights (not the bias)")
    p.add_argument(
        "--latents", help="the training run's latent cache (frames of its data in order)"
    )
    args = p.parse_args()
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists; pick a new directory")
    torch.set_num_threads(1)
    world = World.load(args.world)
    if world.mdnrnn.config.has_reward_events:
        raise SystemExit("this world's M has a reward-event head; refit supports the plain head")
    prov = world.config["provenance"]
    dirs = list(prov["data"])
    val = {tuple(x) for x in prov["episodes"]["val_indices"]}
    cache = load_file(args.latents)["mu"] if args.latents else None
    cpu = torch.device("cpu")

    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, bool]] = []  # h, r, terminated, held out
    frame0 = 0
    with torch.no_grad():
        for i, d in enumerate(dirs + list(args.extra)):
            own = i < len(dirs)
            selected = select_from_datasets([d], load_manifests([d]), None)
            for j, (entry, steps) in enumerate(selected):
                shard = np.load(Path(d) / entry["file"])
                if own and cache is not None:
                    mu = cache[frame0 : frame0 + steps + 1]
                    frame0 += steps + 1
                else:
                    mu = torch.from_numpy(
                        encode_frames(world.vae, shard["frames"], cpu, progress=False)[0]
                    )
                h = hidden_states(world, mu, shard["actions"])
                rows.append(
                    (h, shard["rewards"].astype(np.float64), shard["terminated"].astype(bool),
                     (i, entry["index"]) in val if own else j >= len(selected) - args.extra_holdout)
                )  # fmt: skip
    ridx = world.mdnrnn.head.out_features - 2
    head = world.mdnrnn.head
    old = torch.cat([head.weight[ridx], head.bias[ridx : ridx + 1]]).detach().double().numpy()
    n_feat = old.shape[0]
    a_mat, b_vec = np.zeros((n_feat, n_feat)), np.zeros(n_feat)
    for h, r, term, held in rows:
        if held:
            continue
        x = np.concatenate([h, np.ones((len(h), 1))], 1)
        keep = np.ones(len(r), bool) if args.terminal == "include" else ~term
        a_mat += x[keep].T @ x[keep]
        b_vec += x[keep].T @ r[keep]
        if args.sum_weight > 0:
            for s0 in range(0, len(r), args.window):
                sl = slice(s0, s0 + args.window)
                k = keep[sl]
                if k.any():
                    xs, rs = x[sl][k].sum(0), r[sl][k].sum()
                    a_mat += args.sum_weight * np.outer(xs, xs) / k.sum()
                    b_vec += args.sum_weight * xs * rs / k.sum()
    a_mat[:-1, :-1] += args.ridge * np.eye(n_feat - 1)
    new = np.linalg.solve(a_mat, b_vec)

    def return_error(w: np.ndarray) -> float:
        errs = [
            abs((np.concatenate([h, np.ones((len(h), 1))], 1) @ w).sum() - r.sum())
            for h, r, _, held in rows
            if held
        ]
        return float(np.mean(errs))

    print(
        f"held-out episodes: mean |return error| {return_error(old):.1f} → {return_error(new):.1f}"
    )
    with torch.no_grad():
        head.weight[ridx] = torch.from_numpy(new[:-1]).to(head.weight.dtype)
        head.bias[ridx] = float(new[-1])
    world.config.setdefault("provenance", {})["reward_refit"] = {
        "from": str(world.path),
        "extra": list(args.extra),
        "terminal": args.terminal,
        "sum_weight": args.sum_weight,
        "window": args.window,
        "ridge": args.ridge,
    }
    world.save(out, dtype=world.config.get("weights_dtype", "float32"))
    World.load(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
