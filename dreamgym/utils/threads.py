"""Thread settings, set in one place and always restored.

Real-env rollouts step one frame at a time: torch's default thread pool only spin-waits beside the
env, so those loops run on one torch thread (`torch_threads(1)`). Worker processes set it for
good (`set_worker_threads`); an in-process caller gets its own setting back afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


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
