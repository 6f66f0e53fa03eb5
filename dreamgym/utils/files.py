"""Hashing and atomic writes: readers never see half a file, a crash leaves the old one.

Every file dreamgym writes (bundles, shards, manifests, checkpoints, controllers, reports) goes
through `atomic_write_bytes`: write a temp file in the same folder, fsync it, rename it over the
target, fsync the folder. One implementation, so every writer gets the same guarantees.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

TMP_SUFFIX = ".tmp"
"""Temp files end in this, so a folder scan can skip (and clean) what a crash left behind."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename in `directory` durable (a no-op where directories cannot be fsynced)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _temp_beside(path: Path):  # type: ignore[no-untyped-def]
    """A temp file name in `path`'s folder; renamed over `path` on success, removed on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; bundles and datasets are shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically (temp file, fsync, rename, fsync the folder)."""
    path = Path(path)
    with _temp_beside(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """`obj` as indented JSON (key order kept), written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def atomic_save_safetensors(
    tensors: dict[str, torch.Tensor],
    path: str | os.PathLike[str],
    metadata: dict[str, str] | None = None,
) -> None:
    """Tensors (moved to the CPU, made contiguous) as a safetensors file, written atomically;
    `metadata` (strings) goes into the file's header."""
    from safetensors.torch import save_file

    path = Path(path)
    with _temp_beside(path) as tmp:
        try:
            cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
            save_file(cpu, tmp, metadata=metadata)
        except OSError:
            raise
        except Exception as e:  # safetensors reports I/O failures (a full disk) as its own type
            raise OSError(_errno_of(str(e)), f"cannot write {path} ({e})", str(path)) from None


def _errno_of(message: str) -> int:
    """The errno a safetensors I/O message names (a full disk: ENOSPC), else EIO."""
    full = ("StorageFull", "os error 28", "code: 28", "No space left")
    return errno.ENOSPC if any(m in message for m in full) else errno.EIO


def describe_os_error(err: OSError) -> str:
    """One line for an OSError; a full disk says that re-running resumes from what was written."""
    text = " ".join(str(err).split())
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {err.filename}" if err.filename else ""
        return (
            f"the disk is full{where} ({text}); free some space and re-run the same command: "
            "it resumes from what was written"
        )
    return text
