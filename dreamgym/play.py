"""`dreamgym play`: a person drives inside the dream with the keyboard.

Keys follow Gymnasium's CarRacing play script: ←/→ steer, ↑ gas, ↓ brake (0.8) for Box worlds;
←/→ for Doom's Discrete(3) (noop, left, right). `+`/`-` raise or lower the temperature τ live,
Enter restarts the episode, Esc quits. Frames are V's decodings of the dream's z.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from dreamgym.envs.single import DreamEnv
from dreamgym.options import DreamOptions
from dreamgym.rendering import _pygame
from dreamgym.utils.options import deprecated_aliases, option

TEMPERATURE_STEP = 0.05
BRAKE = 0.8  # as in gymnasium's car_racing.py play: 1.0 would lock the wheels


@deprecated_aliases
@dataclass(kw_only=True)
class PlayConfig(DreamOptions):
    """Options of `dreamgym play`: the dream's, and these."""

    world: str = option(help="bundled world name (carracing, doom_takecover) or a world directory")
    temperature: float | None = option(
        None, "initial sampling temperature τ (default: the world's)"
    )
    device: str = option("cpu", "device of the dream (one step at a time: the CPU is enough)")
    fps: int = option(30, "dream steps per second")
    seed: int | None = option(None, "seed of the first episode")
    max_episodes: int = option(0, "stop after this many episodes (0: until Esc)")


@dataclass
class PlayResult:
    """What one run of `dreamgym play` did."""

    returns: list[float] = field(default_factory=list)
    """Dream return of each finished episode."""
    lengths: list[int] = field(default_factory=list)
    """Steps of each finished episode."""
    steps: int = 0
    """Dream steps taken in all (finished episodes and the one left when Esc was pressed)."""
    temperature: float = 1.0
    """τ when play ended (after any +/- presses)."""


def keys_to_action(pressed: Any, pygame: Any, discrete: bool, n_actions: int = 3) -> Any:
    """Map the keyboard state to an action of the world's action space."""
    left, right = pressed[pygame.K_LEFT], pressed[pygame.K_RIGHT]
    if discrete:
        # TakeCover: 0 noop, 1 left, 2 right (scenario's button order: MOVE_LEFT, MOVE_RIGHT)
        return 1 if left and not right else (2 if right and not left else 0)
    a = np.zeros(3, dtype=np.float32)
    a[0] = -1.0 if left and not right else (1.0 if right and not left else 0.0)
    a[1] = 1.0 if pressed[pygame.K_UP] else 0.0
    a[2] = BRAKE if pressed[pygame.K_DOWN] else 0.0
    return a


def play(config: PlayConfig, echo: Callable[[str], None] | None = None) -> PlayResult:
    """Open a window and let a person drive in the dream until Esc (or max_episodes).

    `echo` receives the live messages (τ changes, each episode's return); `dreamgym play`
    passes `print`.
    """
    say = echo or (lambda _message: None)
    pygame = _pygame()
    env = DreamEnv(config.world, render_mode="human", settings=config.dream_settings())
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    clock = pygame.time.Clock()
    result = PlayResult(temperature=env.temperature)
    env.reset(seed=config.seed)
    ret, steps = 0.0, 0
    say(
        f"playing {env.world.name} at τ={env.temperature:.2f}: arrows to act, +/- temperature, "
        "Enter restart, Esc quit"
    )
    try:
        while True:
            for event in pygame.event.get():
                if event.type == pygame.QUIT or (
                    event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE
                ):
                    return result
                if event.type == pygame.KEYDOWN and event.key in (
                    pygame.K_PLUS,
                    pygame.K_EQUALS,
                    pygame.K_KP_PLUS,
                ):
                    env.temperature = env.temperature + TEMPERATURE_STEP
                    say(f"τ = {env.temperature:.2f}")
                if event.type == pygame.KEYDOWN and event.key in (
                    pygame.K_MINUS,
                    pygame.K_KP_MINUS,
                ):
                    env.temperature = max(TEMPERATURE_STEP, env.temperature - TEMPERATURE_STEP)
                    say(f"τ = {env.temperature:.2f}")
                result.temperature = env.temperature
                if event.type == pygame.KEYDOWN and event.key == pygame.K_RETURN:
                    env.reset()
                    ret, steps = 0.0, 0
            action = keys_to_action(pygame.key.get_pressed(), pygame, discrete)
            _, reward, terminated, truncated, _ = env.step(np.int64(action) if discrete else action)
            ret += reward
            steps += 1
            result.steps += 1
            if terminated or truncated:
                result.returns.append(ret)
                result.lengths.append(steps)
                say(f"episode {len(result.returns)}: dream return {ret:.1f} in {steps} steps")
                if config.max_episodes and len(result.returns) >= config.max_episodes:
                    return result
                env.reset()
                ret, steps = 0.0, 0
            clock.tick(config.fps)
    finally:
        env.close()
