"""`train_world`: learn V, then M, from a collected dataset, and write a world bundle.

The three stages of World Models (Ha & Schmidhuber 2018, §3 and appendix A):

1. **V** — the ConvVAE is trained on frames of the training episodes (reconstruction + KL with
   free bits, `vae_loss`). Frames stay one uint8 array in memory (12 KB a frame); a batch becomes
   float only when it is formed, so 500k frames need ~6 GB and no float copy of the dataset.
2. **Encode** — every frame is encoded once into (mu, logvar), cached in `OUT/.train/`, so that M
   trains on a fresh z ~ N(mu, σ²) every epoch without running V again (the paper's trick).
3. **M** — the MDN-RNN learns p(z_{t+1} | z_t, a_t, h_t), the reward r_t and done_t =
   terminated_t (truncation is not death). New runs follow the paper's code (doomrnn.py): a
   mixture per latent dim, whole episodes in `seq_len` chunks with the LSTM state carried,
   the NLL averaged over dims, deaths weighted ×10 in the done loss, the terminal frame left out
   of the NLL, and the learning rate decaying per step (`NEW_RUN_DEFAULTS`). `--mixture shared
   --rnn-sequences windows ...` trains as before; a run started before these options resumes
   with what it trained with (`resolve_run_options`). The done weight is stored in the bundle
   and the dream divides it out of the odds again. `--memory rssm` trains an RSSM (PlaNet,
   Dreamer) in this stage instead: `training/rssm_stage.py`, its metrics too.

Then held-out metrics on whole validation *episodes* (V's reconstruction error, M's NLL, reward
error and done precision/recall, each next to a trivial baseline), the bundle (`World.save`), a
`MODEL_CARD.md` and two report images in `OUT/report/`.

Resuming: every epoch ends with a checkpoint (`OUT/.train/<stage>_epochNNNN.safetensors`: model
and optimizer tensors) committed by an atomic rewrite of `OUT/.train/progress.json` (which also
holds the optimizer's non-tensor state and the loss history). Re-running the same command after an
interruption — Ctrl-C or kill -9 — continues after the last committed epoch; finished stages are
skipped. Each epoch's sampling is seeded by (seed, stage, epoch), so a resumed run draws the same
batches as an uninterrupted one. Raising `--vae-epochs` / `--rnn-epochs` later trains further (M's
learning-rate schedule goes on from Adam's step count; more V epochs mean encoding again and a
fresh M); any other change of options or data is refused, and `OUT/.train` can be deleted once
the world is final.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dreamgym.envs.dream import resolve_device
from dreamgym.envs.real import DEFAULT_MAX_EPISODE_STEPS, ensure_registered
from dreamgym.models.mdnrnn import MDNRNN, MDNRNNConfig
from dreamgym.models.rssm import RSSM
from dreamgym.models.vae import ConvVAE
from dreamgym.preprocessing import FramePreprocessing
from dreamgym.spaces import action_space_from_dict
from dreamgym.training.card import model_card
from dreamgym.training.config import (
    EpochCallback,
    TrainConfig,
    TrainingStateError,
    bundle_settings,
    check_config,
    loss_options,
    resolve_run_options,
)
from dreamgym.training.context import TrainingRun
from dreamgym.training.episodes import load_episodes, select_training_data, split_train_val
from dreamgym.training.epochs import run_epochs
from dreamgym.training.mdn import (
    LatentEpisodes,
    LRSchedule,
    count_rnn_batches,
    init_rnn_heads,
    reward_event_options,
    train_rnn_epoch,
)
from dreamgym.training.metrics import evaluate_rnn, held_out_metrics, latent_stats
from dreamgym.training.report import write_reports
from dreamgym.training.rssm_stage import rssm_held_out_metrics, train_rssm_stage
from dreamgym.training.vae import (
    encode_frames,
    evaluate_vae,
    load_vae_from,
    make_adam,
    prepare_vae_for_training,
    train_vae_epoch,
)
from dreamgym.training.workspace import (
    Workspace,
    check_can_resume,
    check_fingerprint,
    fingerprint,
    new_progress,
)
from dreamgym.utils.files import atomic_write_bytes
from dreamgym.utils.threads import busy_cores, torch_threads
from dreamgym.world import CONFIG_FILE, MODEL_CARD_FILE, World

MAX_INITIAL_LATENTS = 1000
"""At most this many real first frames seed the bundle's reset bank."""
EPOCH_VAL_FRAMES = 512
"""V's per-epoch validation MSE (progress bar, history) uses this many frames."""


