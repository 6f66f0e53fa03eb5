"""An RSSM world's dream (`dreamgym.models.rssm_kernel`) in the one batched core: the prior's
step from the step's uniforms, resets on the posterior, and the env contracts of an MDN dream."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import build_tiny_world
from gymnasium.utils.env_checker import check_env

from dreamgym.envs.dream import DreamVectorEnv
from dreamgym.models.memory import memory_of
from dreamgym.models.rssm import temper
from dreamgym.models.rssm_kernel import RSSMKernel
from dreamgym.wrappers import LatentTracker

STOCHS = ("gaussian", "categorical")
CHI2_CRIT_DF3 = 16.266
"""The chi-square distribution's 0.999 quantile with 3 degrees of freedom (4 classes)."""


def rssm_world_dir(tmp_path: Path, stoch: str, discrete: bool = True) -> Path:
    world = build_tiny_world(discrete=discrete, rssm=stoch, max_episode_steps=40)
    return world.save(tmp_path / f"rssm-{stoch}")


@pytest.mark.parametrize("stoch", STOCHS)
def test_an_rssm_world_dreams_through_gym_make(tmp_path: Path, stoch: str) -> None:
    """The checkers pass; obs "zh" is [z, h, s]; obs "zch" (an LSTM's cell) is refused."""
    path = rssm_world_dir(tmp_path, stoch, discrete=stoch == "categorical")
    env = gym.make("DreamEnv-v0", world=str(path))
    check_env(env.unwrapped, skip_render_check=True)
    world = env.unwrapped.world
    obs, _ = env.reset(seed=0)
    assert obs.shape == (world.latent_dim + world.rssm.config.feature_dim,)
    with pytest.raises(ValueError, match="obs_mode 'zch' shows an LSTM's cell"):
        gym.make("DreamEnv-v0", world=str(path), obs_mode="zch")
    with pytest.raises(ValueError, match="ensemble dreams step MDN-RNN members"):
        gym.make("DreamEnv-v0", world=str(path), ensemble=[str(path)])


@pytest.mark.parametrize("stoch", STOCHS)
@torch.no_grad()
def test_a_reset_is_the_trackers_state_on_the_first_frame(tmp_path: Path, stoch: str) -> None:
    """A dream starts where the real-env tracker stands after a real episode's first frame."""
    venv = DreamVectorEnv(str(rssm_world_dir(tmp_path, stoch)), num_envs=4)
    obs = venv.reset_tensors(seed=3)
    world, lat = venv.world, venv.world.latent_dim
    memory = memory_of(world)
    z0 = obs[:, :lat]
    state = memory.observe(memory.initial_state(4), z0, torch.zeros(4, memory.action_dim))
    torch.testing.assert_close(obs[:, lat:], memory.features(state))
    tracker = LatentTracker(world)  # a frame's z through V, then the same posterior
    tracker.see(np.zeros((64, 64, 3), dtype=np.uint8))
    z = torch.as_tensor(tracker.z).unsqueeze(0)
    first = memory.observe(memory.initial_state(1), z, torch.zeros(1, memory.action_dim))
    np.testing.assert_allclose(tracker.h, memory.features(first)[0].numpy(), rtol=1e-6)


