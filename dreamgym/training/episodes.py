"""The dataset in memory: which episodes of which `--data` folders, read and verified once.

Frames stay one uint8 array (12 KB a frame); a batch becomes float only when it is formed, so
500k frames need ~6 GB and no float copy of the dataset. Every shard is checked before anything
is trained.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from dreamgym.data import (
    CorruptShardError,
    DatasetMismatchError,
    DatasetReport,
    load_episode,
    load_manifest,
)
from dreamgym.spaces import action_input_dim, action_space_from_dict, encode_actions_np
from dreamgym.training.config import SEED_SPLIT

# What must agree between datasets trained on together (their policy, seed and limits may differ).
SHARED_MANIFEST_KEYS = ("env_id", "preprocessing", "action_space", "frame_shape")


def episode_starts(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first step, first frame) of each episode when episodes of `lengths` steps are concatenated."""
    step_start = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return step_start, step_start + np.arange(len(lengths), dtype=np.int64)


@dataclass
class EpisodeData:
    """Selected episodes, concatenated: frames stay uint8, per-step arrays are M's inputs.

    Episode e owns frames `frame_start[e] : frame_start[e] + lengths[e] + 1` and steps
    `step_start[e] : step_start[e] + lengths[e]`.
    """

    entries: list[dict[str, Any]]
    lengths: np.ndarray  # (E,) int64 steps per episode
    frames: np.ndarray  # (F, 64, 64, 3) uint8, F = sum(lengths + 1)
    actions: np.ndarray  # (S, A) float32, encoded for M (one-hot for Discrete)
    rewards: np.ndarray  # (S,) float32
    dones: np.ndarray  # (S,) bool: terminated (truncation is not death)

    def __post_init__(self) -> None:
        self.step_start, self.frame_start = episode_starts(self.lengths)

    def frame_indices(self, episodes: np.ndarray) -> np.ndarray:
        """Global frame indices of the given episodes (all their frames)."""
        fs = self.frame_start
        return np.concatenate(
            [np.arange(fs[e], fs[e] + self.lengths[e] + 1) for e in episodes]
        ).astype(np.int64)

    def step_indices(self, episodes: np.ndarray) -> np.ndarray:
        ss = self.step_start
        return np.concatenate([np.arange(ss[e], ss[e] + self.lengths[e]) for e in episodes]).astype(
            np.int64
        )


def select_episodes(
    manifest: dict[str, Any], max_frames: int | None
) -> list[tuple[dict[str, Any], int]]:
    """(manifest entry, steps used) in index order, cut to `max_frames` frames in total."""
    selected = []
    budget = max_frames if max_frames is not None else math.inf
    for entry in sorted(manifest["episodes"], key=lambda e: e["index"]):
        steps = int(entry["steps"])
        if steps < 1 or budget < 2:
            continue
        steps = int(min(steps, budget - 1))
        selected.append((entry, steps))
        budget -= steps + 1
    return selected


