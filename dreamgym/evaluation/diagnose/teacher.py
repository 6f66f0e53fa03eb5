"""M teacher-forced along real episodes: does it predict their return and their end?

Every frame of a real episode is encoded with V (z_t = V's mean), and M reads the recorded
(z_t, a_t) from h = 0 at the episode start, its state carried along the whole episode, as in
training. Per episode, the predicted return is the sum of M's reward head and the predicted
termination count the sum of its done probability (the done head's training weight undone, as
the dream does: `MDNRNN.done_probability`), to compare with the real return and the real count
(0 or 1). Both totals get the suite's check (the count with ±TERMINATION_SLACK in place of
the absolute tolerance). Per step, the done probabilities against the real terminations give an
AUC. In TakeCover the reward is +1 per step, so the return check is easy; the termination count
is the informative one there.

Episodes are the held-out ones of `--data` datasets (the world's recorded `val_indices`), or
fresh real episodes of the exploration policy the datasets are collected with (`collect`'s
"random"), on seeds from TEACHER_SEED_OFFSET + seed on, which collections never use by default.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from dreamgym.data import collect, load_episode, load_manifest
from dreamgym.envs.dream import resolve_device
from dreamgym.evaluation.diagnose.suite import fidelity_check
from dreamgym.evaluation.stats import summarize
from dreamgym.preprocessing import FramePreprocessing
from dreamgym.spaces import encode_actions_np
from dreamgym.world import World

if TYPE_CHECKING:
    from dreamgym.evaluation.diagnose.config import DiagnoseConfig

TEACHER_SEED_OFFSET = 1_000_000
"""Fresh teacher-forcing episodes reset the env with seeds TEACHER_SEED_OFFSET + seed + i."""
ENCODE_BATCH = 256
TERMINATION_SLACK = 1.0
"""The predicted termination count is OK within ±rel_tol of the real count or ±1 termination."""


@dataclass
class RealEpisode:
    """One recorded real episode: T steps, T + 1 preprocessed frames."""

    frames: np.ndarray  # (T + 1, 64, 64, 3) uint8
    actions: np.ndarray  # (T,) int64 or (T, A) float32, as the env took them
    rewards: np.ndarray  # (T,) float32
    terminated: np.ndarray  # (T,) bool
    source: dict[str, Any] = field(default_factory=dict)


@dataclass
class ForcedEpisode:
    """M's predictions along one real episode (all numpy, CPU)."""

    mu: np.ndarray  # (T + 1, Z) V's means
    logvar: np.ndarray  # (T + 1, Z)
    actions: np.ndarray  # (T, A) M's action input
    reward: np.ndarray  # (T,) M's reward head
    p_done: np.ndarray  # (T,) M's done probability (training weight undone)


@torch.inference_mode()
def teacher_force_episode(world: World, episode: RealEpisode) -> ForcedEpisode:
    """V encodes every frame; M reads (z_t, a_t), t < T, from h = 0 with its state carried."""
    device = world.device
    mus, logvars = [], []
    for i in range(0, len(episode.frames), ENCODE_BATCH):
        chunk = torch.as_tensor(episode.frames[i : i + ENCODE_BATCH], device=device)
        mu, logvar = world.vae.encode(chunk)
        mus.append(mu.float())
        logvars.append(logvar.float())
    mu, logvar = torch.cat(mus), torch.cat(logvars)
    actions = encode_actions_np(episode.actions, world.action_space).astype(np.float32)
    a = torch.as_tensor(actions, device=device)
    out, _ = world.mdnrnn(mu[None, :-1], a[None])
    p_done = world.mdnrnn.done_probability(out.done_logit[0])
    return ForcedEpisode(
        mu.cpu().numpy(),
        logvar.cpu().numpy(),
        actions,
        out.reward[0].float().cpu().numpy(),
        p_done.float().cpu().numpy(),
    )