@dataclass
class TrainResult:
    """What `run_training` did: the bundle's path and config, and whether it was already there."""

    path: Path
    world_config: dict[str, Any]
    up_to_date: bool = False
    """True when OUT already held this run's finished bundle: nothing was trained."""


def train_world(config: TrainConfig, on_epoch: EpochCallback | None = None) -> Path:
    """Train V and M on `config.data` and write the world bundle to `config.out`; returns it.

    Resumable (see the module docstring). `on_epoch(stage, epoch, record)` is called after each
    committed epoch (tests use it to interrupt a run).
    """
    return run_training(config, on_epoch).path


def run_training(config: TrainConfig, on_epoch: EpochCallback | None = None) -> TrainResult:
    """`train_world`, also saying whether OUT was already up to date (for the command's output)."""
    check_config(config)
    wall_start = time.perf_counter()
    dirs, manifests, selected = select_training_data(config.data, config.max_frames)
    vae_from = load_vae_from(config.vae_from, config.latent, manifests[0])
    ws = Workspace(Path(config.out))
    progress = ws.load_progress()
    config = resolve_run_options(config, progress["fingerprint"]["options"] if progress else None)
    new = fingerprint(config, manifests[0], selected, None if vae_from is None else vae_from[1])
    check_can_resume(ws, progress, new, config)
    done = _finished_world(ws, progress, config)
    if done is not None:
        return TrainResult(ws.out, done.config, up_to_date=True)

    # Everything about the data is checked before OUT is touched.
    data = load_episodes(dirs[0], manifests[0], selected, progress=config.progress)
    train_eps, val_eps = split_train_val(len(selected), config.val_fraction, config.seed, dirs[0])
    device = resolve_device(config.device)
    threads = config.threads if config.threads is not None else default_threads()
    with torch_threads(threads), ws.lock():
        progress = ws.load_progress()  # again: another run may have finished meanwhile
        if progress is None:
            progress = new_progress(new)
            ws.save_progress(progress)
        check_fingerprint(ws, progress["fingerprint"], new)
        run = TrainingRun(
            config=config,
            ws=ws,
            progress=progress,
            dirs=dirs,
            manifests=manifests,
            data=data,
            train_eps=train_eps,
            val_eps=val_eps,
            device=device,
            on_epoch=on_epoch,
            wall_start=wall_start,
        )
        world = _train_stages(run, None if vae_from is None else vae_from[0])
    return TrainResult(ws.out, world.config)


def _train_stages(run: TrainingRun, vae_from: ConvVAE | None) -> World:
    """V → encode → M → held-out metrics → bundle; each stage skips what progress.json holds."""
    vae = _train_vae(run, vae_from)
    mu, logvar = _encode(run, vae)
    d = run.data
    latents = LatentEpisodes.from_arrays(
        mu, logvar, d.actions, d.rewards, d.dones, d.lengths, run.device
    )
    if run.config.memory == "rssm":  # M's stage with an RSSM (training/rssm_stage.py)
        rnn, stats = train_rssm_stage(run, latents), latent_stats(latents, run.train_eps)
    else:
        rnn, stats = _train_rnn(run, latents)

    # Held-out metrics and the bundle use CPU copies (float32, and a float16 round trip).
    cpu = torch.device("cpu")
    vae_cpu = ConvVAE(run.vae_config)
    vae_cpu.load_state_dict({k: v.contiguous().to(cpu) for k, v in vae.state_dict().items()})
    rnn_cpu = rnn.to(cpu).eval()
    latents_cpu = LatentEpisodes.from_arrays(
        mu, logvar, d.actions, d.rewards, d.dones, d.lengths, cpu
    )
    metrics = _metrics(run, vae_cpu, rnn_cpu, latents_cpu, stats)
    return _write_bundle(run, vae_cpu, rnn_cpu, latents_cpu, metrics)


