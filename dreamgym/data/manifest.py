"""The dataset manifest: what was collected and how, one entry per finished episode; reading back.

`DATA/manifest.json` holds the collection's header (env, preprocessing, action space, policy,
seed, step limits) and one line per finished episode with its shard's sha256. Reading
(`load_manifest`, `load_episode`, `iter_episodes`, `scan_dataset`) checks checksums and shapes and
names the shard and the fix when something is wrong.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreamgym.data.shards import SHARD_RE, CorruptShardError, fix_hint, read_shard
from dreamgym.utils.files import atomic_write_bytes
from dreamgym.utils.validate import (
    InvalidValueError,
    check_float,
    check_int,
    check_mapping,
    check_str,
)
from dreamgym.utils.versioned_json import read_versioned_json
from dreamgym.world_config import check_action_space_dict, check_preprocessing_dict

SCHEMA_VERSION = 1
"""Version of the dataset layout written by `collect`; readers refuse other versions."""
MANIFEST_NAME = "manifest.json"

# Header fields a resumed collection must share with the dataset, and the option that sets each.
SAME_OPTIONS = {
    "env_id": "--env",
    "preprocessing": "the frame preprocessing (dreamgym version)",
    "action_space": "--env (action space)",
    "frame_shape": "the frame size (dreamgym version)",
    "policy": "--policy",
    "seed": "--seed",
    "max_steps": "--max-steps",
}


class DatasetMismatchError(ValueError):
    """`collect` was asked to add episodes to a dataset collected with other settings."""


@dataclass
class DatasetReport:
    """Result of `scan_dataset`: totals and every problem found."""

    data_dir: str
    env_id: str
    episodes: int
    """Episodes listed in the manifest."""
    steps: int
    """Env steps over the valid episodes."""
    frames: int
    """Frames over the valid episodes (steps + 1 per episode)."""
    mean_return: float
    problems: list[str] = field(default_factory=list)
    """One message per bad shard, naming the file and the fix."""
    unlisted: list[str] = field(default_factory=list)
    """Shards on disk the manifest does not list (adopted by the next `collect` run)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_problems(self) -> None:
        """Raise CorruptShardError listing every problem (train calls this before starting)."""
        if self.problems:
            head = "\n  ".join(self.problems[:10])
            more = f"\n  … and {len(self.problems) - 10} more" if len(self.problems) > 10 else ""
            raise CorruptShardError(
                f"dataset {self.data_dir} has {len(self.problems)} bad shard(s):\n  {head}{more}"
            )


def load_manifest(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The dataset's manifest; a clear error if `data_dir` is not a dreamgym dataset."""
    path = Path(data_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{data_dir} is not a dreamgym dataset (no {MANIFEST_NAME}): run dreamgym collect "
            "first, e.g. dreamgym collect --env CarRacing-v3 --episodes 100 --out DATA"
        )
    manifest = read_versioned_json(
        path,
        "dataset manifest",
        SCHEMA_VERSION,
        "re-collect the data with this version or install the one that wrote it",
    )
    validate_manifest(manifest, path)
    return manifest


def validate_manifest(manifest: dict[str, Any], path: Path) -> None:
    """The header's and every episode line's fields: one line naming the file and the field.

    Shard names must be plain `episode_NNNNNN.npz` names: a manifest never makes dreamgym read
    a file outside its dataset folder.
    """
    where = str(path)
    check_str(manifest.get("env_id"), "env_id", where)
    check_action_space_dict(manifest.get("action_space"), where)
    check_preprocessing_dict(manifest.get("preprocessing"), where)
    shape = manifest.get("frame_shape")
    if not isinstance(shape, list) or len(shape) != 3:
        raise InvalidValueError(f"{where}: frame_shape must be [H, W, 3], got {shape!r}")
    for i, n in enumerate(shape):
        check_int(n, f"frame_shape[{i}]", where, minimum=1)
    check_str(manifest.get("policy"), "policy", where)
    check_int(manifest.get("seed"), "seed", where, minimum=0)
    check_int(manifest.get("max_steps"), "max_steps", where, minimum=1, optional=True)
    episodes = manifest.get("episodes")
    if not isinstance(episodes, list):
        raise InvalidValueError(f"{where}: episodes must be a list, got {type(episodes).__name__}")
    for i, entry in enumerate(episodes):
        _check_entry(entry, f"episodes[{i}]", where)


def _check_entry(entry: Any, name: str, where: str) -> None:
    check_mapping(entry, name, where)
    check_int(entry.get("index"), f"{name}.index", where, minimum=0)
    file = entry.get("file")
    if not isinstance(file, str) or not SHARD_RE.match(file):
        raise InvalidValueError(
            f"{where}: {name}.file must be a shard name in the dataset folder "
            f"(episode_NNNNNN.npz), got {file!r}"
        )
    check_int(entry.get("steps"), f"{name}.steps", where, minimum=0)
    check_float(entry.get("return"), f"{name}.return", where)
    sha = entry.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64:
        raise InvalidValueError(f"{where}: {name}.sha256 must be a sha256 hex digest, got {sha!r}")


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """One line per header field and per episode: readable, and diffs stay small."""
    manifest["episodes"].sort(key=lambda e: e["index"])
    head = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in manifest.items() if k != "episodes"]
    eps = ",\n".join(f"  {json.dumps(e)}" for e in manifest["episodes"])
    text = "{\n" + "\n".join(head) + '\n "episodes": [\n' + eps + ("\n" if eps else "") + " ]\n}\n"
    atomic_write_bytes(out / MANIFEST_NAME, text.encode())


