"""Real episodes as Ray tasks: `--ray [ADDRESS]` of collect, evaluate, gap and diagnose.

Each episode is one task (`max_retries=TASK_RETRIES`: a worker killed mid-episode has its episode
computed again). A task returns its result — for `collect`, the episode's shard bytes and its
manifest entry — to the driver through Ray's object store; the driver alone writes files, so a
cluster needs no shared file system and a dataset made on one is byte-identical to one made
locally. Every worker process sets its job up once (env, policy) and keeps it for the next task
of the same job, so a task costs what an episode costs.

Addresses: "local" (`--ray` alone) joins the Ray this process already runs, or RAY_ADDRESS, or
starts a private one on 127.0.0.1 for the command; "auto" joins the cluster started on this
machine with `ray start`; "HOST:PORT" (or "ray://HOST:PORT") joins that cluster.

Ray is imported only here, and only when a command runs with `--ray`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from dreamgym.runners.errors import ClusterError, WorkerSetupError, setup_error

LOCAL = "local"
"""`--ray` without a value: this process's Ray, RAY_ADDRESS, or a private local one."""
RAY_EXTRA = 'pip install "dreamgym[ray]"'
TASK_RETRIES = 3
"""Times an episode is computed again when its worker process or node dies mid-episode."""
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
"""Set (unless already set) before Ray is imported to start a private local Ray or to join one
at 127.0.0.1: with it Ray 2.60 takes 127.0.0.1 as this node's address, so nothing it starts
listens on or connects to another interface.
(`ray start --head` on a loopback-only machine needs it too, and RAY_AUTH_MODE=disabled or
Ray's generated token; see the README.)"""
NODE_FIX = (
    "; install there what this machine has (the same Python packages and dreamgym extras, e.g. "
    'pip install "dreamgym[doom,ray]"), or take that node out of the cluster (ray stop on it)'
)
_ADDRESS_RE = re.compile(r"^(ray://)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.\-]+):\d{1,5}$")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class RayNotInstalledError(ValueError):
    """`--ray` was given but Ray is not installed (names the extra)."""


class EpisodeJob(Protocol):
    """What a Ray worker runs: set up once per process, then one episode per task (must pickle).

    `what` completes "could not …" in the error of a worker that fails in `setup`.
    """

    what: str

    def setup(self) -> Any: ...

    def episode(self, state: Any, index: int) -> Any: ...

    def close(self, state: Any) -> None: ...


def check_ray_address(address: str | None) -> str | None:
    """The address, checked: None, "local", "auto", "HOST:PORT" or "ray://HOST:PORT"."""
    if address is None or address in (LOCAL, "auto") or _ADDRESS_RE.match(address):
        return address
    raise ValueError(
        f"--ray {address!r} is not a Ray address; pass --ray alone (a local Ray), --ray auto "
        "(the cluster started on this machine with ray start) or --ray HOST:PORT"
    )


def import_ray(local_start: bool = False) -> Any:
    """Ray, or RayNotInstalledError naming the extra. `local_start`: apply LOOPBACK_ENV first
    (it only acts if Ray is not imported yet: Ray reads it once)."""
    if local_start and "ray" not in sys.modules:
        for key, value in LOOPBACK_ENV.items():
            os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError:
        raise RayNotInstalledError(
            f"--ray needs Ray, which is not installed: {RAY_EXTRA} (or run without --ray)"
        ) from None
    return ray


