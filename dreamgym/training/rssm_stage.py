"""`dreamgym train --memory rssm`: M's stage when M is an RSSM, and the RSSM's held-out metrics.

The stage is M's (`pipeline._train_rnn`) with another network: the same progress entry (`"rnn"`),
a checkpoint per epoch through `run_epochs` (a resumed run loses at most the epoch in flight and
draws the same batches), the done weight chosen as M's (`--done-weight`, 0: `auto_done_weight`)
and the reward and done heads started at the base rates (`make_rssm`). Its loss and batches are
`training/rssm.py`'s: whole episodes in `--seq-len` chunks, the state carried, KL balancing and
free nats, optional latent overshooting (Hafner et al. 2019, 2021, 2023).

Held-out metrics suit an RSSM: its posterior has seen the frame it decodes, so its z NLL is not
the MDN-RNN's one-step NLL and the two must not be put side by side. They are the validation
loss's parts (`evaluate_rssm`), the reward error and done metrics of the heads along whole
held-out episodes (teacher-forced, as M's), and the measure both families share: the k-step
open-loop z RMSE (`openloop_error`, k = 1, 10, 50) beside the copy-last-z baseline.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from dreamgym.models.rssm import RSSM, RSSMConfig
from dreamgym.models.vae import ConvVAE
from dreamgym.training.config import TrainConfig
from dreamgym.training.context import TrainingRun
from dreamgym.training.epochs import run_epochs
from dreamgym.training.mdn import LatentEpisodes, count_rnn_batches
from dreamgym.training.metrics import (
    FLOAT16_TOLERANCE,
    done_metrics,
    eval_generator,
    held_out_batches,
    relative_change,
    roundtrip_float16,
    vae_held_out,
)
from dreamgym.training.openloop import OPENLOOP_HORIZONS, OpenLoopConfig, openloop_error
from dreamgym.training.rssm import (
    RSSMTrainConfig,
    evaluate_rssm,
    make_rssm,
    means_only,
    train_rssm_epoch,
)
from dreamgym.training.vae import make_adam

OPENLOOP_CONTEXT = 50
"""Real frames the RSSM observes before its open-loop rollout (fewer when episodes are short)."""


def rssm_model_config(run: TrainingRun) -> RSSMConfig:
    """The RSSM's sizes from the run's options; its done weight chosen as M's."""
    config = run.config
    return RSSMConfig(
        latent_dim=config.latent,
        action_dim=run.action_dim,
        deter_dim=config.hidden,
        hidden_dim=config.mlp_units or config.hidden,
        stoch=config.stoch,
        stoch_dim=config.stoch_dim,
        groups=config.groups,
        classes=config.classes,
        done_pos_weight=run.done_weight(),
    )


def rssm_train_config(config: TrainConfig) -> RSSMTrainConfig:
    """How the RSSM learns, from the options it shares with M and its own."""
    return RSSMTrainConfig(
        epochs=config.rnn_epochs,
        batch=config.rnn_batch,
        seq_len=int(config.seq_len or 1),
        lr=config.rnn_lr,
        grad_clip=config.grad_clip,
        kl_balance=config.kl_balance,
        free_nats=config.free_nats,
        reward_weight=config.reward_weight,
        overshooting=config.overshooting,
        z_means=config.z_means,
        mask_terminal_z=bool(config.mask_terminal_z),
        seed=config.seed,
        progress=config.progress,
    )


def train_rssm_stage(run: TrainingRun, latents: LatentEpisodes) -> RSSM:
    """The RSSM resumed from its last checkpoint and trained for the epochs left."""
    config, progress = run.config, run.progress
    train = rssm_train_config(config)
    model = make_rssm(rssm_model_config(run), latents, run.train_eps, seed=config.seed + 1)
    optimizer = make_adam(model.parameters(), config.rnn_lr)
    if progress.get("rnn") is None:
        progress["rnn"] = {
            "vae_epochs": progress["vae"]["epochs_done"],
            "epochs_done": 0,
            "checkpoint": None,
            "done_pos_weight": model.config.done_pos_weight,
            "history": [],
            "seconds": 0.0,
        }

    def train_epoch(epoch: int, bar: Any) -> dict[str, Any]:
        record = train_rssm_epoch(model, optimizer, latents, run.train_eps, train, epoch, bar)
        if not math.isfinite(record["loss"]):
            raise FloatingPointError(
                f"RSSM epoch {epoch + 1}: the loss is {record['loss']}; lower --rnn-lr or "
                "--grad-clip, or delete OUT/.train to start over"
            )
        return record

    def validate(record: dict[str, Any]) -> dict[str, str]:
        val = evaluate_rssm(model, latents, run.val_eps, train)
        record.update({f"val_{k}": v for k, v in val.items()})
        return {"loss": f"{record['loss']:.2f}", "val_nll": f"{val['nll']:.2f}"}

    batches = count_rnn_batches(
        latents, run.train_eps, train.seq_len, train.batch, sequences="episodes"
    )
    run_epochs(
        run.ws,
        progress,
        "rnn",
        "M (RSSM)",
        model,
        optimizer,
        config.rnn_epochs,
        batches,
        train_epoch,
        validate,
        config.progress,
        run.on_epoch,
        invalidates=("metrics", "bundle"),
    )
    return model


