"""`dreamgym init`: write an untrained world for a real env."""

from __future__ import annotations

from dreamgym.init_world import InitConfig, init_world


def run(config: InitConfig) -> int:
    """Run the job; print its summary; 0 on success."""
    result = init_world(config)
    return result if isinstance(result, int) else 0