def done_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC of per-step done probabilities (Mann-Whitney, ties averaged); None without
    both classes."""
    s = np.asarray(scores, np.float64).reshape(-1)
    y = np.asarray(labels, bool).reshape(-1)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return None
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    ranks = (upper - (counts - 1) / 2.0)[inverse]
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def teacher_report(
    world: World,
    episodes: list[RealEpisode],
    forced: list[ForcedEpisode],
    source: dict[str, Any],
    config: Any,
) -> dict[str, Any]:
    """Per-episode and summary comparison of M's predictions with the real episodes."""
    rows = []
    for ep, f in zip(episodes, forced, strict=True):
        rows.append(
            {
                **ep.source,
                "steps": len(ep.rewards),
                "real_return": float(ep.rewards.sum()),
                "predicted_return": float(f.reward.astype(np.float64).sum()),
                "real_terminated": int(ep.terminated.any()),
                "predicted_terminations": float(f.p_done.astype(np.float64).sum()),
            }
        )
    real_ends = int(sum(r["real_terminated"] for r in rows))
    predicted_ends = float(sum(r["predicted_terminations"] for r in rows))
    real = np.array([r["real_return"] for r in rows])
    pred = np.array([r["predicted_return"] for r in rows])
    err = pred - real
    all_rewards = np.concatenate([e.rewards for e in episodes]).astype(np.float64)
    all_pred = np.concatenate([f.reward for f in forced]).astype(np.float64)
    p_done = np.concatenate([f.p_done for f in forced])
    dones = np.concatenate([e.terminated for e in episodes])
    return {
        "source": source,
        "episodes": len(rows),
        "steps": int(all_rewards.size),
        "z": "V's mean of every real frame",
        "real_return": summarize(real, config.seed + 2, config.resamples),
        "predicted_return": summarize(pred, config.seed + 3, config.resamples),
        "return_error": {
            "mean": float(err.mean()),
            "mean_abs": float(np.abs(err).mean()),
            "mean_abs_relative": float((np.abs(err) / np.maximum(np.abs(real), 1.0)).mean()),
        },
        "return_check": fidelity_check(pred.mean(), real.mean(), config.rel_tol, config.abs_tol),
        "reward_mse_per_step": float(((all_pred - all_rewards) ** 2).mean()),
        "terminations": {
            "real": real_ends,
            "predicted": predicted_ends,
            "check": fidelity_check(predicted_ends, real_ends, config.rel_tol, TERMINATION_SLACK),
        },
        "done_auc": done_auc(p_done, dones),
        "per_episode": rows,
    }


def run_teacher(
    world: World, config: DiagnoseConfig, progress: bool
) -> tuple[dict[str, Any], list[RealEpisode], list[ForcedEpisode]]:
    """Teacher-force M along real episodes: the report, the episodes, M's predictions."""
    n = int(config.teacher_episodes or config.episodes)
    if config.data:
        episodes, source = held_out_episodes(world, list(config.data), n, progress)
    else:
        episodes, source = fresh_episodes(world, n, config, progress)
    device = resolve_device(config.device)
    forcing = world if world.device == device else world.copy_to(device)
    forced = [
        teacher_force_episode(forcing, ep)
        for ep in tqdm(episodes, desc="teacher forcing", unit="ep", disable=not progress)
    ]
    return teacher_report(world, episodes, forced, source, config), episodes, forced


