"""The worker pool of `collect`: spawned processes that compute episodes by index.

Episodes are handed out by index through a queue, so the dataset does not depend on which worker
computes which episode. Each worker writes its shards itself and reports their manifest entries;
the collecting process alone writes the manifest. Workers hold WORKERS_LOCK_NAME (shared) and
stop when the collecting process dies, so a resumed collection can wait for orphans to exit.
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
from dreamgym.data.shards import write_shard
from dreamgym.utils.locks import file_lock
from dreamgym.utils.threads import set_worker_threads

WORKERS_LOCK_NAME = ".collect-workers.lock"
"""Held (shared) by worker processes: a resumed collection waits until orphaned workers exit."""


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
            env = spec.make_env()
            try:
                pol = spec.make_policy(env.action_space)
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
    except BaseException:  # report, so the parent can stop with the worker's traceback
        results.put(("error", index, traceback.format_exc()))


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
