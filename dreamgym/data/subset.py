"""A dataset made of some of another dataset's episodes, picked by their return.

The paper's iterative loop (Ha & Schmidhuber 2018, §4.5) adds the current controller's rollouts to
M's data. A dream-only re-implementation for CarRacing called the controller's *failure* episodes
the critical part: the states where the dream over-promised. `select_episodes` makes such a
dataset without copying raw data: shards are hard-linked (copied where the filesystem cannot link)
and the manifest keeps each episode's index, seed, return and sha256, so `dreamgym train` reads it
like any collected dataset and verifies every shard.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from dreamgym.data.manifest import load_manifest, write_manifest
from dreamgym.utils.options import option


@dataclass
class SelectConfig:
    """Options of `dreamgym select`: a dataset of another's episodes, picked by return."""

    data: str = option(
        help="a dataset written by `dreamgym collect` (e.g. a controller's rollouts)"
    )
    out: str = option(help="the new dataset's directory; must not exist (a subset never merges)")
    min_return: float = option(-math.inf, help="keep episodes whose return is at least this")
    max_return: float = option(math.inf, help="keep episodes whose return is below this")


@dataclass(frozen=True)
class SubsetResult:
    """What `select_episodes` kept."""

    out: Path
    episodes: int
    of: int
    steps: int
    mean_return: float


def select_episodes(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    min_return: float = -math.inf,
    max_return: float = math.inf,
) -> SubsetResult:
    """Write the episodes of `src` with `min_return <= return < max_return` as a new dataset `dst`.

    `dst` must not exist: a subset is a record of one selection, never merged into another. The
    directory appears whole or not at all (built under a temporary name, then renamed).
    """
    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise FileExistsError(f"{dst} exists: pick a new directory (a subset never overwrites one)")
    if not min_return < max_return:
        raise ValueError(f"min_return {min_return} must be below max_return {max_return}")
    manifest = load_manifest(src)
    keep = [e for e in manifest["episodes"] if min_return <= e["return"] < max_return]
    if not keep:
        raise ValueError(
            f"no episode of {src} has a return in [{min_return}, {max_return}): widen the range"
        )
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for entry in keep:
        try:
            os.link(src / entry["file"], tmp / entry["file"])
        except OSError:
            shutil.copy2(src / entry["file"], tmp / entry["file"])
    policy = (
        f"{manifest['policy']} (episodes of {src.name} with return in [{min_return}, {max_return}))"
    )
    write_manifest(tmp, {**manifest, "policy": policy, "episodes": keep})
    os.replace(tmp, dst)
    return SubsetResult(
        out=dst,
        episodes=len(keep),
        of=len(manifest["episodes"]),
        steps=sum(int(e["steps"]) for e in keep),
        mean_return=sum(float(e["return"]) for e in keep) / len(keep),
    )


def select_from_config(config: SelectConfig) -> SubsetResult:
    """`dreamgym select`: `select_episodes` with the command's options."""
    return select_episodes(config.data, config.out, config.min_return, config.max_return)
