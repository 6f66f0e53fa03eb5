"""dreamgym: learned world models (Ha & Schmidhuber 2018, "World Models") as Gymnasium envs.

`import dreamgym` registers the environment ids below and loads nothing heavy: torch and the
weights are imported only when an env is made or a name below is used.

- `DreamEnv-v0`: any saved world (`world=` a bundle directory or a bundled name)
- `DreamCarRacing-v0`: the bundled world learned from `CarRacing-v3`
- `DreamDoomTakeCover-v0`: the bundled world learned from `VizdoomTakeCover-v1`
"""

from __future__ import annotations

import importlib
from typing import Any

from gymnasium.envs.registration import register, registry

from dreamgym.envs.real import default_step_limit  # gymnasium only: cheap

__version__ = "0.1.0"

_ENTRY = "dreamgym.envs.dream:DreamEnv"
_VECTOR_ENTRY = "dreamgym.envs.dream:DreamVectorEnv"

# (id, kwargs, step limit of the real env the world was learned from: CarRacing-v3's own 1,000,
# the paper's 2,100 for TakeCover)
_ENV_IDS: tuple[tuple[str, dict[str, Any], int | None], ...] = (
    ("DreamEnv-v0", {}, None),
    ("DreamCarRacing-v0", {"world": "carracing"}, default_step_limit("CarRacing-v3")),
    (
        "DreamDoomTakeCover-v0",
        {"world": "doom_takecover"},
        default_step_limit("VizdoomTakeCover-v1"),
    ),
)

for _id, _kwargs, _limit in _ENV_IDS:
    if _id not in registry:
        register(
            id=_id,
            entry_point=_ENTRY,
            vector_entry_point=_VECTOR_ENTRY,
            kwargs=_kwargs,
            max_episode_steps=_limit,
        )

_LAZY = {
    "World": "dreamgym.world",
    "DreamEnv": "dreamgym.envs.dream",
    "DreamVectorEnv": "dreamgym.envs.dream",
    "wrappers": "dreamgym.wrappers",
    "controllers": "dreamgym.controllers",
    "sb3": "dreamgym.sb3",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = module if module.__name__.endswith(name) else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dreamgym' has no attribute {name!r}")
