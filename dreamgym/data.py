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
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing as mp
import os
import queue
import re
import time
import traceback
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from dreamgym.envs.real import make_real_env, real_max_episode_steps
from dreamgym.preprocessing import FramePreprocessing, preprocessing_for
from dreamgym.spaces import action_space_from_dict, action_space_to_dict

try:  # POSIX only; without it two concurrent collections into one folder are not prevented
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 1
"""Version of the dataset layout written by `collect`; readers refuse other versions."""
MANIFEST_NAME = "manifest.json"
SHARD_TEMPLATE = "episode_{index:06d}.npz"
SHARD_RE = re.compile(r"^episode_(\d{6,})\.npz$")
TMP_SUFFIX = ".tmp"
"""Suffix of files being written; any left behind by a killed collection are deleted on resume."""
LOCK_NAME = ".collect.lock"
"""Held by the collecting process so a second `collect` into the same folder fails cleanly."""
WORKERS_LOCK_NAME = ".collect-workers.lock"
"""Held (shared) by worker processes: a resumed collection waits until orphaned workers exit."""
ORPHAN_WAIT_S = 60.0
"""How long a resumed collection waits for the workers of a killed one to notice and exit."""
PARENT_CHECK_EVERY = 50
"""Workers check every this many steps that the collecting process is alive, and stop if not."""
RANDOM_POLICY = "random-correlated"
"""Name recorded in the manifest for the built-in random policy (see `RandomPolicy`)."""
SHARD_COMPRESSLEVEL = 1
"""zlib level of the shards. Measured on 2 cores: level 1 stores a 300-step CarRacing episode in
0.47 MB (3.7 MB raw) in 0.07 s and a ViZDoom one in 1.2 MB (4.1 MB raw) in 0.16 s; level 6 saves
10-25 % more but takes 3-4× longer, as long as stepping ViZDoom itself."""
SHARD_ARRAYS = ("frames", "actions", "rewards", "terminated", "truncated", "seed")

# The built-in random policy. Temporal correlation matters: i.i.d. uniform CarRacing actions cancel
# out (gas and brake together, steering jitter) and the car barely leaves the start, scoring -34.
# Correlated noise alone drives, but off the road: 3/4 of its frames are grass. Measured over
# 6-8 full episodes (return; share of frames with road under the car): i.i.d. -34 ± 4, 0.99 (it
# stands still on the road); OU noise, gas ≤ 0.2: -23 ± 43, 0.26; OU noise + road pull: +240 ± 95
# to +317 ± 158, 0.75-0.79. The policy below (per-episode pull and gas ceiling) scored +290 ± 107
# over the first 30 episodes of a 250-episode collection (seed 0), none leaving the playfield.
OU_THETA = 0.1
"""Ornstein-Uhlenbeck pull towards the middle of the box per step (correlation time ≈ 10 steps)."""
OU_SIGMA = 0.15
"""Ornstein-Uhlenbeck noise per step, in units of half the box width."""
CAR_GAS_MAX = (0.2, 0.5)
"""CarRacing: per episode a gas ceiling is drawn from this range; gas is held at U(0, ceiling)."""
CAR_GAS_CHANGE_P = 0.05
"""CarRacing: probability per step of drawing a new gas level (held ≈ 20 steps on average)."""
CAR_BRAKE_P = 0.01
"""CarRacing: probability per step of starting a brake pulse (gas released meanwhile)."""
CAR_BRAKE_STEPS = (3, 15)
"""CarRacing: a brake pulse lasts U{3..15} steps at a strength of U(0.2, 0.8)."""
CAR_ROAD_PULL = (0.5, 1.0)
"""CarRacing: per episode, the weight of the pull towards the road is drawn from this range."""
CAR_ROAD_GAIN = 2.0
"""CarRacing: steering pull per unit of road offset (offset 1 = road centre 16 px beside the car)."""
CAR_LOOKAHEAD_ROWS = (34, 48)
"""CarRacing: rows of the 64×64 frame ahead of the car (which sits at rows 51-57) to find road in."""
CAR_X = 31.5
"""CarRacing: the car's column in the 64×64 frame."""
DISCRETE_HOLD_MAX = 8
"""Discrete spaces: a uniformly drawn action is held for U{1..DISCRETE_HOLD_MAX} steps."""