@torch.inference_mode()
def evaluate_rssm_heads(
    model: RSSM,
    data: LatentEpisodes,
    episodes: np.ndarray,
    stats: dict[str, Any],
    train: RSSMTrainConfig,
) -> dict[str, Any]:
    """The reward and done heads along whole held-out episodes, the posterior tracking the
    frames from the first (as a real-env tracker does): reward MAE beside the training mean's,
    done metrics at the dream's probability (training weight undone)."""
    model.eval()
    data = means_only(data) if train.z_means else data
    gen = eval_generator(data, train.seed)
    r_true, r_pred, d_true, p_done = [], [], [], []
    for z_in, actions, z_tgt, rewards, dones, mask in held_out_batches(data, episodes, gen):
        resets = torch.zeros_like(mask)
        resets[:, 0] = True
        post = model.observe_sequence(None, z_in, z_tgt, actions, resets, gen)
        heads = model.heads(torch.cat([post.h, post.s], dim=-1))
        m = mask.cpu().numpy()
        r_true.append(rewards.cpu().double().numpy()[m])
        r_pred.append(heads.reward.cpu().double().numpy()[m])
        d_true.append(dones.cpu().numpy()[m] > 0.5)
        p_done.append(model.done_probability(heads.done_logit).cpu().double().numpy()[m])
    r_t, r_p = np.concatenate(r_true), np.concatenate(r_pred)
    return {
        "steps": int(r_t.size),
        "reward_mae": float(np.abs(r_p - r_t).mean()),
        "reward_mae_baseline_mean": float(np.abs(stats["reward_mean"] - r_t).mean()),
        "done": done_metrics(np.concatenate(p_done), np.concatenate(d_true)),
    }


def openloop_metrics(model: RSSM, data: LatentEpisodes, episodes: np.ndarray) -> dict[str, Any]:
    """The open-loop z RMSE at k = 1, 10, 50 (None where no held-out episode is long enough for
    the context and k) beside copy-last-z's; the context shrinks to half the longest episode."""
    longest = int(data.lengths[episodes].max()) if len(episodes) else 0
    context = min(OPENLOOP_CONTEXT, max(1, longest // 2))
    horizons = tuple(k for k in OPENLOOP_HORIZONS if context + k <= longest)
    out: dict[str, Any] = {"context": context, "windows": 0}
    rmse: dict[int, float] = {}
    copy: dict[int, float] = {}
    if horizons:
        report = openloop_error(
            model, data, episodes, OpenLoopConfig(horizons=horizons, context=context)
        )
        out["windows"], rmse, copy = report.windows, report.rmse, report.copy_last
    out["rmse"] = {str(k): rmse.get(k) for k in OPENLOOP_HORIZONS}
    out["copy_last"] = {str(k): copy.get(k) for k in OPENLOOP_HORIZONS}
    return out


def evaluate_rssm_held_out(
    model: RSSM,
    data: LatentEpisodes,
    episodes: np.ndarray,
    stats: dict[str, Any],
    train: RSSMTrainConfig,
) -> dict[str, Any]:
    """Every held-out measure of the RSSM (module docstring) in one record."""
    loss = evaluate_rssm(model, data, episodes, train)
    heads = evaluate_rssm_heads(model, data, episodes, stats, train)
    return {
        **heads,
        "nll_per_dim": loss["nll"] / data.mu.shape[1],
        "kl": loss["kl"],
        "loss": loss,
        "openloop": openloop_metrics(model, data, episodes),
    }


def _first_rmse(m: dict[str, Any]) -> float | None:
    return next((v for v in m["openloop"]["rmse"].values() if v is not None), None)


def rssm_held_out_metrics(
    run: TrainingRun,
    vae: ConvVAE,
    model: RSSM,
    latents: LatentEpisodes,
    stats: dict[str, Any],
) -> dict[str, Any]:
    """V's and the RSSM's held-out metrics on the CPU, and the float16 check `--weights-dtype
    auto` decides by (no metric moves by more than FLOAT16_TOLERANCE, relative)."""
    train = rssm_train_config(run.config)
    vm, vm16 = vae_held_out(vae, run.data.frames, run.train_frames, run.val_frames)
    rm = evaluate_rssm_held_out(model, latents, run.val_eps, stats, train)
    rm16 = evaluate_rssm_held_out(roundtrip_float16(model), latents, run.val_eps, stats, train)
    changes = {
        "vae_recon_mse": relative_change(vm["recon_mse"], vm16["recon_mse"]),
        "rssm_nll_per_dim": relative_change(rm["nll_per_dim"], rm16["nll_per_dim"]),
        "reward_mae": relative_change(rm["reward_mae"], rm16["reward_mae"]),
        "done_f1": relative_change(rm["done"]["f1"], rm16["done"]["f1"]),
        "openloop_rmse": relative_change(_first_rmse(rm), _first_rmse(rm16)),
    }
    return {
        "vae": vm,
        "rssm": rm,
        "float16_check": {
            "vae_recon_mse": vm16["recon_mse"],
            "rssm_nll_per_dim": rm16["nll_per_dim"],
            "reward_mae": rm16["reward_mae"],
            "done_f1": rm16["done"]["f1"],
            "relative_change": changes,
            "lossless": max(changes.values()) <= FLOAT16_TOLERANCE,
        },
    }