# ------------------------------------------------------------------------------------------------
# Before training: OUT, threads, the real env's step limit


def _finished_world(
    ws: Workspace, progress: dict[str, Any] | None, config: TrainConfig
) -> World | None:
    """The bundle in OUT if this very run already wrote it (and it loads, with this memory)."""
    if (
        progress is not None
        and (progress.get("bundle") or {}).get("settings") == bundle_settings(config)
        and (ws.out / CONFIG_FILE).is_file()
    ):
        with contextlib.suppress(Exception):
            world = World.load(ws.out)
            return world if world.memory_kind == config.memory else None
    return None


def default_threads() -> int:
    """torch's default thread count, less the cores other processes keep busy (1-min load).

    OpenMP threads that must share a core with another busy process spin at every barrier: on a
    2-core machine with a load of ~5, V trained 3× slower with 2 threads than with 1
    (benchmarks/vae_training.py).
    """
    n = torch.get_num_threads()
    busy = busy_cores()
    return max(1, min(n, int(round((os.cpu_count() or n) - busy))))


def _real_step_limit(env_id: str, manifest: dict[str, Any]) -> int | None:
    """The real env's own step limit (not the collection's --max-steps) for the dream's truncation."""
    try:
        ensure_registered(env_id)
        limit = DEFAULT_MAX_EPISODE_STEPS.get(env_id) or gym.spec(env_id).max_episode_steps
    except Exception:  # the env's package is not installed here: trust the manifest
        limit = None
    return limit or manifest.get("max_episode_steps") or manifest.get("max_steps")


# ------------------------------------------------------------------------------------------------
# The stages


def _train_vae(run: TrainingRun, vae_from: ConvVAE | None) -> ConvVAE:
    """V, resumed from its last checkpoint and trained for the epochs left (or started from V')."""
    config, frames = run.config, run.data.frames
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        vae = ConvVAE(run.vae_config)
    if vae_from is not None:
        vae.load_state_dict(vae_from.state_dict())
    vae = prepare_vae_for_training(vae, run.device)
    optimizer = make_adam(vae.parameters(), config.vae_lr)
    n_val = min(EPOCH_VAL_FRAMES, len(run.val_frames))
    val_sample = run.val_frames[np.linspace(0, len(run.val_frames) - 1, n_val).astype(int)]

    def train_epoch(epoch: int, bar: Any) -> dict[str, Any]:
        return train_vae_epoch(
            vae,
            optimizer,
            frames,
            run.train_frames,
            config.vae_batch,
            config.seed,
            epoch,
            run.device,
            bar,
            precision=config.vae_precision,
        )

    def validate(record: dict[str, Any]) -> dict[str, str]:
        record["val_recon_mse"] = evaluate_vae(vae, frames, val_sample, run.device)["recon_mse"]
        return {"loss": f"{record['loss']:.1f}", "val_mse": f"{record['val_recon_mse']:.5f}"}

    batches = math.ceil(len(run.train_frames) / config.vae_batch)
    run_epochs(
        run.ws,
        run.progress,
        "vae",
        "V",
        vae,
        optimizer,
        config.vae_epochs,
        batches,
        train_epoch,
        validate,
        config.progress,
        run.on_epoch,
    )
    return vae


