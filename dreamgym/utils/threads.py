"""Thread settings, set in one place and always restored.

Real-env rollouts step one frame at a time: torch's default thread pool only spin-waits beside the
env, so those loops run on one torch thread (`torch_threads(1)`). Worker processes set it for
good (`set_worker_threads`); an in-process caller gets its own setting back afterwards.
numpy's OpenBLAS has its own pool: `single_threaded_blas()` runs a block on one BLAS thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` torch intra-op threads (None: leave as is), then restore."""
    import torch

    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def set_worker_threads(n: int = 1) -> None:
    """For a worker process that owns its whole life: `n` torch threads, not restored."""
    import torch

    torch.set_num_threads(max(1, int(n)))


def busy_cores() -> float:
    """The 1-minute load average (0 where the OS does not report one)."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # pragma: no cover - Windows
        return 0.0


_BLAS_THREADS: list[tuple[Any, Any]] | None = None
"""(get, set) thread-count functions of the OpenBLAS builds numpy loaded; found once."""


def _openblas_thread_controls() -> list[tuple[Any, Any]]:
    global _BLAS_THREADS
    if _BLAS_THREADS is None:
        _BLAS_THREADS = []
        try:
            with open("/proc/self/maps") as f:
                libs = {line.split()[-1] for line in f if "openblas" in line.lower()}
        except OSError:  # not Linux: leave BLAS alone
            libs = set()
        for lib_path in sorted(libs):
            try:
                lib = ctypes.CDLL(lib_path)
            except OSError:
                continue
            for prefix, suffix in (
                ("scipy_openblas", "64_"),
                ("openblas", "64_"),
                ("openblas", ""),
            ):
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if getter is not None and setter is not None:
                    _BLAS_THREADS.append((getter, setter))
                    break
    return _BLAS_THREADS


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run numpy's OpenBLAS on one thread inside the block (CMA-ES's N×N algebra).

    cma's eigendecomposition and matrix-vector products of the 867 × 867 covariance were 5×
    slower with OpenBLAS's default threads on a busy 2-core machine (threads spin-waiting for
    each other) than on one thread. The previous count is restored; no-op where not found.
    """
    controls = _openblas_thread_controls()
    before = [get() for get, _ in controls]
    for _, set_threads in controls:
        set_threads(1)
    try:
        yield
    finally:
        for (_, set_threads), n in zip(controls, before, strict=True):
            set_threads(n)