@contextlib.contextmanager
def ray_connection(address: str, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray, connected to `address` for the block; shut down after it only if started here."""
    check_ray_address(address)
    private = address == LOCAL and not os.environ.get("RAY_ADDRESS")
    host = "" if address in (LOCAL, "auto") else address.removeprefix("ray://").rsplit(":", 1)[0]
    # A head on 127.0.0.1 is a one-machine cluster: a driver joining it must also take 127.0.0.1
    # as its own address (without LOOPBACK_ENV, Ray 2.60's ray.init hangs connecting to it).
    ray = import_ray(local_start=private or host in _LOOPBACK_HOSTS)
    if ray.is_initialized():  # a caller (a script, a test) runs Ray already: use it as it is
        yield ray
        return
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if private:
        ray.init(
            address="local",
            _node_ip_address="127.0.0.1",
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            **quiet,
        )
    else:
        if host in _LOOPBACK_HOSTS:
            quiet["_node_ip_address"] = "127.0.0.1"
        ray.init(address=None if address == LOCAL else address, **quiet)
    try:
        yield ray
    finally:
        ray.shutdown()


def run_on_ray(
    address: str,
    job: EpisodeJob,
    indices: Sequence[int],
    on_result: Callable[[int, Any], None],
    workers: int | None = None,
) -> None:
    """Run `job.episode` for every index as a Ray task; `on_result(index, result)` as each lands.

    At most `workers` episodes are in flight (default: twice the cluster's CPUs, so every CPU
    has its next task queued while the driver handles a result). A worker that cannot set up
    raises WorkerSetupError (naming its node) once; the other tasks end with the job.
    """
    with ray_connection(address, num_cpus=workers) as ray:
        task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(_episode_task)
        key = uuid.uuid4().hex  # a new job: each worker process sets it up afresh
        job_ref = ray.put(job)
        window = workers or max(2, int(2 * ray.cluster_resources().get("CPU", 1)))
        todo = list(indices)[::-1]
        pending: dict[Any, int] = {}
        # On an error the tasks still pending end with this driver's job (`ray_connection`
        # shuts it down). No `ray.cancel`: cancelling a task whose result is landing at that
        # moment trips a RAY_CHECK that kills the driver (ray-project/ray#54798; seen here as
        # pytest dying in the worker-setup-error test, where every task fails at once).
        try:
            while todo or pending:
                while todo and len(pending) < window:
                    index = todo.pop()
                    pending[task.remote(key, job_ref, index)] = index
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    index = pending.pop(ref)
                    on_result(index, _result(ray, ref, index))
        except ray.exceptions.RayError as e:  # the cluster itself (ray.wait, task.remote)
            raise ClusterError(
                f"the Ray cluster at {address} failed ({type(e).__name__}: {_first_line(e)}); "
                "check it (`ray status`), then re-run to resume"
            ) from None


def _result(ray: Any, ref: Any, index: int) -> Any:
    """The task's value; its failure as the one error that explains it."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, WorkerSetupError):
            raise WorkerSetupError(str(e.cause)) from None
        raise RuntimeError(f"episode {index} failed in its Ray task:\n{e}") from None
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as e:
        raise ClusterError(
            f"episode {index}: its Ray worker died {TASK_RETRIES + 1} times "
            f"({type(e).__name__}); check the nodes' memory and logs, then re-run to resume"
        ) from None
    except ray.exceptions.RayError as e:  # the object, its owner or the cluster is gone
        raise ClusterError(
            f"episode {index}: the Ray cluster failed ({type(e).__name__}: {_first_line(e)}); "
            "check it (`ray status`), then re-run to resume"
        ) from None


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


_CACHE: dict[str, Any] = {}
"""This worker process's current job: {"key", "job", "state"}."""


def _node_name() -> str:
    """This Ray worker's node, as an error message names it."""
    try:
        import ray

        ip = ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - only for a message
        ip = "?"
    return f"Ray node {ip} ({socket.gethostname()})"


def _episode_task(key: str, job: EpisodeJob, index: int) -> Any:
    """One episode in a Ray worker process, with the job set up once per process."""
    if _CACHE.get("key") != key:
        old = _CACHE.pop("state", None)
        if old is not None:
            with contextlib.suppress(Exception):
                _CACHE["job"].close(old)
        _CACHE.clear()
        try:
            state = job.setup()
        except Exception as e:  # one clear error for the driver, not a traceback per task
            raise setup_error(_node_name(), job.what, e, NODE_FIX) from None
        _CACHE.update(key=key, job=job, state=state)
    return job.episode(_CACHE["state"], index)
