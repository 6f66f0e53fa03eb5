"""RSSM vs the shipped MDN-RNN, side by side on the same data and V: held-out open-loop z error.

Loads the datasets a world's M was trained on (in the order its provenance lists them), encodes
every frame once with the world's V (`encode_frames`, as `dreamgym train --vae-from WORLD
--vae-epochs 0` does; `--latents FILE` caches the result, or reuses a `latents.safetensors` a
`dreamgym train` run over the same --data left in its OUT/.train folder, after re-encoding a few
frames to check it came from this V), trains an RSSM per `--stoch` kind on the world's training
episodes, and reports the RMSE of z at k = 1, 10, 50 steps of open loop on the world's held-out
episodes (its provenance's `val_indices`, which neither memory has seen) for the world's M, each
RSSM, the memories of the `--compare` worlds (trained on the same data and V, either family) and
the copy-last-z baseline; with each memory's training wall time.

usage: python experiments/rssm_openloop.py --data DATA/doom-random DATA/doom-const0 \\
           DATA/doom-const1 DATA/doom-const2 --world doom_takecover --latents DATA/latents.st \\
           --epochs 5 --stoch gaussian categorical --out rssm-openloop
       python experiments/rssm_openloop.py --data DATA/car-a DATA/car-b --world WORLDS/car-mdn \\
           --compare WORLDS/car-rssm-gaussian --stoch
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from dreamgym.evaluation.openloop import OpenLoopConfig, openloop_error
from dreamgym.models.rssm import STOCH_KINDS, RSSMConfig
from dreamgym.training.episodes import load_episodes, select_training_data
from dreamgym.training.mdn import LatentEpisodes
from dreamgym.training.rssm import RSSMTrainConfig, make_rssm, train_rssm
from dreamgym.training.vae import encode_frames
from dreamgym.world import World

CHECK_FRAMES = 256
"""Frames re-encoded to check that a cached latents file came from this V."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, help="the world's datasets, in its order")
    p.add_argument("--world", default="doom_takecover", help="bundled name or directory")
    p.add_argument("--latents", help="cache of V's (mu, logvar) per frame (safetensors)")
    p.add_argument(
        "--stoch", nargs="*", default=["gaussian"], choices=STOCH_KINDS,
        help="RSSMs to train here (none: score the worlds' memories alone)",
    )  # fmt: skip
    p.add_argument(
        "--compare", nargs="*", default=[],
        help="more worlds on the same V and data (either memory), scored on the same windows",
    )  # fmt: skip
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch", type=int, default=32, help="rows of episodes per batch")
    p.add_argument("--seq-len", type=int, default=50)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--deter", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--stoch-dim", type=int, default=32, help="Gaussian s dims")
    p.add_argument("--groups", type=int, default=16, help="categorical groups")
    p.add_argument("--classes", type=int, default=16, help="categorical classes")
    p.add_argument("--free-nats", type=float, default=1.0)
    p.add_argument("--kl-balance", type=float, default=0.8)
    p.add_argument("--overshooting", type=int, default=0, help="D (0 = off)")
    p.add_argument(
        "--z-means", action="store_true", help="train the RSSM on V's means, not z drawn per epoch"
    )
    p.add_argument("--train-episodes", type=int, help="train on the first N training episodes")
    p.add_argument("--horizons", type=int, nargs="+", default=[1, 10, 50])
    p.add_argument("--context", type=int, default=50)
    p.add_argument("--stride", type=int, default=25)
    p.add_argument("--sampled", action="store_true", help="also score τ = 1 rollouts")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="folder for results.json and the RSSMs' weights")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def held_out(world: World, entries: list[dict], dirs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) episode positions as the world's provenance split them."""
    prov = world.config.get("provenance") or {}
    val_ids = (prov.get("episodes") or {}).get("val_indices")
    given = prov.get("data")
    given = [given] if isinstance(given, str) else given
    if val_ids is None or given is None or len(given) != len(dirs):
        raise SystemExit(
            f"world {world.name!r} records no held-out episodes for {len(dirs)} dataset(s) "
            f"(provenance data: {given}); pass the datasets it was trained on, in its order"
        )
    val = {(0, int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1])) for v in val_ids}
    order = {d: k for k, d in enumerate(dirs)}
    is_val = np.array([(order[e["data_dir"]], int(e["index"])) in val for e in entries])
    if int(is_val.sum()) != len(val):
        raise SystemExit(
            f"found {int(is_val.sum())} of the world's {len(val)} held-out episodes in --data; "
            "pass the datasets it was trained on, in its order"
        )
    positions = np.arange(len(entries))
    return positions[~is_val], positions[is_val]


