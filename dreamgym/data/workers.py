"""The worker pool of `collect`: spawned processes that compute episodes by index.

Episodes are handed out by index through a queue, so the dataset does not depend on which worker
computes which episode. Each worker writes its shards itself and reports their manifest entries;
the collecting process alone writes the manifest. Workers hold WORKERS_LOCK_NAME (shared) and
stop when the collecting process dies, so a resumed collection can wait for orphans to exit.
A worker that cannot make its env or policy reports a `WorkerSetupError`, raised as it is.

`CollectJob` is the same work as Ray tasks (`runners.run_on_ray`): a task returns the shard's
bytes and entry, and the collecting process writes them.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dreamgym.data.rollout import ParentGone, RolloutSpec, run_episode
from dreamgym.data.shards import SHARD_TEMPLATE, npz_bytes, shard_entry, write_shard
from dreamgym.runners.errors import WorkerSetupError, setup_error
from dreamgym.utils.files import sha256_bytes
from dreamgym.utils.locks import file_lock
from dreamgym.utils.threads import set_worker_threads

WORKERS_LOCK_NAME = ".collect-workers.lock"
"""Held (shared) by worker processes: a resumed collection waits until orphaned workers exit."""
WORKER_EXIT_S = 10.0
"""How long a finished collection waits for each worker to close its env and exit by itself."""


def _worker(spec: RolloutSpec, out: str, tasks: Any, results: Any) -> None:
    """Worker process: compute episodes by index from `tasks`, write shards, report entries."""
    parent = mp.parent_process()

    def alive() -> bool:
        return parent is None or parent.is_alive()

    if "torch" in sys.modules:  # a policy that acts through torch (unpickling it imported torch)
        # One frame per step: extra torch threads only spin-wait beside the env. Measured with 2
        # workers on 2 cores: 16 steps/s per worker at torch's default, ~200 at 1.
        set_worker_threads(1)
    out_dir = Path(out)
    index = -1
    try:
        with file_lock(out_dir / WORKERS_LOCK_NAME, "worker could not take its lock", False, 10.0):
            env, pol = _setup(spec, f"collect worker process {mp.current_process().name}")
            try:
                while alive():
                    try:
                        index = tasks.get(timeout=1.0)
                    except queue.Empty:
                        continue
                    if index is None:
                        break
                    arrays = run_episode(env, spec.prep, pol, spec.seed, index, alive)
                    if not alive():
                        break
                    results.put(("done", index, write_shard(out_dir, index, arrays)))
            finally:
                env.close()
    except ParentGone:
        return
    except WorkerSetupError as e:  # the one clear error, raised as it is by the parent
        results.put(("setup", index, str(e)))
    except BaseException:  # report, so the parent can stop with the worker's traceback
        results.put(("error", index, traceback.format_exc()))


def _setup(spec: RolloutSpec, where: str) -> tuple[Any, Any]:
    """The env and the policy of a worker; WorkerSetupError (naming `where`) if either fails."""
    try:
        env = spec.make_env()
    except Exception as e:
        raise setup_error(where, f"make the env {spec.env_id}", e) from None
    try:
        return env, spec.make_policy(env.action_space)
    except Exception as e:
        env.close()
        raise setup_error(where, f"load its policy for {spec.env_id}", e) from None


def run_workers(
    spec: RolloutSpec,
    out: Path,
    todo: list[int],
    workers: int,
    finished: Callable[[dict[str, Any]], None],
) -> None:
    """Compute episodes `todo` in `workers` spawned processes; `finished(entry)` as each lands."""
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
            args=(spec, str(out), tasks, results),
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
            if kind == "setup":
                raise WorkerSetupError(payload)
            if kind == "error":
                raise RuntimeError(f"collect worker failed on episode {index}:\n{payload}")
            remaining.discard(index)
            finished(payload)
    finally:
        if not remaining:  # every worker has its stop sentinel: let it close its env and exit
            for p in procs:  # (a terminated worker leaves e.g. ViZDoom's game process behind)
                p.join(timeout=WORKER_EXIT_S)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=10)
        tasks.cancel_join_thread()
        results.cancel_join_thread()


class CollectJob:
    """The episodes of one collection as Ray tasks (`runners.EpisodeJob`).

    A task returns (shard bytes, manifest entry): the bytes `write_shard` would write, compressed
    on the worker, so the collecting process only writes them.
    """

    def __init__(self, spec: RolloutSpec) -> None:
        self.spec = spec
        self.what = f"make the env {spec.env_id} and its policy"

    def setup(self) -> tuple[Any, Any]:
        env = self.spec.make_env()  # a failure here: runners names the node and the fix
        try:
            pol = self.spec.make_policy(env.action_space)
        except BaseException:
            env.close()
            raise
        if "torch" in sys.modules:  # see _worker: one torch thread beside the env
            set_worker_threads(1)
        return env, pol

    def episode(self, state: tuple[Any, Any], index: int) -> tuple[bytes, dict[str, Any]]:
        env, pol = state
        arrays = run_episode(env, self.spec.prep, pol, self.spec.seed, index)
        data = npz_bytes(arrays)
        name = SHARD_TEMPLATE.format(index=index)
        return data, shard_entry(index, name, arrays, sha256_bytes(data))

    def close(self, state: tuple[Any, Any]) -> None:
        state[0].close()