class CorruptShardError(ValueError):
    """An episode shard is missing, truncated, foreign or does not match its manifest entry."""


class DatasetMismatchError(ValueError):
    """`collect` was asked to add episodes to a dataset collected with other settings."""


@runtime_checkable
class FramePolicy(Protocol):
    """What `collect` needs from a policy: the hook a trained controller plugs into.

    `reset(seed)` starts an episode (seed derived from the collection seed and the episode index);
    `act(frame)` maps the episode's current 64×64×3 uint8 frame (preprocessed exactly as stored)
    to an action of the env's action space. A policy that needs M's hidden state keeps it itself:
    it saw every frame and chose every action.
    """

    def reset(self, seed: int) -> None: ...

    def act(self, frame: np.ndarray) -> Any: ...


PolicyFactory = Callable[[str, gym.Space], FramePolicy]
"""`factory(env_id, action_space) -> FramePolicy`, called once in every worker (must pickle)."""


@dataclass
class CollectResult:
    """What one call of `collect` did."""

    episodes: int
    """Episodes collected by this call (finished episodes found on disk are not counted)."""
    frames: int
    """Frames written by this call (steps + one final frame per episode)."""
    steps: int
    """Env steps taken by this call."""
    seconds: float
    """Wall-clock time of this call."""
    steps_per_s: float
    """Env steps per second of this call, preprocessing and writing included."""
    total_episodes: int = 0
    """Episodes in the dataset afterwards."""
    out: str = ""
    """The dataset directory."""


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


# --------------------------------------------------------------------------------------------
# The built-in random policy


class RandomPolicy:
    """Temporally correlated random actions ("random-correlated"), seeded per episode.

    - **CarRacing** (Box steer, gas, brake): steering is an Ornstein-Uhlenbeck process
      (θ = OU_THETA, σ = OU_SIGMA) plus a pull of random per-episode weight towards the grey road
      seen ahead of the car in the frame, so the car sweeps along the track, drifts off it and
      comes back, and V and M see road, curves and grass. Gas is held at a level drawn from
      U(0, ceiling), the ceiling drawn per episode from CAR_GAS_MAX, and redrawn with probability
      CAR_GAS_CHANGE_P per step; rare brake pulses (CAR_BRAKE_P per step) release the gas.
      Returns: i.i.d. uniform actions -34 ± 4 (the car barely moves), OU noise alone about -23
      (mostly on grass), this policy about +290 ± 107 (3/4 of its frames on the road).
    - **Other Box spaces**: an independent Ornstein-Uhlenbeck process per dimension in the box
      normalised to [-1, 1] (unbounded dimensions: unit scale), clipped to the box.
    - **Discrete**: a uniformly drawn action held for U{1..DISCRETE_HOLD_MAX} steps, so ViZDoom's
      agent actually moves left or right for a while instead of dithering in place.
    """

    name = RANDOM_POLICY

    def __init__(self, env_id: str, action_space: gym.Space) -> None:
        self.action_space = action_space
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.car = (
            not self.discrete
            and env_id.startswith("CarRacing")
            and tuple(action_space.shape) == (3,)
        )
        if not self.discrete:
            low = np.asarray(action_space.low, dtype=np.float64)
            high = np.asarray(action_space.high, dtype=np.float64)
            bounded = np.isfinite(low) & np.isfinite(high)
            self._mid = np.where(bounded, (low + high) / 2, 0.0)
            self._half = np.where(bounded, (high - low) / 2, 1.0)
            self._low, self._high = low, high
        self.reset(0)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self._hold = 0
        self._action: Any = None
        if self.discrete:
            return
        self._u = np.zeros(self.action_space.shape, dtype=np.float64)
        self._gas_max = self.rng.uniform(*CAR_GAS_MAX)
        self._gas = self.rng.uniform(0.0, self._gas_max)
        self._pull = self.rng.uniform(*CAR_ROAD_PULL)
        self._brake_left = 0
        self._brake = 0.0

    def act(self, frame: np.ndarray) -> Any:
        rng = self.rng
        if self.discrete:
            if self._hold <= 0:
                n, start = int(self.action_space.n), int(self.action_space.start)
                self._action = start + int(rng.integers(n))
                self._hold = int(rng.integers(1, DISCRETE_HOLD_MAX + 1))
            self._hold -= 1
            return self._action
        self._u += -OU_THETA * self._u + OU_SIGMA * rng.standard_normal(self._u.shape)
        np.clip(self._u, -1.0, 1.0, out=self._u)
        if not self.car:
            a = self._mid + self._half * self._u
            return np.clip(a, self._low, self._high).astype(np.float32)
        if rng.random() < CAR_GAS_CHANGE_P:
            self._gas = rng.uniform(0.0, self._gas_max)
        if self._brake_left > 0:
            self._brake_left -= 1
        elif rng.random() < CAR_BRAKE_P:
            self._brake_left = int(rng.integers(CAR_BRAKE_STEPS[0], CAR_BRAKE_STEPS[1] + 1))
            self._brake = rng.uniform(0.2, 0.8)
        braking = self._brake_left > 0
        steer = np.clip(self._u[0] + self._pull * _road_offset(frame), -1.0, 1.0)
        return np.array(
            [steer, 0.0 if braking else self._gas, self._brake if braking else 0.0],
            dtype=np.float32,
        )


