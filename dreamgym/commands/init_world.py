"""`dreamgym init`: write an untrained world for a real env."""

from __future__ import annotations

from dreamgym.init_world import InitConfig, init_world


def run(config: InitConfig) -> int:
    """Write the bundle, say where it went; 0 on success."""
    out = init_world(config)
    print(f"wrote an untrained world for {config.env} to {out} (random V and M: dreams are noise)")
    return 0
