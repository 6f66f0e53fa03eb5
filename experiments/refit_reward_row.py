"""Refit M's reward head by least squares with its LSTM frozen; write the result as a new world.

usage: python experiments/refit_reward_row.py WORLD OUT [--extra DATA ...] [--extra-holdout K]
           [--terminal include|exclude]
           [--sum-weight W] [--window N] [--ridge L] [--latents OUT_OF_TRAIN/latents.safetensors]
           [--dream-weight W] [--dream-window N] [--dream-samples K] [--dream-data DATA ...]
           [--temperature T] [--seed S]

Why: a controller reads M's hidden state h, so any change to the LSTM needs a new controller. The
reward row of M's head is linear in h, so it can be refitted alone, in closed form, and the
world's controllers keep their real scores exactly; only the dream's rewards change. The fit is
teacher-forced, as M's training: V's mean z of each recorded frame and the recorded actions from
h = 0 at every episode start, over the world's own training data (its held-out episodes left out
and scored) plus any `--extra` datasets. `--sum-weight` adds the return-consistency term of
`dreamgym train --reward-sum-weight` over `--window`-step pieces of each episode. Worlds with a
reward-event head are not supported. The model card's 2026-12-02 section was measured with it.

`--dream-weight` (2026-12-02) fits the row to the dream's own states too. Teacher-forced h is
what M's head sees along real frames; the dream feeds M its own sampled z, and the h it reaches
drifts from the real one (a parked car's z wanders like motion). Each episode is replayed as a
dream: its recorded actions, open loop, from a z drawn at its first frame, `--dream-samples`
times at the world's τ. The dream's expected reward over a `--dream-window`-step piece is then
linear in the row, w · Σ_t P(alive at t) [h̃_t, 1], so matching it to the real piece's reward is
one more least-squares term: the return a real episode got is what its actions earn in the dream.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from dreamgym.models.mdnrnn import sample_mdn
from dreamgym.spaces import encode_actions_np
from dreamgym.training.episodes import load_manifests, select_from_datasets
from dreamgym.training.vae import encode_frames
from dreamgym.world import World


def hidden_states(world: World, frames_mu: torch.Tensor, actions: np.ndarray) -> np.ndarray:
    """h after each (z_t, a_t) of one episode, from h = 0 (what M's reward head reads)."""
    a = torch.from_numpy(encode_actions_np(actions, world.action_space))
    h, _ = world.mdnrnn.lstm(torch.cat([frames_mu[:-1], a], -1).unsqueeze(0))
    return h[0].numpy().astype(np.float64)


def dream_feature_sums(
    world: World,
    starts: list[tuple[torch.Tensor, torch.Tensor]],
    actions: list[np.ndarray],
    window: int,
    samples: int,
    temperature: float,
    seed: int,
) -> np.ndarray:
    """Σ_t P(alive at t) [h̃_t, 1] over each `window`-step piece of each episode's open-loop dream.

    Returns (episodes, pieces, H + 1), the mean over `samples` dreams per episode: the dream's
    expected reward over a piece is this times the reward row (h̃ after each (z̃_t, a_t), z̃ the
    dream's own samples, as `DreamVectorEnv.step_tensors` pays it).
    """
    m = world.mdnrnn
    n, hd = len(actions), m.config.hidden_dim
    lengths = np.array([len(a) for a in actions])
    t_max = int(lengths.max())
    pieces = -(-t_max // window)
    enc = [encode_actions_np(a, world.action_space) for a in actions]
    a_all = np.zeros((t_max, n, enc[0].shape[1]), np.float32)
    for i, e in enumerate(enc):
        a_all[: len(e), i] = e
    a_t = torch.from_numpy(a_all).repeat_interleave(samples, dim=1)  # (T, n·K, A)
    length_t = torch.from_numpy(lengths).repeat_interleave(samples)
    g = torch.Generator().manual_seed(seed)
    mu0 = torch.stack([s[0].float() for s in starts]).repeat_interleave(samples, 0)
    lv0 = torch.stack([s[1].float() for s in starts]).repeat_interleave(samples, 0)
    z = mu0 + torch.exp(0.5 * lv0) * torch.randn(mu0.shape, generator=g)
    h = torch.zeros(len(z), hd)
    c = torch.zeros(len(z), hd)
    alive = torch.ones(len(z), dtype=torch.float64)
    feats = torch.zeros(len(z), pieces, hd + 1, dtype=torch.float64)
    with torch.no_grad():
        for t in range(t_max):
            out, (h, c) = m.step(z, a_t[t], (h, c))
            w = alive * (t < length_t).double()
            feats[:, t // window, :hd] += w[:, None] * h.double()
            feats[:, t // window, hd] += w
            alive = alive * (1.0 - m.done_probability(out.done_logit).double())
            z = sample_mdn(out.logpi, out.mu, out.logsigma, temperature, g)
    return feats.view(n, samples, pieces, hd + 1).mean(1).numpy()


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
    p.add_argument("--dream-weight", type=float, default=0.0, help="dream-return weight")
    p.add_argument("--dream-window", type=int, default=1000, help="steps per dream piece")
    p.add_argument("--dream-samples", type=int, default=8, help="dreams per episode")
    p.add_argument("--temperature", type=float, help="the dreams' τ (default: the world's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the dreams' noise")
    p.add_argument(
        "--dream-data",
        nargs="*",
        help="datasets whose episodes get the dream term (default: all). Only open-loop policies "
        "belong here: a closed-loop driver's recorded actions, replayed in a dream whose track "
        "drifts from the real one, do not earn what they earned in reality",
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
    cache = load_file(args.latents) if args.latents else None
    cpu = torch.device("cpu")

    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, bool]] = []  # h, r, terminated, held out
    starts: list[tuple[torch.Tensor, torch.Tensor]] = []  # V's (mu, logvar) of each first frame
    acts: list[np.ndarray] = []
    names: list[str] = []
    frame0 = 0
    with torch.no_grad():
        for i, d in enumerate(dirs + list(args.extra)):
            own = i < len(dirs)
            selected = select_from_datasets([d], load_manifests([d]), None)
            for j, (entry, steps) in enumerate(selected):
                shard = np.load(Path(d) / entry["file"])
                if own and cache is not None:
                    mu = cache["mu"][frame0 : frame0 + steps + 1]
                    logvar0 = cache["logvar"][frame0]
                    frame0 += steps + 1
                else:
                    mu_np, logvar_np = encode_frames(
                        world.vae, shard["frames"], cpu, progress=False
                    )
                    mu, logvar0 = torch.from_numpy(mu_np), torch.from_numpy(logvar_np[0])
                starts.append((mu[0], logvar0))
                acts.append(np.asarray(shard["actions"]))
                names.append(str(d))
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
    feats = None
    if args.dream_weight > 0:
        tau = float(args.temperature or world.config.get("temperature", 1.0))
        chosen = set(args.dream_data) if args.dream_data else set(names)
        unknown = chosen - set(names)
        if unknown:
            raise SystemExit(f"--dream-data names datasets not fitted on: {sorted(unknown)}")
        dream_idx = [i for i, nm in enumerate(names) if nm in chosen]
        sub = dream_feature_sums(
            world,
            [starts[i] for i in dream_idx],
            [acts[i] for i in dream_idx],
            args.dream_window,
            args.dream_samples,
            tau,
            args.seed,
        )
        feats = dict(zip(dream_idx, sub, strict=True))
        for i, f in feats.items():
            _, r, _, held = rows[i]
            if held:
                continue
            for k in range(-(-len(r) // args.dream_window)):
                piece = r[k * args.dream_window : (k + 1) * args.dream_window]
                a_mat += args.dream_weight * np.outer(f[k], f[k]) / len(piece)
                b_vec += args.dream_weight * f[k] * piece.sum() / len(piece)
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
    if feats is not None:
        # The dream's expected return of episode i is dream_ret[i] · w.
        dream_ret = {i: f.sum(0) for i, f in feats.items()}
        for name in dict.fromkeys(names[i] for i in feats):
            for label, keep in (("held out", True), ("fitted", False)):
                idx = [i for i in feats if names[i] == name and rows[i][3] == keep]
                if not idx:
                    continue
                real = np.array([rows[i][1].sum() for i in idx])
                ret_old = np.array([dream_ret[i] @ old for i in idx])
                ret_new = np.array([dream_ret[i] @ new for i in idx])
                print(
                    f"  {Path(name).name} {label} ({len(idx)}): real {real.mean():.1f}, "
                    f"open-loop dream {ret_old.mean():.1f} → {ret_new.mean():.1f} "
                    f"(mean |error| {np.abs(ret_old - real).mean():.1f} → "
                    f"{np.abs(ret_new - real).mean():.1f})"
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
        **(
            {
                "dream_weight": args.dream_weight,
                "dream_window": args.dream_window,
                "dream_samples": args.dream_samples,
                "temperature": args.temperature,
                "seed": args.seed,
            }
            if args.dream_weight > 0
            else {}
        ),
    }
    world.save(out, dtype=world.config.get("weights_dtype", "float32"))
    World.load(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
