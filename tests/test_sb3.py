"""DreamVecEnv (SB3's VecEnv over the batched core), training, saving and loading SB3 agents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import build_tiny_world
from gymnasium.vector import AutoresetMode
from stable_baselines3 import A2C, PPO, SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import check_for_correct_spaces
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from dreamgym.cli import main as cli_main
from dreamgym.envs.dream import DreamVectorEnv, observation_space_for
from dreamgym.policies import Policy
from dreamgym.sb3 import (
    DreamVecEnv,
    SB3Config,
    agent_paths,
    load_sb3_policy,
    save_agent,
    train_agent,
    world_sha256,
)
from dreamgym.world import World
from dreamgym.wrappers import make_real

SMALL_PPO = '{"n_steps": 16, "batch_size": 64}'


def box_env(n: int = 4, **kw: Any) -> DreamVecEnv:
    world_kw = {k: kw.pop(k) for k in ("done_logit", "max_episode_steps") if k in kw}
    return DreamVecEnv(build_tiny_world(False, **world_kw), num_envs=n, device="cpu", **kw)


def random_actions(env: VecEnv, rng: np.random.Generator) -> np.ndarray:
    space = env.action_space
    if hasattr(space, "n"):
        return rng.integers(0, int(space.n), size=env.num_envs)
    return rng.uniform(space.low, space.high, size=(env.num_envs, *space.shape)).astype(np.float32)


@pytest.mark.parametrize("obs_mode", ["zh", "z", "pixels"])
def test_spaces_and_api(obs_mode: str) -> None:
    env = box_env(n=3, obs_mode=obs_mode, render_mode="rgb_array")
    assert isinstance(env, VecEnv) and env.num_envs == 3
    check_for_correct_spaces(
        env, observation_space_for(env.world, obs_mode), env.world.action_space
    )
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs = env.reset()
    assert (
        obs.shape == (3, *env.observation_space.shape) and obs.dtype == env.observation_space.dtype
    )
    obs, rewards, dones, infos = env.step(random_actions(env, np.random.default_rng(0)))
    assert obs.shape[0] == rewards.shape[0] == dones.shape[0] == len(infos) == 3
    assert rewards.dtype == np.float32 and dones.dtype == np.bool_
    assert all("TimeLimit.truncated" in i for i in infos)
    assert env.get_attr("obs_mode") == [obs_mode] * 3 and env.get_attr("num_envs", 1) == [3]
    assert env.has_attr("temperature") and not env.has_attr("no_such_attribute")
    env.set_attr("temperature", 1.3)
    assert env.temperature == 1.3
    with pytest.raises(ValueError, match="indices=None"):
        env.set_attr("temperature", 1.0, indices=[0])
    assert env.env_is_wrapped(VecMonitor) == [False] * 3
    assert len(env.env_method("render_tensors", indices=[0, 2])) == 2
    images = env.get_images()
    assert len(images) == 3 and images[0].shape == (64, 64, 3)
    assert env.render().shape[2] == 3  # tiled by SB3's VecEnv.render


def test_actions_are_validated_at_the_boundary() -> None:
    env = box_env(n=2)
    env.reset()
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        env.step(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.full((2, 3), np.nan, np.float32))
    env = DreamVecEnv(build_tiny_world(True), num_envs=2, device="cpu")
    env.reset()
    with pytest.raises(ValueError, match="integer"):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        env.step(np.array([0, 3]))
    with pytest.raises(RuntimeError, match="step_async"):
        env.step_wait()


def test_terminal_observation_on_termination() -> None:
    # Done head at +30: every env terminates at its first step and is reset in the same step.
    env = box_env(n=4, done_logit=30.0, seed=5)
    reference = DreamVectorEnv(env.world, num_envs=4, device="cpu", autoreset_mode="NextStep")
    env.reset()
    reference.reset(seed=5)
    actions = random_actions(env, np.random.default_rng(1))
    obs, _, dones, infos = env.step(actions)
    ref_obs, _, ref_term, _, _ = reference.step(actions)
    assert dones.all() and ref_term.all()
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is False
        # The terminal observation is the step's result before the reset (NEXT_STEP shows it as obs).
        np.testing.assert_array_equal(info["terminal_observation"], ref_obs[i])
    latent = env.world.latent_dim
    np.testing.assert_array_equal(obs[:, latent:], 0.0)  # after the reset h_0 = 0
    assert not np.array_equal(obs, ref_obs)


def test_truncation_sets_timelimit_truncated() -> None:
    env = box_env(n=3, done_logit=-30.0, max_episode_steps=3, seed=2)
    reference = DreamVectorEnv(env.world, num_envs=3, device="cpu", autoreset_mode="NextStep")
    env.reset()
    reference.reset(seed=2)
    rng = np.random.default_rng(0)
    for t in range(1, 4):
        actions = random_actions(env, rng)
        _, _, dones, infos = env.step(actions)
        ref_obs, *_ = reference.step(actions)
        assert dones.all() == (t == 3)
    assert all(i["TimeLimit.truncated"] is True for i in infos)
    for i, info in enumerate(infos):
        np.testing.assert_array_equal(info["terminal_observation"], ref_obs[i])
    _, _, dones, infos = env.step(random_actions(env, rng))
    assert not dones.any() and "terminal_observation" not in infos[0]


def rollout(env: DreamVecEnv, steps: int = 30) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = [env.reset()]
    for _ in range(steps):
        obs, rew, dones, infos = env.step(random_actions(env, rng))
        out += [obs, rew, dones]
        out += [i["terminal_observation"] for i in infos if "terminal_observation" in i]
    return out


def test_same_seed_same_trajectories() -> None:
    world = build_tiny_world(True, max_episode_steps=7)
    a = rollout(DreamVecEnv(world, num_envs=4, device="cpu", seed=11))
    b = rollout(DreamVecEnv(world, num_envs=4, device="cpu", seed=11))
    c = rollout(DreamVecEnv(world, num_envs=4, device="cpu", seed=12))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=False))
    # SB3's seed(): per-env seeds s + i, used by the next reset only.
    env = DreamVecEnv(world, num_envs=4, device="cpu")
    assert list(env.seed(11)) == [11, 12, 13, 14]
    d = rollout(env)
    assert all(np.array_equal(x, y) for x, y in zip(a, d, strict=True))
    assert env._seeds == [None] * 4


def _weights(module: torch.nn.Module) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector(module.parameters()).detach().clone()


def _learns(model: Any, steps: int, *parts: str) -> None:
    """`model.learn(steps)` takes gradient steps: every network in `parts` has new weights."""
    before = {part: _weights(getattr(model, part)) for part in parts}
    model.learn(steps)
    assert model.num_timesteps >= steps
    for part, weights in before.items():
        after = _weights(getattr(model, part))
        assert torch.isfinite(after).all()
        assert not torch.equal(after, weights), f"{type(model).__name__}.{part} did not change"


def test_sb3_algorithms_learn_in_the_dream() -> None:
    torch.manual_seed(0)
    box = box_env(n=4, max_episode_steps=20, seed=0)
    _learns(PPO("MlpPolicy", box, n_steps=32, batch_size=64, seed=0, device="cpu"), 256, "policy")
    sac = SAC("MlpPolicy", box, learning_starts=16, buffer_size=1_000, seed=0, device="cpu")
    _learns(sac, 100, "actor", "critic")
    discrete = DreamVecEnv(
        build_tiny_world(True, max_episode_steps=20), num_envs=4, device="cpu", seed=0
    )
    _learns(A2C("MlpPolicy", discrete, seed=0, device="cpu"), 100, "policy")
    model = PPO("MlpPolicy", VecMonitor(discrete), n_steps=32, batch_size=64, seed=0, device="cpu")
    _learns(model, 256, "policy")
    assert model.num_timesteps >= 256 and len(model.ep_info_buffer) > 0  # episodes of ≤ 20 steps


@pytest.fixture(scope="module")
def car_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CarRacing world with the real preprocessing, saved (for real-env transfer)."""
    from test_wrappers import real_tiny_world

    return real_tiny_world("CarRacing-v3").save(tmp_path_factory.mktemp("worlds") / "car")


