"""Registration: cheap `import dreamgym`, the three ids with both entry points, module-prefixed ids."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import dreamgym

IDS = ("DreamEnv-v0", "DreamCarRacing-v0", "DreamDoomTakeCover-v0")


def test_import_does_not_load_torch() -> None:
    code = "import dreamgym, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_import_registers_ids_without_torch() -> None:
    code = (
        "import sys, dreamgym, gymnasium as gym\n"
        f"missing = [i for i in {IDS!r} if i not in gym.registry]\n"
        "assert not missing, missing\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("env_id", IDS)
def test_ids_have_both_entry_points(env_id: str) -> None:
    spec = gym.spec(env_id)
    assert spec.entry_point == "dreamgym.envs.dream:DreamEnv"
    assert spec.vector_entry_point == "dreamgym.envs.dream:DreamVectorEnv"


def test_bundled_ids_name_their_worlds() -> None:
    assert gym.spec("DreamCarRacing-v0").kwargs["world"] == "carracing"
    assert gym.spec("DreamDoomTakeCover-v0").kwargs["world"] == "doom_takecover"
    assert gym.spec("DreamCarRacing-v0").max_episode_steps == 1000
    assert gym.spec("DreamDoomTakeCover-v0").max_episode_steps == 2100


def test_module_prefixed_make(box_world_dir: Path) -> None:
    env = gym.make("dreamgym:DreamEnv-v0", world=box_world_dir, device="cpu")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert (
        isinstance(reward, float) and isinstance(terminated, bool) and isinstance(truncated, bool)
    )
    env.close()
    venv = gym.make_vec(
        "dreamgym:DreamEnv-v0",
        num_envs=3,
        vectorization_mode="vector_entry_point",
        world=box_world_dir,
    )
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (3, *env.observation_space.shape)
    venv.step(np.zeros((3, 3), dtype=np.float32))


def test_make_vec_defaults_to_the_vector_entry_point(discrete_world_dir: Path) -> None:
    venv = gym.make_vec("DreamEnv-v0", num_envs=4, world=discrete_world_dir, device="cpu")
    assert type(venv).__name__ == "DreamVectorEnv"
    assert venv.spec is not None and venv.spec.id == "DreamEnv-v0"


def test_lazy_public_names() -> None:
    from dreamgym.envs.dream import DreamEnv, DreamVectorEnv
    from dreamgym.world import World

    assert dreamgym.World is World
    assert dreamgym.DreamEnv is DreamEnv and dreamgym.DreamVectorEnv is DreamVectorEnv
    with pytest.raises(AttributeError):
        dreamgym.no_such_name  # noqa: B018
