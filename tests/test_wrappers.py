"""WorldModelObservation: the real env seen through V and M, with the dream's conventions.

Real CarRacing-v3 and VizdoomTakeCover-v1 envs with tiny worlds (small M; V has the paper's
fixed architecture). A `RawObs` wrapper under the transfer wrapper records the real observations,
so the expected z and h are recomputed independently from them.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from dreamgym.envs.dream import DreamVectorEnv, observation_space_for
from dreamgym.envs.real import make_real_env
from dreamgym.models.mdnrnn import MDNRNNConfig
from dreamgym.models.rssm import RSSMConfig
from dreamgym.models.vae import VAEConfig
from dreamgym.preprocessing import FramePreprocessing, preprocessing_for
from dreamgym.spaces import action_input_dim
from dreamgym.world import World
from dreamgym.wrappers import WorldModelMismatchError, WorldModelObservation, make_real

CAR = "CarRacing-v3"
DOOM = "VizdoomTakeCover-v1"
LATENT, HIDDEN = 6, 24


def real_tiny_world(env_id: str, seed: int = 0) -> World:
    """A tiny untrained world for a real env, with that env's own preprocessing rule."""
    env = make_real_env(env_id)
    try:
        space, obs_space = env.action_space, env.observation_space
    finally:
        env.close()
    return World.build(
        env_id,
        space,
        preprocessing_for(env_id, obs_space),
        vae_config=VAEConfig(latent_dim=LATENT),
        rnn_config=MDNRNNConfig(
            latent_dim=LATENT, action_dim=action_input_dim(space), hidden_dim=HIDDEN, n_mixtures=3
        ),
        max_episode_steps=50,
        seed=seed,
    )


@pytest.fixture(scope="module")
def car_world() -> World:
    return real_tiny_world(CAR)


@pytest.fixture(scope="module")
def doom_world() -> World:
    return real_tiny_world(DOOM)


class RawObs(gym.Wrapper):
    """Keeps the last raw observation of the real env (to recompute the wrapper's by hand)."""

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self.last = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        out = self.env.step(action)
        self.last = out[0]
        return out


@torch.no_grad()
def mean_z(world: World, raw_obs: Any) -> torch.Tensor:
    frame = FramePreprocessing.from_dict(world.config["preprocessing"])(raw_obs)
    mu, _ = world.vae.encode(torch.as_tensor(frame.copy()).unsqueeze(0))
    return mu