def latents_for(world: World, frames: np.ndarray, path: str | None, progress: bool) -> tuple:
    """(mu, logvar) of every frame: from `path` if it holds this V's, else encoded (and saved)."""
    cpu = torch.device("cpu")
    if path and Path(path).is_file():
        cached = load_file(path)
        mu, logvar = cached["mu"].numpy(), cached["logvar"].numpy()
        idx = np.linspace(0, len(frames) - 1, CHECK_FRAMES).astype(np.int64)
        check, _ = encode_frames(world.vae, frames[idx], cpu, progress=False)
        if mu.shape != (len(frames), world.latent_dim) or not np.allclose(
            check, mu[idx], atol=1e-3
        ):
            raise SystemExit(f"{path} does not hold this V's latents of these frames; delete it")
        return mu, logvar
    mu, logvar = encode_frames(world.vae, frames, cpu, progress=progress)
    if path:
        save_file({"mu": torch.from_numpy(mu), "logvar": torch.from_numpy(logvar)}, path)
    return mu, logvar


def rssm_config(args: argparse.Namespace, kind: str, world: World) -> RSSMConfig:
    return RSSMConfig(
        latent_dim=world.latent_dim,
        action_dim=world.mdnrnn.config.action_dim,
        deter_dim=args.deter,
        hidden_dim=args.hidden,
        stoch=kind,
        stoch_dim=args.stoch_dim,
        groups=args.groups,
        classes=args.classes,
        done_pos_weight=world.mdnrnn.config.done_pos_weight,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    progress = not args.no_progress
    world = World.load(args.world, device="cpu")
    dirs, manifests, selected = select_training_data(args.data, None)
    t0 = time.perf_counter()
    data = load_episodes(dirs[0], manifests[0], selected, progress=progress)
    train_eps, val_eps = held_out(world, data.entries, dirs)
    mu, logvar = latents_for(world, data.frames, args.latents, progress)
    latents = LatentEpisodes.from_arrays(
        mu, logvar, data.actions, data.rewards, data.dones, data.lengths
    )
    del data
    print(f"data: {len(train_eps)} train / {len(val_eps)} held-out episodes, "
          f"{time.perf_counter() - t0:.0f} s to load and encode", flush=True)  # fmt: skip
    ol = OpenLoopConfig(
        horizons=tuple(args.horizons), context=args.context, stride=args.stride,
        sampled=args.sampled, seed=args.seed,
    )  # fmt: skip
    if args.train_episodes:
        train_eps = train_eps[: args.train_episodes]
    results: dict = {"args": vars(args), "memories": {}}
    t0 = time.perf_counter()
    report = openloop_error(world.memory_net, latents, val_eps, ol)
    results["windows"] = report.windows
    results["copy_last"] = report.copy_last
    results["memories"][f"{world.memory_kind} ({world.name})"] = {
        **report.to_dict(), "train_seconds": world.config["provenance"]["stages"]["rnn"]["seconds"],
        "eval_seconds": time.perf_counter() - t0,
    }  # fmt: skip
    for path in args.compare:
        other = World.load(path, device="cpu")
        t0 = time.perf_counter()
        report = openloop_error(other.memory_net, latents, val_eps, ol)
        results["memories"][f"{other.memory_kind} ({other.name})"] = {
            **report.to_dict(), "eval_seconds": time.perf_counter() - t0,
            "train_seconds": other.config["provenance"]["stages"]["rnn"]["seconds"],
        }  # fmt: skip
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    for kind in args.stoch:
        model = make_rssm(rssm_config(args, kind, world), latents, train_eps, seed=args.seed)
        tc = RSSMTrainConfig(
            epochs=args.epochs, batch=args.batch, seq_len=args.seq_len, lr=args.lr,
            free_nats=args.free_nats, kl_balance=args.kl_balance, overshooting=args.overshooting,
            z_means=args.z_means, seed=args.seed, progress=progress,
        )  # fmt: skip
        t0 = time.perf_counter()
        trained = train_rssm(model, latents, train_eps, tc)
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        report = openloop_error(trained.model, latents, val_eps, ol)
        results["memories"][f"rssm {kind}"] = {
            **report.to_dict(), "train_seconds": seconds, "history": trained.history,
            "eval_seconds": time.perf_counter() - t0, "config": model.config.to_dict(),
        }  # fmt: skip
        if out:
            save_file(trained.model.state_dict(), str(out / f"rssm_{kind}.safetensors"))
        print(f"rssm {kind}: {seconds:.0f} s, last epoch {trained.history[-1]}", flush=True)
    print_table(results, args.horizons)
    if out:
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))


def print_table(results: dict, horizons: list[int]) -> None:
    head = " ".join(f"{f'k={k}':>8s}" for k in horizons)
    print(f"\nopen-loop z RMSE on {results['windows']} held-out windows\n{'memory':22s} {head}"
          f" {'train s':>8s}")  # fmt: skip
    for name, r in results["memories"].items():
        cells = " ".join(f"{r['rmse'][k]:8.3f}" for k in horizons)
        print(f"{name:22s} {cells} {r['train_seconds']:8.0f}")
        if r.get("rmse_sampled"):
            cells = " ".join(f"{r['rmse_sampled'][k]:8.3f}" for k in horizons)
            print(f"{'  sampled (τ = 1)':22s} {cells}")
    cells = " ".join(f"{results['copy_last'][k]:8.3f}" for k in horizons)
    print(f"{'copy last z':22s} {cells}")


if __name__ == "__main__":
    main()
