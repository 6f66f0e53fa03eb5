"""`dreamgym init` end to end: an untrained world for a real env that make_vec can step."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from dreamgym import cli
from dreamgym.envs.dream import DreamVectorEnv
from dreamgym.world import World


def _init_and_step(env_id: str, out: Path, extra: list[str]) -> DreamVectorEnv:
    assert cli.main(["init", "--env", env_id, "--out", str(out), *extra]) == 0
    world = World.load(out)
    assert world.env_id == env_id
    assert world.config["provenance"]["kind"] == "untrained"
    assert (out / "MODEL_CARD.md").read_text().count("Untrained") == 1
    venv = gym.make_vec(
        "DreamEnv-v0", num_envs=8, vectorization_mode="vector_entry_point", world=out, device="cpu"
    )
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (8, world.latent_dim + world.hidden_dim)
    for _ in range(5):
        obs, reward, terminated, truncated, _ = venv.step(venv.action_space.sample())
        assert obs.shape == (8, world.latent_dim + world.hidden_dim) and reward.shape == (8,)
    return venv


def test_init_carracing(tmp_path: Path) -> None:
    out = tmp_path / "carracing"
    venv = _init_and_step(
        "CarRacing-v3", out, ["--latent", "8", "--hidden", "32", "--initial-resets", "2"]
    )
    assert venv.single_action_space.shape == (3,)
    assert np.allclose(venv.single_action_space.low, [-1, 0, 0])
    assert venv.max_episode_steps == 1000  # CarRacing-v3's limit
    assert World.load(out).preprocessing.crop == (0, 84, 0, 96)  # the dashboard is cropped away


def test_init_default_sizes_are_the_papers(tmp_path: Path) -> None:
    out = tmp_path / "carracing"
    _init_and_step("CarRacing-v3", out, ["--initial-resets", "1"])
    world = World.load(out)
    assert (world.latent_dim, world.hidden_dim, world.mdnrnn.config.n_mixtures) == (32, 256, 5)


def test_init_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "w"
    args = ["init", "--env", "CarRacing-v3", "--out", str(out), "--latent", "4", "--hidden", "8"]
    assert cli.main([*args, "--initial-resets", "1"]) == 0
    assert cli.main([*args, "--initial-resets", "1"]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli.main([*args, "--initial-resets", "1", "--force"]) == 0


def test_init_vizdoom_takecover(tmp_path: Path) -> None:
    pytest.importorskip(
        "vizdoom", reason="VizdoomTakeCover-v1 needs vizdoom (pip install 'dreamgym[doom]')"
    )
    out = tmp_path / "takecover"
    venv = _init_and_step(
        "VizdoomTakeCover-v1", out, ["--latent", "8", "--hidden", "32", "--initial-resets", "2"]
    )
    assert venv.single_action_space == gym.spaces.Discrete(3)
    assert venv.max_episode_steps == 2100  # the paper's cap; the scenario has none
    assert World.load(out).preprocessing.image_key == "screen"