def check_tracking(
    world: World, env_id: str, actions: list[Any], encoded: list[np.ndarray]
) -> None:
    """Wrapper obs == [V's mu of the real frame, h from M's LSTM over (z_{t-1}, encoded a_{t-1})]."""
    raw = RawObs(make_real_env(env_id))
    env = WorldModelObservation(raw, world, obs_mode="zh", z_mode="mean")
    try:
        obs, _ = env.reset(seed=3)
        z = mean_z(world, raw.last)
        h, c = world.mdnrnn.initial_state(1)
        np.testing.assert_allclose(obs[:LATENT], z[0].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(obs[LATENT:], np.zeros(HIDDEN, np.float32))
        np.testing.assert_array_equal(env.last_frame, world.preprocessing(raw.last))
        for action, enc in zip(actions, encoded, strict=True):
            obs, *_ = env.step(action)
            with torch.no_grad():
                h, c = world.mdnrnn.recurrent_step(z, torch.as_tensor(enc)[None], (h, c))
            z = mean_z(world, raw.last)
            assert obs.dtype == np.float32 and obs in env.observation_space
            np.testing.assert_allclose(obs[:LATENT], z[0].numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(obs[LATENT:], h[0].numpy(), rtol=1e-5, atol=1e-6)
        assert float(np.abs(obs[LATENT:]).max()) > 0  # h really moved
    finally:
        env.close()


@pytest.mark.parametrize("obs_mode", ["zh", "z", "pixels", "zch"])
def test_observation_space_is_the_dreams(car_world: World, obs_mode: str) -> None:
    env = WorldModelObservation(make_real_env(CAR), car_world, obs_mode=obs_mode)
    try:
        dream = DreamVectorEnv(car_world, num_envs=2, obs_mode=obs_mode, device="cpu")
        assert env.observation_space == observation_space_for(car_world, obs_mode)
        assert env.observation_space == dream.single_observation_space
        assert env.action_space == dream.single_action_space
        obs, _ = env.reset(seed=0)
        assert obs in env.observation_space
    finally:
        env.close()


def test_carracing_box_tracking_matches_manual(car_world: World) -> None:
    # Out-of-bounds actions reach M clipped, exactly as in the dream.
    actions = [
        np.array([0.3, 0.8, 0.0], np.float32),
        np.array([2.0, 1.5, -1.0], np.float32),
        np.array([-0.5, 0.2, 0.4], np.float32),
    ]
    encoded = [np.clip(a, car_world.action_space.low, car_world.action_space.high) for a in actions]
    dream = DreamVectorEnv(car_world, num_envs=3, device="cpu")
    np.testing.assert_array_equal(
        dream.encode_actions(torch.as_tensor(np.stack(actions))).numpy(), np.stack(encoded)
    )
    check_tracking(car_world, CAR, actions, encoded)


def test_doom_dict_discrete_tracking_matches_manual(doom_world: World) -> None:
    assert doom_world.preprocessing.image_key == "screen"
    actions = [np.int64(1), 2, np.array(0), 1]
    encoded = [np.eye(3, dtype=np.float32)[int(a)] for a in actions]
    check_tracking(doom_world, DOOM, actions, encoded)


def test_z_and_pixels_modes(car_world: World) -> None:
    raw = RawObs(make_real_env(CAR))
    z_env = WorldModelObservation(raw, car_world, obs_mode="z", z_mode="mean")
    try:
        obs, _ = z_env.reset(seed=1)
        z = mean_z(car_world, raw.last)
        np.testing.assert_allclose(obs, z[0].numpy(), rtol=1e-5, atol=1e-6)
        assert obs.shape == (LATENT,)
    finally:
        z_env.close()
    raw = RawObs(make_real_env(CAR))
    px_env = WorldModelObservation(raw, car_world, obs_mode="pixels", z_mode="mean")
    try:
        obs, _ = px_env.reset(seed=1)
        obs, *_ = px_env.step(np.array([0.0, 1.0, 0.0], np.float32))
        with torch.no_grad():
            expected = car_world.vae.decode_uint8(mean_z(car_world, raw.last))[0].numpy()
        assert obs.dtype == np.uint8 and obs.shape == (64, 64, 3)
        np.testing.assert_array_equal(obs, expected)
        np.testing.assert_array_equal(obs, px_env.reconstruction())
        assert px_env.last_frame.shape == (64, 64, 3) and px_env.last_frame.dtype == np.uint8
    finally:
        px_env.close()


def test_world_from_another_env_fails_clearly(car_world: World, doom_world: World) -> None:
    doom = make_real_env(DOOM)
    try:
        with pytest.raises(WorldModelMismatchError, match=r"CarRacing-v3.*VizdoomTakeCover-v1"):
            WorldModelObservation(doom, car_world)
        # Without the id check, the action spaces still disagree.
        with pytest.raises(WorldModelMismatchError, match=r"action space"):
            WorldModelObservation(doom, car_world, check_env_id=False)
    finally:
        doom.close()
    car = make_real_env(CAR)
    try:
        with pytest.raises(WorldModelMismatchError, match=r"VizdoomTakeCover-v1.*CarRacing-v3"):
            WorldModelObservation(car, doom_world)
    finally:
        car.close()
    with pytest.raises(ValueError, match="obs_mode"):
        WorldModelObservation(make_real_env(CAR), car_world, obs_mode="rgb")


def test_bad_actions_raise(car_world: World, doom_world: World) -> None:
    env = WorldModelObservation(make_real_env(CAR), car_world)
    try:
        env.reset(seed=0)
        with pytest.raises(ValueError, match="NaN"):
            env.step(np.array([np.nan, 0.0, 0.0], np.float32))
        with pytest.raises(ValueError, match="shape"):
            env.step(np.zeros(2, np.float32))
    finally:
        env.close()
    env = WorldModelObservation(make_real_env(DOOM), doom_world)
    try:
        env.reset(seed=0)
        with pytest.raises(ValueError, match="integer"):
            env.step(1.0)
        with pytest.raises(ValueError, match=r"\[0, 3\)"):
            env.step(3)
    finally:
        env.close()


def test_record_episode_statistics_and_step_cap(doom_world: World) -> None:
    env = gym.wrappers.RecordEpisodeStatistics(
        WorldModelObservation(make_real_env(DOOM), doom_world, max_episode_steps=12)
    )
    try:
        env.reset(seed=0)
        total, steps, truncated, terminated = 0.0, 0, False, False
        while not (terminated or truncated):
            _, r, terminated, truncated, info = env.step(0)
            total += float(r)
            steps += 1
        assert steps == 12 and truncated and not terminated  # TakeCover survives 12 tics
        assert info["episode"]["l"] == 12
        assert info["episode"]["r"] == pytest.approx(total)
    finally:
        env.close()


def test_make_real_and_render_pass_through(tmp_path: Any, car_world: World) -> None:
    path = car_world.save(tmp_path / "car")
    env = make_real(path, obs_mode="zh", render_mode="rgb_array")
    try:
        assert isinstance(env, WorldModelObservation) and env.spec.id == CAR
        collected = gym.wrappers.RenderCollection(env)
        collected.reset(seed=0)
        collected.step(np.array([0.0, 0.5, 0.0], np.float32))
        frames = collected.render()
        assert len(frames) == 2 and frames[-1].shape == (400, 600, 3)  # the real env's frames
    finally:
        env.close()


def test_record_video(tmp_path: Any, car_world: World) -> None:
    pytest.importorskip("moviepy")
    env = gym.wrappers.RecordVideo(
        make_real(car_world, render_mode="rgb_array"),
        str(tmp_path / "videos"),
        episode_trigger=lambda e: True,
    )
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.array([0.0, 0.5, 0.0], np.float32))
    env.close()
    assert list((tmp_path / "videos").glob("*.mp4"))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_gymnasium_check_env_and_spec_remake(tmp_path: Any, car_world: World) -> None:
    from gymnasium.utils.env_checker import check_env

    car_world.save(tmp_path / "car")
    env = make_real(World.load(tmp_path / "car"))
    try:
        assert env.spec.additional_wrappers[-1].kwargs["world"] == str(tmp_path / "car")
        check_env(env, skip_render_check=True)  # also rebuilds the env from env.spec
    finally:
        env.close()


def test_default_z_is_a_seeded_posterior_sample(car_world: World) -> None:
    """An MDN-RNN world's default z_mode, "sample": z ~ N(mu, σ²) like its dream's z; same seed,
    same z."""
    raw = RawObs(make_real_env(CAR))
    env = WorldModelObservation(raw, car_world, obs_mode="z")
    assert env.tracker.z_mode == "sample"  # an MDN-RNN world: its dream's z are mixture draws
    try:
        first, _ = env.reset(seed=5)
        again, _ = env.reset(seed=5)
        other, _ = env.reset(seed=6)
        np.testing.assert_array_equal(first, again)
        assert not np.array_equal(first, other)
        frame = car_world.preprocessing(raw.last)
        with torch.no_grad():
            mu, logvar = car_world.vae.encode(torch.as_tensor(frame.copy()).unsqueeze(0))
        gen = torch.Generator().manual_seed(6)
        expected = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen)
        np.testing.assert_allclose(other, expected[0].numpy(), rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="z_mode"):
            WorldModelObservation(make_real_env(CAR), car_world, z_mode="median")
    finally:
        env.close()


