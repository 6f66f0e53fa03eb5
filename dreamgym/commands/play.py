"""`dreamgym play`: drive inside the dream with the keyboard."""

from __future__ import annotations

from dreamgym.play import PlayConfig, play


def run(config: PlayConfig) -> int:
    """Run the job; print its summary; 0 on success."""
    result = play(config)
    return result if isinstance(result, int) else 0
