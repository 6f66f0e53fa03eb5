"""Where real episodes run: the process pools of `data.workers` and `evaluation.real`, or Ray.

- `errors`: `WorkerSetupError`, the one clear error a user sees when a worker (a process of the
  pool, or a Ray task on some node) cannot make its env or load its policy.
- `ray_backend`: `run_on_ray(address, job, indices, on_result)` — each episode a Ray task, its
  result returned to the driver through Ray's object store. Ray itself is imported only there,
  and only when `--ray` is used (`pip install "dreamgym[ray]"`).

Imports only `dreamgym.utils`: `data` and `evaluation` sit above it.
"""

from __future__ import annotations

from dreamgym.runners.errors import WorkerSetupError, setup_error
from dreamgym.runners.ray_backend import (
    LOCAL,
    LOOPBACK_ENV,
    RAY_EXTRA,
    TASK_RETRIES,
    EpisodeJob,
    RayNotInstalledError,
    check_ray_address,
    run_on_ray,
)

__all__ = [
    "LOCAL",
    "LOOPBACK_ENV",
    "RAY_EXTRA",
    "TASK_RETRIES",
    "EpisodeJob",
    "RayNotInstalledError",
    "WorkerSetupError",
    "check_ray_address",
    "run_on_ray",
    "setup_error",
]
