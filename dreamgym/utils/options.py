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


TRUST_AGENT_HELP = (
    "load an SB3 agent (.zip) that dreamgym did not write on this machine: SB3 zips are pickles, "
    "so only with this flag (dreamgym reads just its weights, yet check where it came from)"
)
"""Help of `--trust-agent`, the opt-in of every job that takes `--policy`."""