def data_dirs(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """`--data` as a list of dataset directories (one or several), without duplicates."""
    dirs = [str(data)] if isinstance(data, (str, os.PathLike)) else [str(d) for d in data]
    if not dirs:
        raise ValueError("--data needs at least one dataset directory")
    seen = [str(Path(d).resolve()) for d in dirs]
    if len(set(seen)) != len(seen):
        raise ValueError(f"--data lists a dataset twice ({' '.join(dirs)}); give each once")
    return dirs


def load_manifests(dirs: list[str]) -> list[dict[str, Any]]:
    """Each dataset's manifest; DatasetMismatchError if they do not record the same env."""
    manifests = [load_manifest(d) for d in dirs]
    for d, m in zip(dirs[1:], manifests[1:], strict=True):
        for key in SHARED_MANIFEST_KEYS:
            if m.get(key) != manifests[0].get(key):
                raise DatasetMismatchError(
                    f"--data {d} was collected with {key}={m.get(key)!r}, but {dirs[0]} with "
                    f"{manifests[0].get(key)!r}; a world is trained on datasets of one env and "
                    "one preprocessing — collect the new rollouts with the same --env"
                )
    return manifests


def select_from_datasets(
    dirs: list[str], manifests: list[dict[str, Any]], max_frames: int | None
) -> list[tuple[dict[str, Any], int]]:
    """`select_episodes` over several datasets in order; each entry records its `data_dir`."""
    selected: list[tuple[dict[str, Any], int]] = []
    budget = max_frames
    for d, manifest in zip(dirs, manifests, strict=True):
        if budget is not None and budget < 2:
            break
        part = select_episodes(manifest, budget)
        selected += [({**entry, "data_dir": d}, steps) for entry, steps in part]
        if budget is not None:
            budget -= sum(steps + 1 for _, steps in part)
    return selected


def split_episodes(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) episode positions: a seeded random `val_fraction` of the episodes is held out."""
    n_val = max(1, int(round(n * val_fraction)))
    perm = np.random.default_rng([seed, SEED_SPLIT]).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def load_episodes(
    data_dir: str | os.PathLike[str],
    manifest: dict[str, Any],
    selected: list[tuple[dict[str, Any], int]],
    progress: bool = True,
) -> EpisodeData:
    """Read and verify every selected shard (sha256, shapes) into one uint8 frame array.

    Every shard is checked before anything is trained; all bad ones are listed in one
    CorruptShardError (naming each file and the fix), none is used.
    """
    space = action_space_from_dict(manifest["action_space"])
    lengths = np.array([s for _, s in selected], dtype=np.int64)
    n_frames, n_steps = int((lengths + 1).sum()), int(lengths.sum())
    frame_shape = tuple(manifest["frame_shape"])
    frames = np.empty((n_frames, *frame_shape), dtype=np.uint8)
    actions = np.empty((n_steps, action_input_dim(space)), dtype=np.float32)
    rewards = np.empty(n_steps, dtype=np.float32)
    dones = np.empty(n_steps, dtype=bool)
    problems: list[str] = []
    f0 = s0 = 0
    bar = tqdm(selected, desc="load data", unit="ep", disable=not progress, dynamic_ncols=True)
    for entry, steps in bar:
        try:
            arrays = load_episode(
                entry.get("data_dir", data_dir), entry, verify=True, manifest=manifest
            )
        except CorruptShardError as e:
            problems.append(str(e))
        else:
            frames[f0 : f0 + steps + 1] = arrays["frames"][: steps + 1]
            actions[s0 : s0 + steps] = encode_actions_np(arrays["actions"][:steps], space)
            rewards[s0 : s0 + steps] = arrays["rewards"][:steps]
            dones[s0 : s0 + steps] = arrays["terminated"][:steps]
        f0 += steps + 1
        s0 += steps
    if problems:
        DatasetReport(
            data_dir=str(data_dir),
            env_id=manifest["env_id"],
            episodes=len(selected),
            steps=n_steps,
            frames=n_frames,
            mean_return=float("nan"),
            problems=problems,
        ).raise_if_problems()
    return EpisodeData([e for e, _ in selected], lengths, frames, actions, rewards, dones)


def select_training_data(
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], max_frames: int | None
) -> tuple[list[str], list[dict[str, Any]], list[tuple[dict[str, Any], int]]]:
    """(dataset dirs, their manifests, the selected (entry, steps)); at least 2 episodes."""
    dirs = data_dirs(data)
    manifests = load_manifests(dirs)
    selected = select_from_datasets(dirs, manifests, max_frames)
    if len(selected) < 2:
        cut = f" (cut to {max_frames} frames by --max-frames)" if max_frames else ""
        raise ValueError(
            f"dataset {' '.join(dirs)} has {len(selected)} usable episode(s){cut}: too few to "
            "train on some and hold out others (--val-fraction); collect at least 2, e.g. "
            f"dreamgym collect --env {manifests[0]['env_id']} --episodes 10 --out {dirs[0]}"
        )
    return dirs, manifests, selected


def split_train_val(
    n_eps: int, val_fraction: float, seed: int, data_dir: str
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) episode positions; ValueError if no training episode is left."""
    train_eps, val_eps = split_episodes(n_eps, val_fraction, seed)
    if len(train_eps) < 1:
        raise ValueError(
            f"--val-fraction {val_fraction} leaves no training episode out of {n_eps}; "
            f"lower it or collect more (dreamgym collect --episodes N --out {data_dir})"
        )
    return train_eps, val_eps
