"""Config dataclass fields that are also `--kebab-case` CLI options (see `dreamgym.cli`).

`option(default, help)` is `dataclasses.field(default=..., metadata={"help": ...})` in one line, so
each job's config reads as a list of its options, one per line, with their help beside them.
"""

from __future__ import annotations

from dataclasses import MISSING, field
from typing import Any


def option(default: Any = MISSING, help: str = "", **metadata: Any) -> Any:
    """A dataclass field with `help` (and any other CLI metadata: choices, const, ...)."""
    if default is MISSING:
        return field(metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})
