"""Collecting real rollouts into an episode dataset, and reading it back.

The first step of World Models (Ha & Schmidhuber 2018, §3.1 and §4.1) is a dataset of rollouts of
the real env under a random policy. `collect` writes one as a directory::

    DATA/manifest.json          what was collected and how (env, preprocessing, action space,
                                policy, seed) and one entry per finished episode with its sha256
    DATA/episode_000000.npz     one shard per episode: frames (T+1, 64, 64, 3) uint8 — the frame
                                before every step plus the last one —, actions (T, A) float32 or
                                (T,) int64, rewards (T,) float32, terminated (T,), truncated (T,)
                                bool, seed () int64

Episode `i` of a collection with base seed `S` resets the env with `seed=S + i` and seeds its
policy from `(S, i)`, so every episode is reproducible on its own, whatever the worker scheduling.
Shards and the manifest are written atomically (temporary file, fsync, `os.replace`), the manifest
after every finished episode; re-running the same `collect` therefore resumes: finished episodes
are kept, a shard written just before a crash is verified and adopted, stray temporary files are
deleted, and at most the episodes in flight are computed again.

Reading (`load_manifest`, `load_episode`, `iter_episodes`, `scan_dataset`) checks checksums and
shapes and names the shard and the fix when something is wrong. Frames stay uint8 throughout.

Modules: `exploration` (the built-in random policy), `rollout` (one episode), `shards` (the
shard format), `manifest` (the manifest, reading back), `workers` (the worker pool), `collect`,
`subset` (a dataset of some episodes of another, e.g. a controller's failures).
"""

from __future__ import annotations

from dreamgym.data.collect import (
    LOCK_NAME,
    CollectConfig,
    CollectResult,
    collect,
    collect_from_config,
)
from dreamgym.data.exploration import (
    COVERAGE_POLICY,
    RANDOM_POLICY,
    CoveragePolicy,
    ExplorationPolicy,
)
from dreamgym.data.manifest import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    DatasetMismatchError,
    DatasetReport,
    iter_episodes,
    load_episode,
    load_manifest,
    scan_dataset,
)
from dreamgym.data.rollout import FramePolicy, PolicyFactory
from dreamgym.data.shards import SHARD_TEMPLATE, CorruptShardError
from dreamgym.data.subset import SelectConfig, SubsetResult, select_episodes, select_from_config

__all__ = [
    "COVERAGE_POLICY",
    "LOCK_NAME",
    "MANIFEST_NAME",
    "RANDOM_POLICY",
    "SCHEMA_VERSION",
    "SHARD_TEMPLATE",
    "CollectConfig",
    "CollectResult",
    "CorruptShardError",
    "CoveragePolicy",
    "DatasetMismatchError",
    "DatasetReport",
    "ExplorationPolicy",
    "FramePolicy",
    "PolicyFactory",
    "SelectConfig",
    "SubsetResult",
    "collect",
    "collect_from_config",
    "iter_episodes",
    "load_episode",
    "load_manifest",
    "scan_dataset",
    "select_episodes",
    "select_from_config",
]