def _road_offset(frame: np.ndarray) -> float:
    """CarRacing: where the grey road ahead lies relative to the car, in [-1, 1] (0: no road)."""
    ahead = np.asarray(frame[CAR_LOOKAHEAD_ROWS[0] : CAR_LOOKAHEAD_ROWS[1]], dtype=np.int16)
    r, g, b = ahead[..., 0], ahead[..., 1], ahead[..., 2]
    road = (np.abs(r - g) < 15) & (np.abs(g - b) < 15) & (r > 80) & (r < 140)
    if road.sum() <= 3:
        return 0.0
    offset = (np.nonzero(road)[1].mean() - CAR_X) / 16.0
    return float(np.clip(CAR_ROAD_GAIN * offset, -1.0, 1.0))


def _as_factory(policy: str | PolicyFactory) -> str | PolicyFactory:
    """A policy FILE becomes `evaluation.FramePolicyFactory(FILE)`: V encodes, M tracks h."""
    if isinstance(policy, str) and policy not in ("random", RANDOM_POLICY):
        if not Path(policy).exists() and not Path(policy + ".zip").exists():
            raise ValueError(
                f"--policy {policy!r} is neither 'random' nor an existing file; pass random or "
                "the path of a saved controller or SB3 agent"
            )
        from dreamgym.evaluation import FramePolicyFactory

        return FramePolicyFactory(policy)
    return policy


def _policy_name(policy: str | PolicyFactory) -> str:
    if isinstance(policy, str):
        return RANDOM_POLICY
    if callable(policy):
        return getattr(policy, "name", None) or getattr(policy, "__qualname__", repr(policy))
    raise TypeError(f"policy must be 'random', a file path or a factory, got {policy!r}")


def _make_policy(policy: str | PolicyFactory, env_id: str, action_space: gym.Space) -> FramePolicy:
    if isinstance(policy, str):
        return RandomPolicy(env_id, action_space)
    made = policy(env_id, action_space)
    if not isinstance(made, FramePolicy):
        raise TypeError(f"policy {policy!r} gave {made!r}, which lacks reset(seed) and act(frame)")
    return made


