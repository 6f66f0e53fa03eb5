"""`dreamgym play`: drive inside the dream with the keyboard."""

from __future__ import annotations

from dreamgym.play import PlayConfig, play


def run(config: PlayConfig) -> int:
    """Run `play`, printing its live messages; 0 when the person quits or it ends."""
    play(config, echo=print)
    return 0
