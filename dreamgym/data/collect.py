"""`collect`: roll out the real env into a dataset directory, resumably.

Shards and the manifest are written atomically (temporary file, fsync, `os.replace`), the manifest
after every finished episode; re-running the same `collect` therefore resumes: finished episodes
are kept, a shard written just before a crash is verified and adopted, stray temporary files are
deleted, and at most the episodes in flight are computed again.

With `ray_address` (`--ray [ADDRESS]`) each episode is a Ray task that returns its shard bytes;
this process writes them, so a dataset made on a cluster is the same as one made here.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from dreamgym.data.exploration import BUILTIN_POLICIES, recorded_policy_name
from dreamgym.data.manifest import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    DatasetMismatchError,
    check_same,
    load_manifest,
    write_manifest,
)
from dreamgym.data.rollout import PolicyFactory, RolloutSpec, run_episode
from dreamgym.data.shards import (
    SHARD_RE,
    CorruptShardError,
    fix_hint,
    read_shard,
    shard_entry,
    write_shard,
)
from dreamgym.data.workers import WORKERS_LOCK_NAME, CollectJob, run_workers
from dreamgym.envs.real import make_real_env, real_max_episode_steps
from dreamgym.options import RealRunOptions
from dreamgym.preprocessing import FramePreprocessing, preprocessing_for
from dreamgym.runners import check_ray_address, run_on_ray
from dreamgym.spaces import action_space_to_dict
from dreamgym.utils.files import TMP_SUFFIX, atomic_write_bytes, sha256_bytes, sha256_file
from dreamgym.utils.locks import file_lock
from dreamgym.utils.options import TRUST_AGENT_HELP, deprecated_aliases, option
from dreamgym.utils.validate import check_output_dir, check_real_run

LOCK_NAME = ".collect.lock"
"""Held by the collecting process so a second `collect` into the same folder fails cleanly."""
ORPHAN_WAIT_S = 60.0
"""How long a resumed collection waits for the workers of a killed one to notice and exit."""
_TEMP_RE = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]+" + re.escape(TMP_SUFFIX) + "$")
"""A temp file of `utils.files.atomic_write_bytes`: `.NAME.XXXXXXXX.tmp`, written for NAME."""


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


@deprecated_aliases
@dataclass(kw_only=True)
class CollectConfig(RealRunOptions):
    """Options of `dreamgym collect` (one `--kebab-case` flag per field): the real runs', and
    these; see `collect`."""

    env: str = option(help="real Gymnasium env id, e.g. CarRacing-v3")
    episodes: int = option(
        help="episodes the dataset should hold (re-run with more to add episodes)"
    )
    out: str = option(help="dataset directory (re-running resumes it)")
    workers: int | None = option(None, "worker processes (default: CPU count; 1: in-process)")
    policy: str = option(
        "random",
        "random (temporally correlated random actions), coverage (random plus stops, excursions "
        "off the road and heavy gas on CarRacing) or a policy FILE",
    )
    world: str | None = field(
        default=None,
        metadata={
            "help": "with --policy FILE: the world whose V and M it acts through (default: the one it records)"
        },
    )
    seed: int = option(0, "episode i resets the env with seed + i")
    progress: bool = option(True, "show a progress bar")
    trust_agent: bool = option(False, TRUST_AGENT_HELP)


def _frame_policy_factory(
    spec: str, world: str | None = None, trust_agent: bool = False
) -> PolicyFactory:
    """A policy FILE as a factory of frame policies: V encodes each frame, M tracks h.

    Imported here, lazily: the policies layer pulls in torch and the world, which random
    collection never needs.
    """
    from dreamgym.policies.frames import FramePolicyFactory

    return FramePolicyFactory(spec, world, trust=trust_agent)  # checked against the world now


def _is_builtin(policy: object) -> bool:
    """A built-in exploration policy: its `--policy` name or the name manifests record."""
    return isinstance(policy, str) and recorded_policy_name(policy) is not None


def _as_factory(policy: str | PolicyFactory) -> str | PolicyFactory:
    """A built-in name stays a str (`exploration.BUILTIN_POLICIES`); a FILE becomes a factory."""
    if isinstance(policy, str) and not _is_builtin(policy):
        if not Path(policy).exists() and not Path(policy + ".zip").exists():
            raise ValueError(
                f"--policy {policy!r} is neither a built-in policy ({', '.join(BUILTIN_POLICIES)}) "
                "nor an existing file; pass one of those or the path of a saved controller or "
                "SB3 agent"
            )
        return _frame_policy_factory(policy)
    return policy


def _policy_name(policy: str | PolicyFactory) -> str:
    """The policy as the manifest records it."""
    if isinstance(policy, str):
        return recorded_policy_name(policy) or policy
    if callable(policy):
        return getattr(policy, "name", None) or getattr(policy, "__qualname__", repr(policy))
    raise TypeError(f"policy must be 'random', a file path or a factory, got {policy!r}")


def collect_from_config(config: CollectConfig) -> CollectResult:
    """`collect` with the options of `dreamgym collect`."""
    policy: str | PolicyFactory = config.policy
    if not _is_builtin(policy):
        policy = _frame_policy_factory(config.policy, config.world, config.trust_agent)
    return collect(
        config.env,
        config.episodes,
        config.out,
        workers=config.workers,
        policy=policy,
        max_steps=config.max_steps,
        seed=config.seed,
        progress=config.progress,
        ray_address=config.ray,
    )


def collect(
    env_id: str,
    episodes: int,
    out: str | os.PathLike[str],
    workers: int | None = None,
    policy: str | PolicyFactory = "random",
    max_steps: int | None = None,
    seed: int = 0,
    progress: bool = True,
    ray_address: str | None = None,
) -> CollectResult:
    """Roll out `episodes` episodes of the real env `env_id` into the dataset directory `out`.

    Arguments mirror ``dreamgym collect --env ENV_ID --episodes N --out DATA [--workers W]
    [--policy random|coverage|FILE] [--max-steps K] [--seed S]``:

    - `workers`: processes, each with its own headless env (default: os.cpu_count()); 1 runs in
      this process. Episodes are handed out by index, so results do not depend on scheduling.
    - `policy`: "random" — the temporally correlated `ExplorationPolicy` —, "coverage" — the
      same plus stops, excursions off the road and heavy gas on CarRacing (`CoveragePolicy`) —,
      a FILE (a saved
      controller or SB3 agent, acting through the world it records: V encodes each frame, M
      tracks h), or a picklable `factory(env_id, action_space)` giving a `FramePolicy`
      (`reset(seed)`, `act(frame_uint8) -> action`).
    - `max_steps`: truncate episodes after this many steps (default: the env's own limit; the
      paper's 2,100 for VizdoomTakeCover-v1).
    - `seed`: episode `i` resets the env with `seed + i`; its policy is seeded from (seed, i).
    - `ray_address`: run each episode as a Ray task instead ("local", "auto" or "HOST:PORT", see
      `dreamgym.runners.ray_backend`); `workers` then caps the episodes in flight.

    Re-running resumes (see `dreamgym.data`); a larger `episodes` adds episodes. An `out`
    collected with another env, preprocessing, policy, seed or max_steps raises
    DatasetMismatchError and is left untouched; one another `collect` is writing to raises
    FolderBusyError.
    """
    check_ray_address(ray_address)
    check_output_dir(out, holds="dataset")
    n_workers = _check_args(episodes, seed, max_steps, workers)
    policy = _as_factory(policy)
    header, prep = _dataset_header(env_id, _policy_name(policy), seed, max_steps)
    spec = RolloutSpec(env_id, max_steps, policy, seed, prep)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(
        out_dir / LOCK_NAME,
        f"another dreamgym collect is writing to {out_dir}; wait for it or choose another --out",
    ):
        with file_lock(
            out_dir / WORKERS_LOCK_NAME,
            f"workers of an earlier dreamgym collect into {out_dir} are still running; "
            "stop them and re-run",
            wait_s=ORPHAN_WAIT_S,
        ):
            pass  # workers of a killed collection have exited
        manifest = _open_dataset(out_dir, header)
        done = {e["index"] for e in manifest["episodes"]}
        todo = [i for i in range(episodes) if i not in done]
        # Ray schedules by its CPUs: there --workers only caps the episodes in flight
        in_flight = workers if ray_address is not None else n_workers
        result = _collect_todo(spec, out_dir, manifest, todo, in_flight, progress, ray_address)
    result.total_episodes = len(manifest["episodes"])
    result.out = str(out_dir)
    return result


def _check_args(episodes: Any, seed: Any, max_steps: Any, workers: Any) -> int:
    """Refuse bad options before anything starts; the worker count to use."""
    _, _, given, _ = check_real_run(episodes, seed, workers, max_steps, min_episodes=0)
    return (os.cpu_count() or 1) if given is None else given


def _dataset_header(
    env_id: str, policy_name: str, seed: int, max_steps: int | None
) -> tuple[dict[str, Any], FramePreprocessing]:
    """The manifest header of this collection, and its preprocessing.

    Everything that can be wrong with the env is found here, before any worker starts.
    """
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
    return header, prep


def _open_dataset(out: Path, header: dict[str, Any]) -> dict[str, Any]:
    """The manifest to extend (checked against `header`, resumed), written back; under the lock."""
    if (out / MANIFEST_NAME).exists():
        manifest = load_manifest(out)
        check_same(out, manifest, header)
    else:
        shards = [p.name for p in out.iterdir() if SHARD_RE.match(p.name)]
        if shards:
            raise DatasetMismatchError(
                f"{out} holds episode shards ({shards[0]}, …) but no {MANIFEST_NAME}; "
                "it was not written by dreamgym collect — choose another --out. Nothing "
                "was changed."
            )
        manifest = {**header, "episodes": []}
    manifest = _prepare(out, manifest)
    write_manifest(out, manifest)
    return manifest


def _temp_target(name: str) -> str | None:
    """The file a temp file `name` was being written for, or None if it is no temp file.

    `.NAME.XXXXXXXX.tmp` is what `utils.files.atomic_write_bytes` writes; `NAME.tmp` what earlier
    dreamgym versions wrote (a killed one may have left such files behind).
    """
    m = _TEMP_RE.match(name)
    if m:
        return m["target"]
    return name[: -len(TMP_SUFFIX)] if name.endswith(TMP_SUFFIX) else None


def _prepare(out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Resume: delete temp files, check listed shards, adopt verified unlisted ones."""
    for p in out.iterdir():
        target = _temp_target(p.name)
        if target is not None and (SHARD_RE.match(target) or target == MANIFEST_NAME):
            p.unlink()
    kept = []
    for entry in manifest["episodes"]:
        path = out / entry["file"]
        if not path.exists():
            continue  # lost shard: dropped from the manifest and collected again
        if sha256_file(path) != entry["sha256"]:
            raise CorruptShardError(
                f"episode shard {path} does not match its sha256 in the manifest; {fix_hint(path)}"
            )
        kept.append(entry)
    listed = {e["index"] for e in kept}
    for p in sorted(out.iterdir()):
        m = SHARD_RE.match(p.name)
        if not m or int(m.group(1)) in listed:
            continue
        index = int(m.group(1))
        arrays = read_shard(p, manifest, None)  # raises CorruptShardError naming the file
        if int(arrays["seed"]) != manifest["seed"] + index:
            raise CorruptShardError(
                f"episode shard {p} has env seed {int(arrays['seed'])}, but episode {index} of "
                f"this dataset uses {manifest['seed'] + index}; it comes from another collection "
                f"— move it away, or {fix_hint(p)}"
            )
        kept.append(shard_entry(index, p.name, arrays, sha256_file(p)))
    manifest["episodes"] = kept
    return manifest


def _collect_todo(
    spec: RolloutSpec,
    out: Path,
    manifest: dict[str, Any],
    todo: list[int],
    workers: int | None,
    progress: bool,
    ray_address: str | None = None,
) -> CollectResult:
    """Compute the episodes `todo` (in this process, in workers or on Ray), adding each to the
    manifest. With `ray_address`, `workers` caps the episodes in flight (None: Ray's default)."""
    start = time.perf_counter()
    total = len(manifest["episodes"]) + len(todo)
    bar = tqdm(
        total=total,
        initial=total - len(todo),
        unit="ep",
        desc=f"collect {spec.env_id}",
        disable=not progress,
        dynamic_ncols=True,
    )
    counts = {"episodes": 0, "steps": 0}

    def finished(entry: dict[str, Any]) -> None:
        manifest["episodes"].append(entry)
        write_manifest(out, manifest)
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
        elif ray_address is not None:
            _collect_on_ray(spec, out, todo, ray_address, workers, finished)
        elif workers is None or workers == 1 or len(todo) == 1:
            _collect_in_process(spec, out, todo, finished)
        else:
            run_workers(spec, out, todo, min(workers, len(todo)), finished)
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


def _collect_in_process(
    spec: RolloutSpec, out: Path, todo: list[int], finished: Callable[[dict[str, Any]], None]
) -> None:
    """`workers=1`: one env and one policy in this process (its torch settings left alone)."""
    env = spec.make_env()
    try:
        pol = spec.make_policy(env.action_space)
        for index in todo:
            arrays = run_episode(env, spec.prep, pol, spec.seed, index)
            finished(write_shard(out, index, arrays))
    finally:
        env.close()


def _collect_on_ray(
    spec: RolloutSpec,
    out: Path,
    todo: list[int],
    address: str,
    in_flight: int | None,
    finished: Callable[[dict[str, Any]], None],
) -> None:
    """Episodes as Ray tasks; each returns its shard bytes, written here exactly as locally."""
    done: set[int] = set()

    def landed(index: int, result: tuple[bytes, dict[str, Any]]) -> None:
        data, entry = result
        if index in done:  # a retried task cannot land twice, but a dataset must never say so
            return
        if sha256_bytes(data) != entry["sha256"]:
            raise CorruptShardError(f"episode {index} arrived from Ray damaged (sha256 mismatch)")
        atomic_write_bytes(out / entry["file"], data)
        done.add(index)
        finished(entry)

    run_on_ray(address, CollectJob(spec), todo, landed, workers=in_flight)