def fresh_episodes(
    world: World, n: int, config: DiagnoseConfig, progress: bool
) -> tuple[list[RealEpisode], dict[str, Any]]:
    """`n` new real episodes of the exploration policy, collected (in workers) to a temp dir."""
    seed = TEACHER_SEED_OFFSET + int(config.seed)
    with tempfile.TemporaryDirectory(prefix="dreamgym-diagnose-") as tmp:
        collect(
            world.env_id,
            n,
            tmp,
            workers=config.workers,
            policy="random",
            max_steps=config.max_steps,
            seed=seed,
            progress=progress,
            ray_address=config.ray,
        )
        manifest = load_manifest(tmp)
        _check_dataset(world, manifest, "the fresh episodes")
        entries = sorted(manifest["episodes"], key=lambda e: e["index"])
        episodes = [_episode(tmp, e, manifest, {"index": e["index"]}) for e in entries]
    source = {
        "kind": "fresh",
        "policy": manifest.get("policy"),
        "seeds": [seed, seed + n - 1],
        "max_steps": config.max_steps,
    }
    return episodes, source


def _check_dataset(world: World, manifest: dict[str, Any], what: str) -> None:
    """The episodes must be of the world's env, preprocessed as its V expects."""
    if manifest.get("env_id") != world.env_id:
        raise ValueError(
            f"{what} hold {manifest.get('env_id')} episodes but world {world.name!r} models "
            f"{world.env_id}; pass a dataset of {world.env_id}"
        )
    theirs = FramePreprocessing.from_dict(manifest.get("preprocessing") or {})
    if theirs != world.preprocessing:
        raise ValueError(
            f"{what} were preprocessed with {theirs}, but world {world.name!r} expects "
            f"{world.preprocessing}; pass --data with episodes preprocessed as the world's"
        )


def _episode(
    data_dir: str, entry: dict[str, Any], manifest: dict[str, Any], source: dict[str, Any]
) -> RealEpisode:
    arrays = load_episode(data_dir, entry, verify=True, manifest=manifest)
    return RealEpisode(
        arrays["frames"],
        arrays["actions"],
        arrays["rewards"],
        arrays["terminated"],
        {**source, "seed": int(arrays["seed"])},
    )


def held_out_episodes(
    world: World, dirs: list[str], n: int, progress: bool
) -> tuple[list[RealEpisode], dict[str, Any]]:
    """Up to `n` episodes of `dirs` that the world did not train on, in dataset and index order.

    A dataset the world records having trained on contributes its recorded `val_indices`; one it
    does not record contributes all its episodes; where the world records no split, all
    episodes are used and the source says so.
    """
    chosen: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    selection = {}
    for d in dirs:
        manifest = load_manifest(d)
        _check_dataset(world, manifest, f"--data {d}")
        keep, why = _held_out_indices(world, d)
        selection[d] = why
        for e in sorted(manifest["episodes"], key=lambda e: e["index"]):
            if keep is None or int(e["index"]) in keep:
                chosen.append((d, e, manifest))
    if not chosen:
        raise ValueError(
            f"--data {' '.join(dirs)} has no held-out episode of world {world.name!r}; pass a "
            "dataset it did not train on, or drop --data to run fresh real episodes"
        )
    chosen = chosen[:n]
    bar = tqdm(chosen, desc="read episodes", unit="ep", disable=not progress)
    episodes = [_episode(d, e, m, {"dataset": d, "index": int(e["index"])}) for d, e, m in bar]
    return episodes, {"kind": "data", "selection": selection}


def _held_out_indices(world: World, data_dir: str) -> tuple[set[int] | None, str]:
    """(episode indices of `data_dir` held out from the world's training or None for all, why)."""
    prov = world.config.get("provenance") or {}
    trained = prov.get("data") or []
    trained = [trained] if isinstance(trained, str) else list(trained)
    resolved = [str(Path(t).resolve()) for t in trained]
    here = str(Path(data_dir).resolve())
    if here not in resolved:
        return None, "all episodes (not in the world's recorded training data)"
    val = (prov.get("episodes") or {}).get("val_indices")
    if val is None:
        return None, "all episodes (the world records no validation split: NOT held out)"
    pos = resolved.index(here)
    keep = set()
    for v in val:
        if isinstance(v, int):
            keep.add(int(v))
        elif int(v[0]) == pos:
            keep.add(int(v[1]))
    return keep, "the world's val_indices"
