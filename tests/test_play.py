"""`dreamgym play` and render_mode="human" run headless (SDL's dummy video driver)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dreamgym.envs.single
from dreamgym.cli import main as cli_main
from dreamgym.envs.dream import DreamEnv
from dreamgym.play import TEMPERATURE_STEP, PlayConfig, play


def test_play_runs_an_episode_headless(
    make_tiny_world, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    world = make_tiny_world(tmp_path, discrete=False, done_logit=30.0)  # every episode ends at once
    assert cli_main(["play", "--world", str(world), "--max-episodes", "2", "--fps", "1000"]) == 0
    out = capsys.readouterr().out
    assert "episode 1: dream return" in out and "episode 2: dream return" in out
    assert "in 1 steps" in out and "episode 3" not in out


def test_play_steps_shows_frames_and_keys_change_the_temperature(
    make_tiny_world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pygame = pytest.importorskip("pygame")
    world = make_tiny_world(tmp_path, discrete=False, done_logit=30.0)  # every episode ends at once
    shown: list[np.ndarray] = []
    real_show = dreamgym.envs.single.show_frame

    def counting_show(window, frame, **kwargs):  # type: ignore[no-untyped-def]
        shown.append(frame)
        return real_show(window, frame, **kwargs)

    monkeypatch.setattr(dreamgym.envs.single, "show_frame", counting_show)
    pygame.init()  # the event queue needs pygame up; play's window reuses it
    for key in (pygame.K_PLUS, pygame.K_PLUS, pygame.K_MINUS):
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode=""))
    messages: list[str] = []
    result = play(
        PlayConfig(world=str(world), temperature=1.0, max_episodes=3, fps=1000),
        echo=messages.append,
    )
    assert result.lengths == [1, 1, 1] and result.steps == 3 and len(result.returns) == 3
    assert result.temperature == pytest.approx(1.0 + TEMPERATURE_STEP)  # +, +, -
    assert [m for m in messages if m.startswith("τ")] == ["τ = 1.05", "τ = 1.10", "τ = 1.05"]
    # a frame per reset (the first and two restarts) and per step, each V's 64×64×3 decoding
    assert len(shown) == 6 and all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in shown)


def test_human_render_opens_a_window(discrete_world_dir: Path) -> None:
    env = DreamEnv(discrete_world_dir, render_mode="human", device="cpu")
    env.reset(seed=0)
    obs, *_ = env.step(np.int64(1))
    assert env._window is not None and obs.shape == env.observation_space.shape
    env.close()
    assert env._window is None