def test_train_agent_writes_zip_and_sidecar(tmp_path: Path, car_world_dir: Path) -> None:
    out = tmp_path / "agents" / "ppo"
    config = SB3Config(
        world=str(car_world_dir), out=str(out), steps=128, num_envs=4, seed=3, algo_kwargs=SMALL_PPO
    )
    zip_path = train_agent(config)
    assert zip_path == out.with_suffix(".zip") and zip_path.is_file()
    meta = json.loads(out.with_suffix(".json").read_text())
    world = World.load(car_world_dir)
    assert meta["world"] == {
        "name": world.name,
        "env_id": "CarRacing-v3",
        "sha256": world_sha256(world),
    }
    assert meta["obs_mode"] == "zh" and meta["algo"] == "ppo" and meta["steps"] == 128
    assert meta["seed"] == 3 and meta["temperature"] == 1.0 and meta["wall_time_s"] > 0
    assert not list(out.parent.glob("*.partial.*"))
    with pytest.raises(FileExistsError, match="--force"):
        train_agent(config)

    # The agent runs in the real CarRacing through the transfer wrapper.
    policy = load_sb3_policy(zip_path, car_world_dir)
    assert isinstance(policy, Policy) and policy.obs_mode == "zh"
    env = make_real(car_world_dir, obs_mode=policy.obs_mode)
    try:
        obs, _ = env.reset(seed=0)
        for _ in range(15):
            action = policy.act(obs[None])[0]
            assert action in env.action_space
            obs, _, terminated, truncated, _ = env.step(action)
            assert not (terminated or truncated)
    finally:
        env.close()