@torch.no_grad()
def test_rssm_world_tracks_real_frames_with_its_posterior_mean() -> None:
    """An RSSM world's wrapper: the dream's observation space, obs = [V's mu (by default: its
    dream's z are the decoder's means), features of the posterior's mean state] frame by frame,
    and a reset starts the state afresh."""
    env = make_real_env(DOOM)
    try:
        space, obs_space = env.action_space, env.observation_space
    finally:
        env.close()
    world = World.build(
        DOOM, space, preprocessing_for(DOOM, obs_space), vae_config=VAEConfig(latent_dim=LATENT),
        rnn_config=RSSMConfig(latent_dim=LATENT, action_dim=3, deter_dim=16, hidden_dim=16,
                              stoch="categorical", groups=3, classes=4),
        max_episode_steps=50, seed=1,
    )  # fmt: skip
    raw = RawObs(make_real_env(DOOM))
    wrapped = WorldModelObservation(raw, world, obs_mode="zh")  # z = mu: the RSSM dreams means
    assert wrapped.tracker.z_mode == "mean"
    assert wrapped.observation_space == observation_space_for(world, "zh")
    rssm = world.rssm
    try:
        first, _ = wrapped.reset(seed=5)
        z = mean_z(world, raw.last)
        state = rssm.observe(rssm.initial_state(1), z, torch.zeros(1, 3), sample=False)
        np.testing.assert_allclose(first[LATENT:], rssm.features(state)[0].numpy(), atol=1e-6)
        for action in (1, 2, 0):
            obs, *_ = wrapped.step(action)
            a = torch.nn.functional.one_hot(torch.tensor([action]), 3).float()
            z = mean_z(world, raw.last)
            state = rssm.observe(state, z, a, sample=False)
            np.testing.assert_allclose(obs[:LATENT], z[0].numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(obs[LATENT:], rssm.features(state)[0].numpy(), atol=1e-5)
        again, _ = wrapped.reset(seed=5)  # the state restarts with the episode
        np.testing.assert_allclose(again, first, atol=1e-6)
    finally:
        wrapped.close()