def _policy_seed(seed: int, index: int) -> int:
    """The policy RNG seed of episode `index`: a hash of (collection seed, index)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0])


def _as_action(a: Any, space: gym.Space) -> Any:
    if isinstance(space, gym.spaces.Discrete):
        arr = np.asarray(a)
        if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"policy returned {a!r}; expected one integer action of {space}")
        return int(arr.reshape(()))
    arr = np.asarray(a, dtype=np.float32)
    if arr.shape != space.shape or not np.all(np.isfinite(arr)):
        raise ValueError(f"policy returned {a!r}; expected a finite action of shape {space.shape}")
    return np.clip(arr, space.low, space.high)


# --------------------------------------------------------------------------------------------
# One episode, and shard I/O


def _run_episode(
    env: gym.Env,
    prep: FramePreprocessing,
    policy: FramePolicy,
    seed: int,
    index: int,
    alive: Callable[[], bool] | None = None,
) -> dict[str, np.ndarray]:
    """Roll out episode `index`; `env` enforces max_steps through its TimeLimit."""
    space = env.action_space
    obs, _ = env.reset(seed=seed + index)
    policy.reset(_policy_seed(seed, index))
    frames = [prep(obs)]
    actions: list[Any] = []
    rewards: list[float] = []
    terms: list[bool] = []
    truncs: list[bool] = []
    while True:
        a = _as_action(policy.act(frames[-1]), space)
        obs, r, term, trunc, _ = env.step(a)
        frames.append(prep(obs))
        actions.append(a)
        rewards.append(float(r))
        terms.append(bool(term))
        truncs.append(bool(trunc))
        if term or trunc:
            break
        if alive is not None and len(actions) % PARENT_CHECK_EVERY == 0 and not alive():
            raise _ParentGone
    discrete = isinstance(space, gym.spaces.Discrete)
    return {
        "frames": np.stack(frames).astype(np.uint8, copy=False),
        "actions": np.asarray(actions, dtype=np.int64 if discrete else np.float32).reshape(
            (len(actions),) if discrete else (len(actions), -1)
        ),
        "rewards": np.asarray(rewards, dtype=np.float32),
        "terminated": np.asarray(terms, dtype=bool),
        "truncated": np.asarray(truncs, dtype=bool),
        "seed": np.asarray(seed + index, dtype=np.int64),
    }


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):  # not supported everywhere (Windows)
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The arrays as an .npz (what np.savez_compressed writes, read by np.load), but with
    zlib level SHARD_COMPRESSLEVEL and fixed timestamps, so equal episodes give equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            npy = io.BytesIO()
            np.lib.format.write_array(npy, np.asanyarray(value), allow_pickle=False)
            zf.writestr(
                zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                npy.getvalue(),
                compress_type=zipfile.ZIP_DEFLATED,
                compresslevel=SHARD_COMPRESSLEVEL,
            )
    return buf.getvalue()


def _write_shard(out: Path, index: int, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Write episode `index` atomically; return its manifest entry."""
    data = _npz_bytes(arrays)
    name = SHARD_TEMPLATE.format(index=index)
    _atomic_write(out / name, data)
    return _entry(index, name, arrays, hashlib.sha256(data).hexdigest())


def _entry(index: int, name: str, arrays: dict[str, np.ndarray], sha: str) -> dict[str, Any]:
    steps = int(arrays["rewards"].shape[0])
    return {
        "index": index,
        "file": name,
        "seed": int(arrays["seed"]),
        "steps": steps,
        "return": float(np.sum(arrays["rewards"], dtype=np.float64)),
        "terminated": bool(arrays["terminated"][-1]) if steps else False,
        "truncated": bool(arrays["truncated"][-1]) if steps else False,
        "sha256": sha,
    }


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fix(path: Path) -> str:
    return f"delete {path} and re-run dreamgym collect to re-collect that episode"


