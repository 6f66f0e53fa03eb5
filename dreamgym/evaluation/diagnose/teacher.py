"""M teacher-forced along real episodes: does it predict their return and their end?

Every frame of a real episode is encoded with V (z_t = V's mean), and M, whatever its family,
reads the episode through the memory seam (`dreamgym.models.memory`): from its initial state it
observes z_0, then at every step t it first imagines the step by the recorded a_t (the prior:
the reward and P(done) it predicts before it sees frame t + 1) and then observes the real
z_{t+1} (the posterior), its state carried along the whole episode, as in training. For the
MDN-RNN the prior's reward and done heads read the LSTM's h after (z_t, a_t), whatever z it
draws: the numbers of one pass of its LSTM over the episode. The RSSM's heads read the imagined
state [h', s'], so its prediction is their mean over PRIOR_DRAWS draws of s' from the prior at
τ = 1 (a seeded Monte Carlo estimate of E[P(done)]; the prior's mean state alone seldom looks
like a death, as a dream's draws do: it predicted 0.7 of 50 real deaths on TakeCover).
Per episode, the predicted return is the sum of M's reward head and the predicted termination
count the sum of its done probability (the done head's training weight undone, as the dream
does), to compare with the real return and the real count (0 or 1). Both totals get the
suite's check (the count with ±TERMINATION_SLACK in place of the absolute tolerance). Per step,
the done probabilities against the real terminations give an AUC. In TakeCover the reward is
+1 per step, so the return check is easy; the termination count is the informative one there.

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
from dreamgym.models.memory import Memory, memory_of
from dreamgym.preprocessing import FramePreprocessing
from dreamgym.spaces import encode_actions_np
from dreamgym.world import World

if TYPE_CHECKING:
    from dreamgym.evaluation.diagnose.config import DiagnoseConfig

TEACHER_SEED_OFFSET = 1_000_000
"""Fresh teacher-forcing episodes reset the env with seeds TEACHER_SEED_OFFSET + seed + i."""
ENCODE_BATCH = 256
"""Frames V encodes at once."""
TEACHER_BATCH = 64
"""Real episodes M reads side by side, each row padded to the batch's longest episode."""
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
    reward: np.ndarray  # (T,) M's reward head, the prior's before each frame
    p_done: np.ndarray  # (T,) M's done probability (training weight undone)


def encode_frames(world: World, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """V's (mu, logvar) of every frame (N, Z), float32 on the world's device, in batches."""
    mus, logvars = [], []
    for i in range(0, len(frames), ENCODE_BATCH):
        chunk = torch.as_tensor(frames[i : i + ENCODE_BATCH], device=world.device)
        mu, logvar = world.vae.encode(chunk)
        mus.append(mu.float())
        logvars.append(logvar.float())
    return torch.cat(mus), torch.cat(logvars)


PRIOR_DRAWS = 32
"""Draws of the prior whose heads' mean is a memory's prediction when they read the draw (RSSM)."""


def forced_predictions(
    memory: Memory, z: list[torch.Tensor], actions: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """M's reward and P(done) (B, T_max) along B episodes read side by side (see the module
    docstring); episode b gives z[b] (T_b + 1, Z) and actions[b] (T_b, A), and its row is
    padded with zeros past T_b (rows never mix, so the padding changes nothing before it)."""
    b, steps = len(z), max(len(a) for a in actions)
    device = z[0].device
    z_pad = torch.zeros(b, steps + 1, memory.latent_dim, device=device)
    a_pad = torch.zeros(b, steps, memory.action_dim, device=device)
    for i, (zi, ai) in enumerate(zip(z, actions, strict=True)):
        z_pad[i, : len(zi)] = zi
        a_pad[i, : len(ai)] = ai
    reward = torch.zeros(b, steps, device=device)
    p_done = torch.zeros(b, steps, device=device)
    no_action = torch.zeros(b, memory.action_dim, device=device)
    state = memory.observe(memory.initial_state(b, device), z_pad[:, 0], no_action)
    draws = 1 if memory.kind == "mdnrnn" else PRIOR_DRAWS
    generator = torch.Generator(device=device).manual_seed(0)
    for t in range(steps):
        for _ in range(draws):
            prior = memory.imagine(state, a_pad[:, t], 1.0 if draws > 1 else 0.0, generator)
            reward[:, t] += prior.reward / draws
            p_done[:, t] += prior.done_probability / draws
        if t + 1 < steps:
            state = memory.observe(state, z_pad[:, t + 1], a_pad[:, t])
    return reward, p_done


@torch.inference_mode()
def teacher_force_episodes(
    world: World, episodes: list[RealEpisode], progress: bool = False
) -> list[ForcedEpisode]:
    """V encodes every frame; M (`memory_of(world)`) reads each episode from its initial state,
    TEACHER_BATCH episodes of similar lengths side by side (one memory step per frame for the
    whole batch); the results in the episodes' order."""
    memory = memory_of(world)
    forced: dict[int, ForcedEpisode] = {}
    bar = tqdm(total=len(episodes), desc="teacher forcing", unit="ep", disable=not progress)
    order = sorted(range(len(episodes)), key=lambda i: len(episodes[i].actions))  # less padding
    for i in range(0, len(order), TEACHER_BATCH):
        rows = order[i : i + TEACHER_BATCH]
        chunk = [episodes[j] for j in rows]
        encoded = [encode_frames(world, ep.frames) for ep in chunk]
        actions = [
            encode_actions_np(ep.actions, world.action_space).astype(np.float32) for ep in chunk
        ]
        a = [torch.as_tensor(x, device=world.device) for x in actions]
        reward, p_done = forced_predictions(memory, [mu for mu, _ in encoded], a)
        reward, p_done = reward.float().cpu().numpy(), p_done.float().cpu().numpy()
        for k, ((mu, logvar), x) in enumerate(zip(encoded, actions, strict=True)):
            steps = len(x)
            forced[rows[k]] = ForcedEpisode(
                mu.cpu().numpy(),
                logvar.cpu().numpy(),
                x,
                reward[k, :steps].copy(),
                p_done[k, :steps].copy(),
            )
        bar.update(len(chunk))
    bar.close()
    return [forced[i] for i in range(len(episodes))]


def teacher_force_episode(world: World, episode: RealEpisode) -> ForcedEpisode:
    """One episode through `teacher_force_episodes`."""
    return teacher_force_episodes(world, [episode])[0]


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
    forced = teacher_force_episodes(forcing, episodes, progress)
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