def _encode(run: TrainingRun, vae: ConvVAE) -> tuple[np.ndarray, np.ndarray]:
    """(mu, logvar) of every frame: from the cache if this V encoded them, else encoded anew.

    Encoding anew makes M's progress stale: M starts fresh on the new latents.
    """
    ws, progress = run.ws, run.progress
    vae_epochs = progress["vae"]["epochs_done"]
    enc = progress.get("encode")
    if enc and enc.get("vae_epochs") == vae_epochs and ws.latents_path.is_file():
        mu, logvar = ws.load_latents()
        expected = (run.data.frames.shape[0], run.config.latent)
        if mu.shape != expected:
            raise TrainingStateError(
                f"{ws.latents_path} holds latents of shape {tuple(mu.shape)}, expected "
                f"{expected}; delete {ws.dir} to start over"
            )
        return mu, logvar
    start = time.perf_counter()
    mu, logvar = encode_frames(
        vae, run.data.frames, run.device, run.config.progress, precision=run.config.vae_precision
    )
    ws.save_latents(mu, logvar)
    progress.update(
        encode={
            "vae_epochs": vae_epochs,
            "frames": int(mu.shape[0]),
            "seconds": time.perf_counter() - start,
        },
        rnn=None,
        metrics=None,
        bundle=None,
    )
    ws.save_progress(progress)
    ws.prune("rnn", None)
    return mu, logvar


def _new_rnn(run: TrainingRun) -> MDNRNN:
    """M as the run's options say, seeded, its reward and done heads started at the base rates."""
    config, data = run.config, run.data
    train_steps = data.step_indices(run.train_eps)
    rnn_config = MDNRNNConfig(
        latent_dim=config.latent,
        action_dim=run.action_dim,
        hidden_dim=config.hidden,
        n_mixtures=config.mixtures,
        done_pos_weight=run.done_weight(),
        mixture=config.mixture,
        **reward_event_options(data.rewards[train_steps], config.reward_events),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 1)
        rnn = MDNRNN(rnn_config)
    init_rnn_heads(rnn, data.rewards[train_steps], data.dones[train_steps])
    return rnn.to(run.device)


def _train_rnn(run: TrainingRun, latents: LatentEpisodes) -> tuple[MDNRNN, dict[str, Any]]:
    """(M resumed and trained for the epochs left, the training-set latent statistics)."""
    config, train_eps = run.config, run.train_eps
    rnn = _new_rnn(run)
    done_weight = rnn.config.done_pos_weight
    optimizer = make_adam(rnn.parameters(), config.rnn_lr)
    if run.progress.get("rnn") is None:
        run.progress["rnn"] = {
            "vae_epochs": run.progress["vae"]["epochs_done"],
            "epochs_done": 0,
            "checkpoint": None,
            "done_pos_weight": done_weight,
            "history": [],
            "seconds": 0.0,
        }
    stats = latent_stats(latents, train_eps)

    def train_epoch(epoch: int, bar: Any) -> dict[str, Any]:
        return train_rnn_epoch(
            rnn,
            optimizer,
            latents,
            train_eps,
            config.seq_len,
            config.rnn_batch,
            done_weight,
            config.reward_weight,
            config.grad_clip,
            config.seed,
            epoch,
            bar,
            sequences=config.rnn_sequences,
            nll_reduction=config.nll_reduction,
            mask_terminal_z=config.mask_terminal_z,
            lr_schedule=LRSchedule(config.rnn_lr, config.rnn_lr_decay, config.rnn_lr_min),
            **loss_options(config),
        )

    def validate(record: dict[str, Any]) -> dict[str, str]:
        val = evaluate_rnn(rnn, latents, run.val_eps, stats, config.seed, config.mask_terminal_z)
        record["val_nll_per_dim"] = val["nll_per_dim"]
        record["val_reward_mae"] = val["reward_mae"]
        return {"loss": f"{record['loss']:.2f}", "val_nll_dim": f"{val['nll_per_dim']:.3f}"}

    # Windows move (random phase), streams are packed anew each epoch: the bar's count estimates.
    batches = count_rnn_batches(
        latents, train_eps, config.seq_len, config.rnn_batch, config.rnn_sequences
    )
    run_epochs(
        run.ws,
        run.progress,
        "rnn",
        "M",
        rnn,
        optimizer,
        config.rnn_epochs,
        batches,
        train_epoch,
        validate,
        config.progress,
        run.on_epoch,
        invalidates=("metrics", "bundle"),
    )
    return rnn, stats


