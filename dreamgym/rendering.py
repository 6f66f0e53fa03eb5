"""A pygame window for `render_mode="human"` and `dreamgym play` (pygame comes with gymnasium[box2d])."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.error import DependencyNotInstalled

WINDOW_SCALE = 8
"""64×64 dream frames are shown at 512×512."""


def _pygame() -> Any:
    try:
        import pygame
    except ImportError as e:  # pragma: no cover - depends on the install
        raise DependencyNotInstalled(
            'pygame is needed for render_mode="human": pip install "gymnasium[box2d]"'
        ) from e
    return pygame


def show_frame(
    window: Any, frame: np.ndarray, caption: str = "dreamgym", scale: int = WINDOW_SCALE
) -> Any:
    """Draw an H×W×3 uint8 frame, opening the window on first use; returns the window state."""
    pygame = _pygame()
    h, w = frame.shape[:2]
    if window is None:
        pygame.init()
        pygame.display.init()
        screen = pygame.display.set_mode((w * scale, h * scale))
        window = {"screen": screen, "clock": pygame.time.Clock()}
    pygame.display.set_caption(caption)
    surf = pygame.surfarray.make_surface(np.transpose(frame, (1, 0, 2)))
    surf = pygame.transform.scale(surf, window["screen"].get_size())
    window["screen"].blit(surf, (0, 0))
    pygame.event.pump()
    pygame.display.flip()
    return window


def close_window(window: Any) -> None:
    pygame = _pygame()
    pygame.display.quit()
    pygame.quit()