def _read_shard(path: Path, manifest: dict[str, Any], sha256: str | None) -> dict[str, np.ndarray]:
    """Load and validate one shard; CorruptShardError names the file and the fix."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptShardError(
            f"episode shard {path} is missing; re-run dreamgym collect to re-collect it"
        ) from None
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise CorruptShardError(
            f"episode shard {path} does not match its sha256 in the manifest (truncated or "
            f"changed); {_fix(path)}"
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            missing = [k for k in SHARD_ARRAYS if k not in npz.files]
            if missing:
                raise CorruptShardError(
                    f"{path} is not a dreamgym episode shard (no {', '.join(missing)}); "
                    f"{_fix(path)}"
                )
            arrays = {k: npz[k] for k in SHARD_ARRAYS}
    except CorruptShardError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise CorruptShardError(f"episode shard {path} cannot be read ({e}); {_fix(path)}") from e
    problem = _shape_problem(arrays, manifest)
    if problem:
        raise CorruptShardError(f"episode shard {path} {problem}; {_fix(path)}")
    return arrays


def _shape_problem(arrays: dict[str, np.ndarray], manifest: dict[str, Any]) -> str | None:
    frames, actions = arrays["frames"], arrays["actions"]
    steps = arrays["rewards"].shape[0] if arrays["rewards"].ndim == 1 else -1
    frame_shape = tuple(manifest["frame_shape"])
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != frame_shape:
        return f"has frames {frames.dtype}{frames.shape}, expected uint8 (T+1, {frame_shape})"
    if steps < 0 or frames.shape[0] != steps + 1:
        return f"has {frames.shape[0]} frames for rewards of shape {arrays['rewards'].shape}"
    space = action_space_from_dict(manifest["action_space"])
    if isinstance(space, gym.spaces.Discrete):
        want, dtype = (steps,), np.int64
    else:
        want, dtype = (steps, *space.shape), np.float32
    if actions.shape != want or actions.dtype != dtype:
        return f"has actions {actions.dtype}{actions.shape}, expected {np.dtype(dtype)}{want}"
    for k in ("terminated", "truncated"):
        if arrays[k].shape != (steps,) or arrays[k].dtype != bool:
            return f"has {k} {arrays[k].dtype}{arrays[k].shape}, expected bool ({steps},)"
    if arrays["rewards"].dtype != np.float32 or arrays["seed"].shape != ():
        return "has rewards or seed of the wrong type"
    return None


# --------------------------------------------------------------------------------------------
# Reading


def load_manifest(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The dataset's manifest; a clear error if `data_dir` is not a dreamgym dataset."""
    path = Path(data_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{data_dir} is not a dreamgym dataset (no {MANIFEST_NAME}): run dreamgym collect "
            "first, e.g. dreamgym collect --env CarRacing-v3 --episodes 100 --out DATA"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); was it edited by hand?") from e
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"{path} has schema_version {version!r}; this dreamgym reads {SCHEMA_VERSION} — "
            "re-collect the data with this version or install the one that wrote it"
        )
    return manifest


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
    arrays = _read_shard(path, manifest, entry["sha256"] if verify else None)
    if arrays["rewards"].shape[0] != entry["steps"]:
        raise CorruptShardError(
            f"episode shard {path} has {arrays['rewards'].shape[0]} steps but the manifest says "
            f"{entry['steps']}; {_fix(path)}"
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


# --------------------------------------------------------------------------------------------
# Collecting


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """One line per header field and per episode: readable, and diffs stay small."""
    manifest["episodes"].sort(key=lambda e: e["index"])
    head = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in manifest.items() if k != "episodes"]
    eps = ",\n".join(f"  {json.dumps(e)}" for e in manifest["episodes"])
    text = "{\n" + "\n".join(head) + '\n "episodes": [\n' + eps + ("\n" if eps else "") + " ]\n}\n"
    _atomic_write(out / MANIFEST_NAME, text.encode())


