"""`dreamgym demo`: the main job on the bundled worlds."""

from __future__ import annotations

from dreamgym.demo import DemoConfig, run_demo


def run(config: DemoConfig) -> int:
    """Run the job; print its summary; 0 on success."""
    result = run_demo(config)
    return result if isinstance(result, int) else 0