def test_load_checks_the_world_and_obs_mode(tmp_path: Path, car_world_dir: Path) -> None:
    world = World.load(car_world_dir)
    env = DreamVecEnv(world, num_envs=2, obs_mode="z", device="cpu")
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=32, device="cpu")
    path = save_agent(model, tmp_path / "agent", world, "z")
    assert path == agent_paths(tmp_path / "agent.zip")[0]
    assert load_sb3_policy(path, world).act(np.zeros((5, world.latent_dim), np.float32)).shape == (
        5,
        3,
    )
    with pytest.raises(ValueError, match="trained on obs_mode 'z' but obs_mode 'zh'"):
        load_sb3_policy(path, world, obs_mode="zh")
    other = World.load(car_world_dir)
    with torch.no_grad():
        other.mdnrnn.head.bias.add_(0.1)
    with pytest.raises(ValueError, match="other V/M weights"):
        load_sb3_policy(path, other)
    assert load_sb3_policy(path, other, strict=False).obs_mode == "z"
    doom_like = build_tiny_world(True)
    with pytest.raises(ValueError, match="VizdoomTakeCover-v1"):
        load_sb3_policy(path, doom_like)
    path.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="sidecar"):
        load_sb3_policy(path, world)


def test_sac_needs_box_actions(tmp_path: Path, discrete_world_dir: Path) -> None:
    config = SB3Config(
        world=str(discrete_world_dir), out=str(tmp_path / "sac"), algo="sac", steps=10
    )
    with pytest.raises(ValueError, match="SAC needs continuous"):
        train_agent(config)


class InterruptAt(BaseCallback):
    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.steps:
            raise KeyboardInterrupt
        return True


def test_interrupted_training_resumes(tmp_path: Path, discrete_world_dir: Path) -> None:
    out = tmp_path / "a2c"
    config = SB3Config(
        world=str(discrete_world_dir),
        out=str(out),
        algo="a2c",
        steps=120,
        num_envs=4,
        progress=False,
    )
    with pytest.raises(KeyboardInterrupt):
        train_agent(config, callback=InterruptAt(60))
    partial = json.loads((tmp_path / "a2c.partial.json").read_text())
    assert partial["num_timesteps"] == 60
    with pytest.raises(FileExistsError, match="other options"):
        train_agent(SB3Config(**{**config.__dict__, "seed": 1}))
    train_agent(config)
    meta = json.loads((tmp_path / "a2c.json").read_text())
    assert meta["resumed_from"] == 60 and meta["num_timesteps"] >= 120
    assert not (tmp_path / "a2c.partial.zip").exists()


def test_cli_sb3(tmp_path: Path, box_world_dir: Path) -> None:
    out = tmp_path / "cli_agent"
    argv = [
        "sb3",
        "--world",
        str(box_world_dir),
        "--out",
        str(out),
        "--steps",
        "64",
        "--n-envs",
        "4",
    ]
    assert cli_main([*argv, "--algo-kwargs", SMALL_PPO, "--no-progress"]) == 0
    assert out.with_suffix(".zip").is_file() and out.with_suffix(".json").is_file()
    assert cli_main([*argv, "--algo", "sac", "--force", "--no-progress"]) == 0
    assert json.loads(out.with_suffix(".json").read_text())["algo"] == "sac"