def check_same(out: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Refuse to add episodes made differently; never touch what is there."""
    for key, option in SAME_OPTIONS.items():
        if old.get(key) != new[key]:
            raise DatasetMismatchError(
                f"{out} holds a dataset collected with {key}={old.get(key)!r}, but this run asks "
                f"for {key}={new[key]!r} ({option}); pass the same {option} to add episodes to "
                "it, or choose another --out. Nothing was changed."
            )


def load_episode(
    data_dir: str | os.PathLike[str],
    entry: dict[str, Any],
    verify: bool = True,
    manifest: dict[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Arrays of one episode (`entry` from the manifest's "episodes").

    Shapes, dtypes and lengths are always checked; with `verify` the sha256 is too. A missing,
    truncated, foreign or altered shard raises CorruptShardError naming the file and the fix.
    Pass `manifest` to avoid re-reading it for every episode.
    """
    manifest = manifest if manifest is not None else load_manifest(data_dir)
    path = Path(data_dir) / entry["file"]
    arrays = read_shard(path, manifest, entry["sha256"] if verify else None)
    if arrays["rewards"].shape[0] != entry["steps"]:
        raise CorruptShardError(
            f"episode shard {path} has {arrays['rewards'].shape[0]} steps but the manifest says "
            f"{entry['steps']}; {fix_hint(path)}"
        )
    return arrays


def iter_episodes(
    data_dir: str | os.PathLike[str], verify: bool = True
) -> Iterator[tuple[dict[str, Any], dict[str, np.ndarray]]]:
    """(manifest entry, arrays) for every episode, in index order."""
    manifest = load_manifest(data_dir)
    for entry in manifest["episodes"]:
        yield entry, load_episode(data_dir, entry, verify=verify, manifest=manifest)


def scan_dataset(data_dir: str | os.PathLike[str], verify: bool = True) -> DatasetReport:
    """Validate every shard (checksum, arrays, lengths) and total the dataset.

    Problems are collected, not raised, so one report lists them all; call
    `report.raise_if_problems()` to stop on any.
    """
    manifest = load_manifest(data_dir)
    report = DatasetReport(
        data_dir=str(data_dir),
        env_id=manifest["env_id"],
        episodes=len(manifest["episodes"]),
        steps=0,
        frames=0,
        mean_return=float("nan"),
    )
    returns = []
    for entry in manifest["episodes"]:
        try:
            arrays = load_episode(data_dir, entry, verify=verify, manifest=manifest)
        except CorruptShardError as e:
            report.problems.append(str(e))
            continue
        report.steps += int(arrays["rewards"].shape[0])
        report.frames += int(arrays["frames"].shape[0])
        returns.append(entry["return"])
    if returns:
        report.mean_return = float(np.mean(returns))
    listed = {e["file"] for e in manifest["episodes"]}
    report.unlisted = sorted(
        p.name for p in Path(data_dir).iterdir() if SHARD_RE.match(p.name) and p.name not in listed
    )
    return report
