"""Config dataclass fields that are also `--kebab-case` CLI options (see `dreamgym.cli`).

`option(default, help)` is `dataclasses.field(default=..., metadata={"help": ...})` in one line, so
each job's config reads as a list of its options, one per line, with their help beside them.

A renamed option keeps its old spelling as a deprecated alias: `option(..., aliases=("old",))`
gives the CLI a `--old` that warns, and `@deprecated_aliases` on the dataclass lets
`Config(old=...)` and `config.old` keep working, with a `DeprecationWarning`.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from dataclasses import MISSING, field
from typing import Any, TypeVar

T = TypeVar("T")


def option(default: Any = MISSING, help: str = "", **metadata: Any) -> Any:
    """A dataclass field with `help` (and any other CLI metadata: choices, const, aliases...)."""
    if default is MISSING:
        return field(metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})


def renamed_fields(cls: type) -> dict[str, str]:
    """Old name → current name, for every alias of `cls`'s fields (`option(aliases=...)`)."""
    return {
        alias: f.name
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        for alias in f.metadata.get("aliases", ())
    }


def _warn_renamed(owner: str, old: str, new: str) -> None:
    warnings.warn(f"{owner}: {old} is deprecated, use {new}", DeprecationWarning, stacklevel=3)


def _alias_property(owner: str, old: str, new: str) -> property:
    def get(self: Any) -> Any:
        _warn_renamed(owner, old, new)
        return getattr(self, new)

    def set_(self: Any, value: Any) -> None:
        _warn_renamed(owner, old, new)
        setattr(self, new, value)

    return property(get, set_, doc=f"Deprecated alias of `{new}`.")


def deprecated_aliases(cls: type[T]) -> type[T]:
    """Let the old names of renamed fields keep working: `cls(old=...)` and `obj.old` warn
    (`DeprecationWarning`) and mean the new field. Apply above `@dataclass`."""
    renames = renamed_fields(cls)
    if not renames:
        return cls
    owner, init = cls.__name__, cls.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        for old, new in renames.items():
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{owner}: pass {new}= alone ({old}= is its old name)")
                _warn_renamed(owner, old, new)
                kwargs[new] = kwargs.pop(old)
        init(self, *args, **kwargs)

    cls.__init__ = __init__  # type: ignore[misc]
    for old, new in renames.items():
        setattr(cls, old, _alias_property(owner, old, new))
    return cls


TRUST_AGENT_HELP = (
    "load an SB3 agent (.zip) that dreamgym did not write on this machine: SB3 zips are pickles, "
    "so only with this flag (dreamgym reads just its weights, yet check where it came from)"
)
"""Help of `--trust-agent`, the opt-in of every job that takes `--policy`."""