@pytest.mark.parametrize("stoch", STOCHS)
@torch.no_grad()
def test_a_cold_step_is_the_priors_mean_step(tmp_path: Path, stoch: str) -> None:
    """At τ = 0 the kernel's step is `RSSM.imagine`'s (the prior's mean or mode), exactly."""
    venv = DreamVectorEnv(str(rssm_world_dir(tmp_path, stoch)), num_envs=6)
    world = venv.world
    kernel = venv.kernel
    assert isinstance(kernel, RSSMKernel)
    x = venv.reset_tensors(seed=1).clone()
    actions = torch.nn.functional.one_hot(torch.arange(6) % 3, 3).float()
    u = torch.rand(6, kernel.noise.width, generator=torch.Generator().manual_seed(0))
    x_next, reward, p_done = kernel.step(x.clone(), venv._c, actions, u, 0.0)
    lat, deter = world.latent_dim, world.rssm.config.deter_dim
    memory = memory_of(world)
    state = type(memory.initial_state(1))(x[:, lat : lat + deter], x[:, lat + deter :])
    imagined = memory.imagine(state, actions, temperature=0.0)
    torch.testing.assert_close(x_next[:, :lat], imagined.z)
    torch.testing.assert_close(x_next[:, lat:], memory.features(imagined.state))
    torch.testing.assert_close(reward, imagined.reward)
    torch.testing.assert_close(p_done, imagined.done_probability)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_categorical_draws_follow_the_tempered_prior(temperature: float) -> None:
    """Class c of a group is drawn w.p. p_c^{1/τ} / Σ p^{1/τ}: a chi-square test, fixed seed."""
    world = build_tiny_world(discrete=True, rssm="categorical")
    kernel = RSSMKernel(world.rssm)
    c = world.rssm.config
    n = 20_000
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    stats = probs.log().repeat(c.groups).expand(n, -1)
    u = torch.rand(n, kernel.noise.width, generator=torch.Generator().manual_seed(4))
    s = kernel.draw(stats, u, temperature).view(n, c.groups, c.classes)
    assert bool((s.sum(-1) == 1).all())
    want = temper(c, probs.log().repeat(c.groups), temperature).view(c.groups, c.classes).exp()
    for g in range(c.groups):
        counts = s[:, g].sum(0).double()
        expected = want[g].double() * n
        assert float(((counts - expected) ** 2 / expected).sum()) < CHI2_CRIT_DF3


def test_gaussian_draws_scale_with_the_temperature() -> None:
    world = build_tiny_world(discrete=False, rssm="gaussian")
    kernel = RSSMKernel(world.rssm)
    dim = world.rssm.config.stoch_dim
    n = 40_000
    stats = torch.cat([torch.full((n, dim), 2.0), torch.full((n, dim), 0.5)], dim=1)
    u = torch.rand(n, kernel.noise.width, generator=torch.Generator().manual_seed(5))
    for tau in (0.25, 1.0):
        s = kernel.draw(stats, u, tau)
        assert abs(float(s.mean()) - 2.0) < 0.01
        assert abs(float(s.std()) - 0.5 * tau**0.5) < 0.01
    assert torch.equal(kernel.draw(stats, u, 0.0), stats[:, :dim])


@pytest.mark.parametrize("stoch", STOCHS)
def test_same_seed_same_rssm_dream_and_shared_noise(tmp_path: Path, stoch: str) -> None:
    """Seeds reproduce the dream; rows that share their noise dream alike; a batch split
    across two threads dreams what one thread does."""
    path = str(rssm_world_dir(tmp_path, stoch))

    def run(threads: int, noise_groups: int | None = None) -> np.ndarray:
        torch.set_num_threads(threads)
        venv = gym.make_vec(
            "DreamEnv-v0", num_envs=512, vectorization_mode="vector_entry_point", world=path,
            noise_groups=noise_groups,
        )  # fmt: skip
        obs, _ = venv.reset(seed=11)
        rng = np.random.default_rng(0)
        trace = [obs]
        for _ in range(12):
            action = rng.integers(0, 3, size=512)
            if noise_groups:
                action = np.tile(action[:noise_groups], 512 // noise_groups)
            obs, reward, term, trunc, _ = venv.step(action)
            trace += [obs, reward[:, None], term[:, None]]
        return np.concatenate([t.reshape(512, -1).astype(np.float64) for t in trace], axis=1)

    before = torch.get_num_threads()
    try:
        one = run(1)
        assert np.array_equal(one, run(1))
        assert np.array_equal(one, run(2))
        shared = run(1, noise_groups=4)
        assert np.array_equal(shared[:4], shared[4:8])
    finally:
        torch.set_num_threads(before)


def test_done_offset_and_sampled_termination(tmp_path: Path) -> None:
    """P(done) carries the calibrated offset; a large one ends every dream at its first step."""
    world = build_tiny_world(discrete=True, rssm="gaussian")
    world.config["rssm"]["done_logit_offset"] = 40.0  # as `dreamgym calibrate` writes it
    path = world.save(tmp_path / "doomed")
    venv = DreamVectorEnv(str(path), num_envs=8)
    venv.reset_tensors(seed=0)
    step = venv.step_tensors(torch.zeros(8, dtype=torch.long))
    assert bool(step.terminated.all())