def _check_same(out: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Refuse to add episodes made differently; never touch what is there."""
    options = {
        "env_id": "--env",
        "preprocessing": "the frame preprocessing (dreamgym version)",
        "action_space": "--env (action space)",
        "frame_shape": "the frame size (dreamgym version)",
        "policy": "--policy",
        "seed": "--seed",
        "max_steps": "--max-steps",
    }
    for key, option in options.items():
        if old.get(key) != new[key]:
            raise DatasetMismatchError(
                f"{out} holds a dataset collected with {key}={old.get(key)!r}, but this run asks "
                f"for {key}={new[key]!r} ({option}); pass the same {option} to add episodes to "
                "it, or choose another --out. Nothing was changed."
            )


@contextlib.contextmanager
def _lock(path: Path, exclusive: bool, wait_s: float, message: str) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        while True:
            try:
                fcntl.flock(fd, mode)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RuntimeError(message) from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # releases the lock


def _prepare(out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Resume: delete temp files, check listed shards, adopt verified unlisted ones."""
    for p in out.iterdir():
        if p.name.endswith(TMP_SUFFIX) and (
            SHARD_RE.match(p.name[: -len(TMP_SUFFIX)]) or p.name == MANIFEST_NAME + TMP_SUFFIX
        ):
            p.unlink()
    kept = []
    for entry in manifest["episodes"]:
        path = out / entry["file"]
        if not path.exists():
            continue  # lost shard: dropped from the manifest and collected again
        if _sha256_file(path) != entry["sha256"]:
            raise CorruptShardError(
                f"episode shard {path} does not match its sha256 in the manifest; {_fix(path)}"
            )
        kept.append(entry)
    listed = {e["index"] for e in kept}
    for p in sorted(out.iterdir()):
        m = SHARD_RE.match(p.name)
        if not m or int(m.group(1)) in listed:
            continue
        index = int(m.group(1))
        arrays = _read_shard(p, manifest, None)  # raises CorruptShardError naming the file
        if int(arrays["seed"]) != manifest["seed"] + index:
            raise CorruptShardError(
                f"episode shard {p} has env seed {int(arrays['seed'])}, but episode {index} of "
                f"this dataset uses {manifest['seed'] + index}; it comes from another collection "
                f"— move it away, or {_fix(p)}"
            )
        kept.append(_entry(index, p.name, arrays, _sha256_file(p)))
    manifest["episodes"] = kept
    return manifest


class _ParentGone(Exception):
    """The collecting process died; a worker stops instead of writing on its own."""


def _worker(
    env_id: str,
    max_steps: int | None,
    policy: str | PolicyFactory,
    seed: int,
    out: str,
    prep_dict: dict[str, Any],
    tasks: Any,
    results: Any,
) -> None:
    """Worker process: compute episodes by index from `tasks`, write shards, report entries."""
    parent = mp.parent_process()

    def alive() -> bool:
        return parent is None or parent.is_alive()

    out_dir = Path(out)
    index = -1
    try:
        with _lock(out_dir / WORKERS_LOCK_NAME, False, 10.0, "worker could not take its lock"):
            env = make_real_env(env_id, max_episode_steps=max_steps)
            try:
                prep = FramePreprocessing.from_dict(prep_dict)
                pol = _make_policy(policy, env_id, env.action_space)
                while alive():
                    try:
                        index = tasks.get(timeout=1.0)
                    except queue.Empty:
                        continue
                    if index is None:
                        break
                    arrays = _run_episode(env, prep, pol, seed, index, alive)
                    if not alive():
                        break
                    results.put(("done", index, _write_shard(out_dir, index, arrays)))
            finally:
                env.close()
    except _ParentGone:
        return
    except BaseException:  # report, so the parent can stop with the worker's traceback
        results.put(("error", index, traceback.format_exc()))


@dataclass
class CollectConfig:
    """Options of `dreamgym collect` (one `--kebab-case` flag per field); see `collect`."""

    env: str = field(metadata={"help": "real Gymnasium env id, e.g. CarRacing-v3"})
    episodes: int = field(
        metadata={"help": "episodes the dataset should hold (re-run with more to add episodes)"}
    )
    out: str = field(metadata={"help": "dataset directory (re-running resumes it)"})
    workers: int | None = field(
        default=None, metadata={"help": "worker processes (default: CPU count; 1: in-process)"}
    )
    policy: str = field(
        default="random",
        metadata={"help": "random (temporally correlated random actions) or a policy FILE"},
    )
    world: str | None = field(
        default=None,
        metadata={
            "help": "with --policy FILE: the world whose V and M it acts through (default: the one it records)"
        },
    )
    max_steps: int | None = field(
        default=None, metadata={"help": "truncate episodes after this many steps"}
    )
    seed: int = field(default=0, metadata={"help": "episode i resets the env with seed + i"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


def collect_from_config(config: CollectConfig) -> CollectResult:
    """`collect` with the options of `dreamgym collect`; prints a one-line summary."""
    policy: str | PolicyFactory = config.policy
    if policy not in ("random", RANDOM_POLICY):
        from dreamgym.evaluation import FramePolicyFactory

        policy = FramePolicyFactory(config.policy, config.world)  # checked against the world now
    result = collect(
        config.env,
        config.episodes,
        config.out,
        workers=config.workers,
        policy=policy,
        max_steps=config.max_steps,
        seed=config.seed,
        progress=config.progress,
    )
    print(
        f"{result.out}: {result.total_episodes} episodes ({result.episodes} new, "
        f"{result.steps} steps in {result.seconds:.0f} s, {result.steps_per_s:.0f} steps/s)"
    )
    return result


def collect(
    env_id: str,
    episodes: int,
    out: str | os.PathLike[str],
    workers: int | None = None,
    policy: str | PolicyFactory = "random",
    max_steps: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> CollectResult:
    """Roll out `episodes` episodes of the real env `env_id` into the dataset directory `out`.

    Arguments mirror ``dreamgym collect --env ENV_ID --episodes N --out DATA [--workers W]
    [--policy random|FILE] [--max-steps K] [--seed S]``:

    - `workers`: processes, each with its own headless env (default: os.cpu_count()); 1 runs in
      this process. Episodes are handed out by index, so results do not depend on scheduling.
    - `policy`: "random" — the temporally correlated `RandomPolicy` —, a FILE loaded in each
      worker by `dreamgym.evaluation.load_frame_policy(FILE)`, or a picklable
      `factory(env_id, action_space)`; the last two must give a `FramePolicy`
      (`reset(seed)`, `act(frame_uint8) -> action`).
    - `max_steps`: truncate episodes after this many steps (default: the env's own limit; the
      paper's 2,100 for VizdoomTakeCover-v1).
    - `seed`: episode `i` resets the env with `seed + i`; its policy is seeded from (seed, i).

    Re-running resumes (see the module docstring); a larger `episodes` adds episodes. An `out`
    collected with another env, preprocessing, policy, seed or max_steps raises
    DatasetMismatchError and is left untouched.
    """
    if not isinstance(episodes, int) or episodes < 0:
        raise ValueError(f"--episodes must be a non-negative integer, got {episodes!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed!r}")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"--max-steps must be a positive integer, got {max_steps!r}")
    workers = (os.cpu_count() or 1) if workers is None else workers
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {workers!r}")
    policy = _as_factory(policy)
    policy_name = _policy_name(policy)

    # Everything that can be wrong with the env is found here, before any worker starts.
    env = make_real_env(env_id, max_episode_steps=max_steps)
    try:
        prep = preprocessing_for(env_id, env.observation_space)
        action_space = action_space_to_dict(env.action_space)
        env_limit = real_max_episode_steps(env)
    finally:
        env.close()
    header = {
        "schema_version": SCHEMA_VERSION,
        "env_id": env_id,
        "frame_shape": [prep.size, prep.size, 3],
        "action_space": action_space,
        "preprocessing": prep.to_dict(),
        "policy": policy_name,
        "seed": seed,
        "max_steps": max_steps,
        "max_episode_steps": env_limit,
    }

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _lock(
        out_dir / LOCK_NAME,
        True,
        0.0,
        f"another dreamgym collect is writing to {out_dir}; wait for it or choose another --out",
    ):
        with _lock(
            out_dir / WORKERS_LOCK_NAME,
            True,
            ORPHAN_WAIT_S,
            f"workers of an earlier dreamgym collect into {out_dir} are still running; "
            "stop them and re-run",
        ):
            pass  # workers of a killed collection have exited
        if (out_dir / MANIFEST_NAME).exists():
            manifest = load_manifest(out_dir)
            _check_same(out_dir, manifest, header)
        else:
            shards = [p.name for p in out_dir.iterdir() if SHARD_RE.match(p.name)]
            if shards:
                raise DatasetMismatchError(
                    f"{out_dir} holds episode shards ({shards[0]}, …) but no {MANIFEST_NAME}; "
                    "it was not written by dreamgym collect — choose another --out. Nothing "
                    "was changed."
                )
            manifest = {**header, "episodes": []}
        manifest = _prepare(out_dir, manifest)
        _write_manifest(out_dir, manifest)
        done = {e["index"] for e in manifest["episodes"]}
        todo = [i for i in range(episodes) if i not in done]
        result = _collect_todo(
            env_id, out_dir, manifest, todo, workers, policy, max_steps, seed, prep, progress
        )
    result.total_episodes = len(manifest["episodes"])
    result.out = str(out_dir)
    return result


def _collect_todo(
    env_id: str,
    out: Path,
    manifest: dict[str, Any],
    todo: list[int],
    workers: int,
    policy: str | PolicyFactory,
    max_steps: int | None,
    seed: int,
    prep: FramePreprocessing,
    progress: bool,
) -> CollectResult:
    from tqdm.auto import tqdm

    start = time.perf_counter()
    total = len(manifest["episodes"]) + len(todo)
    bar = tqdm(
        total=total,
        initial=total - len(todo),
        unit="ep",
        desc=f"collect {env_id}",
        disable=not progress,
        dynamic_ncols=True,
    )
    counts = {"episodes": 0, "steps": 0}

    def finished(entry: dict[str, Any]) -> None:
        manifest["episodes"].append(entry)
        _write_manifest(out, manifest)
        counts["episodes"] += 1
        counts["steps"] += entry["steps"]
        rate = counts["steps"] / max(time.perf_counter() - start, 1e-9)
        bar.set_postfix(
            frames=f"{counts['steps'] + counts['episodes']:,}", steps_s=f"{rate:.0f}", refresh=False
        )
        bar.update(1)

    try:
        if not todo:
            pass
        elif workers == 1 or len(todo) == 1:
            env = make_real_env(env_id, max_episode_steps=max_steps)
            try:
                pol = _make_policy(policy, env_id, env.action_space)
                for index in todo:
                    arrays = _run_episode(env, prep, pol, seed, index)
                    finished(_write_shard(out, index, arrays))
            finally:
                env.close()
        else:
            _run_workers(
                env_id, out, todo, min(workers, len(todo)), policy, max_steps, seed, prep, finished
            )
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    return CollectResult(
        episodes=counts["episodes"],
        frames=counts["steps"] + counts["episodes"],
        steps=counts["steps"],
        seconds=seconds,
        steps_per_s=counts["steps"] / seconds if seconds > 0 else 0.0,
    )


def _run_workers(
    env_id: str,
    out: Path,
    todo: list[int],
    workers: int,
    policy: str | PolicyFactory,
    max_steps: int | None,
    seed: int,
    prep: FramePreprocessing,
    finished: Callable[[dict[str, Any]], None],
) -> None:
    ctx = mp.get_context("spawn")
    tasks = ctx.Queue()
    results = ctx.Queue()
    for index in todo:
        tasks.put(index)
    for _ in range(workers):
        tasks.put(None)
    procs = [
        ctx.Process(
            target=_worker,
            args=(env_id, max_steps, policy, seed, str(out), prep.to_dict(), tasks, results),
            daemon=True,
            name=f"dreamgym-collect-{k}",
        )
        for k in range(workers)
    ]
    for p in procs:
        p.start()
    remaining = set(todo)
    try:
        while remaining:
            try:
                kind, index, payload = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead or all(p.exitcode is not None for p in procs):
                    raise RuntimeError(
                        f"collect worker(s) {', '.join(p.name for p in dead) or 'all'} exited "
                        f"(exit codes {[p.exitcode for p in procs]}) with episodes "
                        f"{sorted(remaining)[:5]} unfinished; re-run to resume"
                    ) from None
                continue
            if kind == "error":
                raise RuntimeError(f"collect worker failed on episode {index}:\n{payload}")
            remaining.discard(index)
            finished(payload)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=10)
        tasks.cancel_join_thread()
        results.cancel_join_thread()