def _metrics(
    run: TrainingRun,
    vae: ConvVAE,
    rnn: MDNRNN | RSSM,
    latents: LatentEpisodes,
    stats: dict[str, Any],
) -> dict[str, Any]:
    """The held-out metrics (computed once per trained M, then kept in progress.json)."""
    progress = run.progress
    if progress.get("metrics"):
        return progress["metrics"]
    start = time.perf_counter()
    if isinstance(rnn, RSSM):
        metrics = rssm_held_out_metrics(run, vae, rnn, latents, stats)
    else:
        metrics = held_out_metrics(
            vae,
            rnn,
            run.data.frames,
            run.train_frames,
            run.val_frames,
            latents,
            run.val_eps,
            stats,
            run.config.seed,
            run.config.mask_terminal_z,
        )
    metrics["train_final"] = {
        stage: progress[stage]["history"][-1] if progress[stage]["history"] else None
        for stage in ("vae", "rnn")
    }
    metrics["seconds"] = time.perf_counter() - start
    progress["metrics"] = metrics
    run.ws.save_progress(progress)
    return metrics


def _write_bundle(
    run: TrainingRun,
    vae: ConvVAE,
    rnn: MDNRNN | RSSM,
    latents: LatentEpisodes,
    metrics: dict[str, Any],
) -> World:
    """The world bundle in OUT (weights, config with metrics and provenance), its card, reports."""
    config, manifest, out, progress = run.config, run.manifest, run.ws.out, run.progress
    dtype = config.weights_dtype
    if dtype == "auto":
        dtype = "float16" if metrics["float16_check"]["lossless"] else "float32"
    with torch.random.fork_rng(devices=[]):
        world = World.build(
            manifest["env_id"],
            action_space_from_dict(manifest["action_space"]),
            FramePreprocessing.from_dict(manifest["preprocessing"]),
            vae_config=run.vae_config,
            rnn_config=rnn.config,
            max_episode_steps=(
                config.max_steps
                if config.max_steps is not None
                else _real_step_limit(manifest["env_id"], manifest)
            ),
            temperature=config.temperature,
            seed=config.seed,
            name=config.name or out.resolve().name,
        )
    world.vae.load_state_dict(vae.state_dict())
    world.memory_net.load_state_dict(rnn.state_dict())
    first = run.data.frame_start[run.train_eps]
    if len(first) > MAX_INITIAL_LATENTS:
        first = first[np.linspace(0, len(first) - 1, MAX_INITIAL_LATENTS).astype(int)]
    world.initial_mu = latents.mu[torch.from_numpy(first)]
    world.initial_logvar = latents.logvar[torch.from_numpy(first)]
    wall = progress.setdefault("wall_seconds", 0.0) + (time.perf_counter() - run.wall_start)
    world.config["provenance"] = run.provenance(metrics, int(len(first)), wall)
    world.config["metrics"] = {k: v for k, v in metrics.items() if k != "seconds"}
    world.save(out, dtype=dtype)
    atomic_write_bytes(out / MODEL_CARD_FILE, model_card(world.config).encode())
    write_reports(
        world,
        run.data.frames,
        latents,
        run.val_frames,
        run.val_eps,
        config.temperature,
        config.seed,
        out,
    )
    progress["wall_seconds"] = wall
    progress["bundle"] = {"settings": bundle_settings(config), "weights_dtype": dtype}
    run.ws.save_progress(progress)
    return world
