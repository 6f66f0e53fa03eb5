"""JSON files that carry a `schema_version`: read with one clear error for every failure.

Manifests, training progress, controller and agent sidecars all need the same three checks —
the file exists, it parses, its version is one this dreamgym reads — and the same kind of
message naming the file and the fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dreamgym.utils.files import atomic_write_json

VERSION_KEY = "schema_version"


def read_versioned_json(
    path: str | os.PathLike[str],
    what: str,
    versions: tuple[int, ...] | int,
    fix: str,
    error: type[Exception] = ValueError,
    missing: type[Exception] | None = None,
) -> dict[str, Any]:
    """The JSON object in `path`, whose `schema_version` is one of `versions`.

    `what` names the file's kind in messages ("dataset manifest"), `fix` says what to do. A
    missing file raises `missing` (default: `error`), anything else `error`.
    """
    path = Path(path)
    accepted = (versions,) if isinstance(versions, int) else tuple(versions)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise (missing or error)(f"{path} is missing: no {what} there; {fix}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{path} is not valid JSON ({e}): a damaged {what}; {fix}") from None
    if not isinstance(obj, dict):
        raise error(f"{path} does not hold a JSON object: not a {what}; {fix}")
    version = obj.get(VERSION_KEY)
    if version not in accepted:
        want = " or ".join(str(v) for v in accepted)
        raise error(
            f"{path} has {VERSION_KEY} {version!r}; this dreamgym reads {what}s of version "
            f"{want}; {fix}"
        )
    return obj


def write_versioned_json(path: str | os.PathLike[str], obj: dict[str, Any], version: int) -> None:
    """`obj` with `schema_version` first, written atomically."""
    atomic_write_json(
        path, {VERSION_KEY: version, **{k: v for k, v in obj.items() if k != VERSION_KEY}}
    )
