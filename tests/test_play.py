"""`dreamgym play` and render_mode="human" run headless (SDL's dummy video driver)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dreamgym.cli import main as cli_main
from dreamgym.envs.dream import DreamEnv


def test_play_runs_an_episode_headless(make_tiny_world, tmp_path: Path) -> None:
    world = make_tiny_world(tmp_path, discrete=False, done_logit=30.0)  # every episode ends at once
    assert cli_main(["play", "--world", str(world), "--max-episodes", "2", "--fps", "1000"]) == 0


def test_human_render_opens_a_window(discrete_world_dir: Path) -> None:
    env = DreamEnv(discrete_world_dir, render_mode="human", device="cpu")
    env.reset(seed=0)
    obs, *_ = env.step(np.int64(1))
    assert env._window is not None and obs.shape == env.observation_space.shape
    env.close()
    assert env._window is None
