"""Advisory file locks (POSIX flock): one writer per dataset or training folder.

Without `fcntl` (Windows) the lock is a no-op: two runs into one folder are then not prevented.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class FolderBusyError(RuntimeError):
    """Another dreamgym process holds the lock on this folder; the message names it and the fix."""


@contextlib.contextmanager
def file_lock(
    path: str | os.PathLike[str], message: str, exclusive: bool = True, wait_s: float = 0.0
) -> Iterator[None]:
    """Hold a flock on `path` (created if missing); after `wait_s` seconds raise FolderBusyError(message)."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
                    raise FolderBusyError(message) from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # releases the lock
