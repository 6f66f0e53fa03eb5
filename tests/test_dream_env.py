"""The dream envs: API checkers, the vector core's shapes, episode ends, autoreset modes, seeding,
temperature, action validation, devices, the torch-level step and rendering."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import TINY_HIDDEN, TINY_LATENT, TINY_MAX_STEPS
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from dreamgym.envs.dream import DreamEnv, DreamStep, DreamVectorEnv

OBS_MODES = ("zh", "z", "pixels", "zch")

# Warnings the checkers give by design: z and h are unbounded, and CarRacing's action Box is not
# [-1, 1] (SB3's advice). Anything else the checkers say fails the test.
KNOWN_CHECKER_WARNINGS = (
    "observation space minimum value is -infinity",
    "observation space maximum value is infinity",
    "symmetric and normalized Box action space",
)


def make_vec(world: Path, num_envs: int, **kwargs: Any) -> DreamVectorEnv:
    venv = gym.make_vec(
        "DreamEnv-v0",
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        world=world,
        device="cpu",
        **kwargs,
    )
    assert isinstance(venv, DreamVectorEnv)
    return venv


def random_actions(venv: DreamVectorEnv, rng: np.random.Generator) -> np.ndarray:
    space = venv.single_action_space
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, int(space.n), size=venv.num_envs)
    return rng.uniform(space.low, space.high, size=(venv.num_envs, *space.shape)).astype(np.float32)


def hidden_part(obs: np.ndarray) -> np.ndarray:
    """h in a "zh" observation (z comes first)."""
    return obs[:, TINY_LATENT:]


def distance_to_bank(venv: DreamVectorEnv, z: np.ndarray) -> np.ndarray:
    """For each row of z, the max-abs distance to the nearest initial latent of the world."""
    bank = venv.unwrapped.world.initial_mu.cpu().numpy()
    return np.abs(z[:, None, :] - bank[None]).max(-1).min(-1)


# --- API checkers ---------------------------------------------------------------------------


@pytest.mark.parametrize("obs_mode", OBS_MODES)
def test_gymnasium_and_sb3_env_checkers(world_dir: Path, obs_mode: str) -> None:
    env = gym.make("DreamEnv-v0", world=world_dir, obs_mode=obs_mode, device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)
    unexpected = [
        str(w.message)
        for w in caught
        if not any(known in str(w.message) for known in KNOWN_CHECKER_WARNINGS)
    ]
    assert not unexpected, unexpected
    env.close()


# --- the vector core: spaces, shapes, dtypes ------------------------------------------------


@pytest.mark.parametrize("obs_mode", OBS_MODES)
def test_vector_shapes_and_dtypes(world_dir: Path, obs_mode: str) -> None:
    n = 16 if obs_mode == "pixels" else 256  # decoding 256 frames per step is slow on one core
    venv = make_vec(world_dir, n, obs_mode=obs_mode)
    single_obs = {
        "zh": ((TINY_LATENT + TINY_HIDDEN,), np.float32),
        "z": ((TINY_LATENT,), np.float32),
        "pixels": ((64, 64, 3), np.uint8),
        "zch": ((TINY_LATENT + 2 * TINY_HIDDEN,), np.float32),
    }[obs_mode]
    assert venv.single_observation_space.shape == single_obs[0]
    assert venv.single_observation_space.dtype == single_obs[1]
    assert venv.observation_space.shape == (n, *single_obs[0])
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    if isinstance(venv.single_action_space, gym.spaces.Discrete):
        assert venv.single_action_space == gym.spaces.Discrete(3)
        assert isinstance(venv.action_space, gym.spaces.MultiDiscrete)
        assert venv.action_space.shape == (n,)
    else:
        assert venv.single_action_space.shape == (3,)
        assert venv.action_space.shape == (n, 3)
    obs, info = venv.reset(seed=0)
    assert obs.shape == (n, *single_obs[0]) and obs.dtype == single_obs[1] and info == {}
    assert venv.observation_space.contains(obs)
    rng = np.random.default_rng(0)
    for _ in range(3):
        obs, reward, terminated, truncated, info = venv.step(random_actions(venv, rng))
        assert obs.shape == (n, *single_obs[0]) and obs.dtype == single_obs[1]
        assert venv.observation_space.contains(obs)
        assert reward.shape == (n,) and reward.dtype == np.float32
        assert terminated.shape == truncated.shape == (n,)
        assert terminated.dtype == truncated.dtype == np.bool_
        assert isinstance(info, dict)
    # the sampled batch actions are accepted as they come
    venv.step(venv.action_space.sample())
    venv.close()


# --- episode ends -----------------------------------------------------------------------------


def test_terminated_from_done_head_then_next_step_reset(make_tiny_world, tmp_path: Path) -> None:
    """done logit +30: every episode terminates at its first step; the next step is a reset step."""
    world = make_tiny_world(tmp_path, discrete=False, done_logit=30.0, initial_logvar=-60.0)
    n = 64
    venv = make_vec(world, n)
    obs0, _ = venv.reset(seed=0)
    assert np.all(hidden_part(obs0) == 0.0)
    actions = random_actions(venv, np.random.default_rng(0))
    for cycle in range(3):
        obs, reward, terminated, truncated, _ = venv.step(actions)
        assert terminated.all() and not truncated.any(), cycle
        assert np.all(reward != 0.0)  # M's reward head (generically non-zero)
        assert np.any(hidden_part(obs) != 0.0)  # the obs of the last step, not yet reset
        obs, reward, terminated, truncated, _ = venv.step(actions)  # NEXT_STEP: the reset step
        assert np.all(reward == 0.0) and not terminated.any() and not truncated.any()
        assert np.all(hidden_part(obs) == 0.0)
        assert distance_to_bank(venv, obs[:, :TINY_LATENT]).max() < 1e-5
    venv.close()


def test_truncated_at_max_episode_steps(make_tiny_world, tmp_path: Path) -> None:
    """done logit −30: no termination; truncation exactly at the world's step limit, every episode."""
    world = make_tiny_world(tmp_path, discrete=True, done_logit=-30.0)
    n = 32
    venv = make_vec(world, n)
    assert venv.max_episode_steps == TINY_MAX_STEPS
    venv.reset(seed=1)
    rng = np.random.default_rng(1)
    for episode in range(2):
        for t in range(1, TINY_MAX_STEPS + 1):
            _, reward, terminated, truncated, _ = venv.step(random_actions(venv, rng))
            assert not terminated.any()
            assert truncated.all() == (t == TINY_MAX_STEPS) and truncated.any() == truncated.all()
        obs, reward, terminated, truncated, _ = venv.step(random_actions(venv, rng))
        assert not terminated.any() and not truncated.any() and np.all(reward == 0.0), episode
        assert np.all(hidden_part(obs) == 0.0)
    venv.close()


def test_max_episode_steps_override_and_none(make_tiny_world, tmp_path: Path) -> None:
    world = make_tiny_world(tmp_path, discrete=False, done_logit=-30.0)
    venv = make_vec(world, 4, max_episode_steps=7)
    venv.reset(seed=0)
    actions = random_actions(venv, np.random.default_rng(0))
    flags = [venv.step(actions)[3].all() for _ in range(7)]
    assert flags == [False] * 6 + [True]
    unlimited = make_tiny_world(
        tmp_path, discrete=False, done_logit=-30.0, max_episode_steps=None, subdir="u"
    )
    venv = make_vec(unlimited, 4)
    venv.reset(seed=0)
    for _ in range(TINY_MAX_STEPS + 5):
        _, _, terminated, truncated, _ = venv.step(actions)
        assert not terminated.any() and not truncated.any()


# --- autoreset modes ------------------------------------------------------------------------


def test_next_step_autoreset_with_mixed_dones(make_tiny_world, tmp_path: Path) -> None:
    """p(done) = 1/2: only the envs that ended last step are reset, with reward 0 and no done."""
    world = make_tiny_world(tmp_path, discrete=False, done_logit=0.0, initial_logvar=-60.0)
    venv = make_vec(world, 128)
    venv.reset(seed=3)
    rng = np.random.default_rng(3)
    prev_done = np.zeros(128, dtype=bool)
    n_reset_steps = 0
    for _ in range(20):
        obs, reward, terminated, truncated, info = venv.step(random_actions(venv, rng))
        assert info == {}
        h = hidden_part(obs)
        assert np.all(reward[prev_done] == 0.0)
        assert not terminated[prev_done].any() and not truncated[prev_done].any()
        assert np.all(h[prev_done] == 0.0)
        assert distance_to_bank(venv, obs[prev_done, :TINY_LATENT]).max(initial=0.0) < 1e-5
        assert np.all(np.any(h[~prev_done] != 0.0, axis=1))  # the others stepped on
        assert np.all(reward[~prev_done] != 0.0)
        n_reset_steps += int(prev_done.sum())
        prev_done = terminated | truncated
    assert n_reset_steps > 500  # about half of 128 envs × 19 steps


@pytest.mark.parametrize("mode", ["SameStep", AutoresetMode.SAME_STEP])
def test_same_step_autoreset_final_obs(make_tiny_world, tmp_path: Path, mode: Any) -> None:
    world = make_tiny_world(tmp_path, discrete=True, done_logit=0.0, initial_logvar=-60.0)
    venv = make_vec(world, 64, autoreset_mode=mode)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    venv.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(10):
        obs, reward, terminated, truncated, info = venv.step(random_actions(venv, rng))
        done = terminated | truncated
        assert done.any() and not done.all()
        assert np.array_equal(info["_final_obs"], done)
        assert np.array_equal(info["_final_info"], done)
        final = info["final_obs"]
        assert final.dtype == object and final.shape == (64,)
        for i in range(64):
            if done[i]:
                assert final[i].shape == (TINY_LATENT + TINY_HIDDEN,)
                assert final[i].dtype == np.float32
                assert np.any(final[i][TINY_LATENT:] != 0.0)  # the last obs of the old episode
                assert np.all(obs[i, TINY_LATENT:] == 0.0)  # obs is already the new episode's
            else:
                assert final[i] is None
        assert distance_to_bank(venv, obs[done, :TINY_LATENT]).max() < 1e-5
        assert np.all(reward[done] != 0.0)  # the final step's reward, not a reset's zero


def test_same_step_equals_disabled_with_reset_mask(discrete_world_dir: Path) -> None:
    """SAME_STEP is DISABLED plus reset(options={"reset_mask": done}) after each step, exactly."""
    same = make_vec(discrete_world_dir, 32, autoreset_mode="SameStep")
    manual = make_vec(discrete_world_dir, 32, autoreset_mode=AutoresetMode.DISABLED)
    assert manual.metadata["autoreset_mode"] == AutoresetMode.DISABLED
    obs_s, _ = same.reset(seed=5)
    obs_m, _ = manual.reset(seed=5)
    assert np.array_equal(obs_s, obs_m)
    rng = np.random.default_rng(5)
    n_done = 0
    for _ in range(15):
        a = random_actions(same, rng)
        obs_s, r_s, term_s, trunc_s, info_s = same.step(a)
        obs_m, r_m, term_m, trunc_m, info_m = manual.step(a)
        assert info_m == {}
        assert np.array_equal(r_s, r_m)
        assert np.array_equal(term_s, term_m) and np.array_equal(trunc_s, trunc_m)
        done = term_m | trunc_m
        if done.any():
            n_done += int(done.sum())
            for i in np.flatnonzero(done):
                assert np.array_equal(info_s["final_obs"][i], obs_m[i])
            obs_m, _ = manual.reset(options={"reset_mask": done})
        assert np.array_equal(obs_s, obs_m)
    assert n_done > 0


def test_disabled_reset_mask_resets_only_masked_envs(box_world_dir: Path) -> None:
    venv = make_vec(box_world_dir, 8, autoreset_mode="Disabled")
    venv.reset(seed=0)
    obs, *_ = venv.step(random_actions(venv, np.random.default_rng(0)))
    mask = np.array([True, False] * 4)
    new, info = venv.reset(options={"reset_mask": mask})
    assert info == {}
    assert np.all(hidden_part(new)[mask] == 0.0)
    assert np.array_equal(new[~mask], obs[~mask])
    with pytest.raises(ValueError, match="reset_mask"):
        venv.reset(options={"reset_mask": np.ones(3, dtype=bool)})
    with pytest.raises(ValueError, match="reset_mask"):
        venv.reset(options={"reset_mask": np.ones(8, dtype=np.int64)})


# --- seeding --------------------------------------------------------------------------------


def _vector_rollout(world: Path, seed: int, steps: int = 30) -> list[np.ndarray]:
    venv = make_vec(world, 16)
    obs, _ = venv.reset(seed=seed)
    rng = np.random.default_rng(123)  # the same actions for every seed
    out = [obs]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = venv.step(random_actions(venv, rng))
        out += [obs, reward, terminated, truncated]
    return out


def test_vector_same_seed_same_trajectories(world_dir: Path) -> None:
    a, b, c = (_vector_rollout(world_dir, s) for s in (7, 7, 8))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    # a list of seeds seeds the one generator with its first entry
    venv = make_vec(world_dir, 16)
    obs, _ = venv.reset(seed=[7] + [None] * 15)
    assert np.array_equal(obs, a[0])


def _single_rollout(env: gym.Env, seed: int | None, steps: int = 30) -> list[Any]:
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(0)
    out: list[Any] = [obs]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        out.append((obs, reward, terminated, truncated))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append(obs)
    return out


def _same(a: list[Any], b: list[Any]) -> bool:
    if len(a) != len(b):
        return False
    flat = lambda xs: [y for x in xs for y in (x if isinstance(x, tuple) else (x,))]  # noqa: E731
    return all(np.array_equal(x, y) for x, y in zip(flat(a), flat(b), strict=True))


def test_single_env_reset_seed_determinism(world_dir: Path) -> None:
    env1 = gym.make("DreamEnv-v0", world=world_dir, device="cpu")
    env2 = gym.make("DreamEnv-v0", world=world_dir, device="cpu")
    a = _single_rollout(env1, 11)
    assert _same(a, _single_rollout(env2, 11))  # another env, same seed
    assert _same(a, _single_rollout(env1, 11))  # the same env, reseeded
    assert not _same(a, _single_rollout(env2, 12))


# --- temperature ----------------------------------------------------------------------------


def _next_z_spread(world: Path, temperature: float) -> float:
    """Mean over dims of the std of z_1 across 1024 envs that all start from the same (z_0, h_0)."""
    venv = make_vec(world, 1024, obs_mode="z", temperature=temperature)
    z0, _ = venv.reset(seed=0)
    assert np.ptp(z0, axis=0).max() < 1e-6  # one initial latent, no spread: the same start
    z1, *_ = venv.step(np.zeros((1024, 3), dtype=np.float32))
    return float(z1.std(axis=0).mean())


def test_temperature_controls_the_spread_of_next_z(make_tiny_world, tmp_path: Path) -> None:
    world = make_tiny_world(tmp_path, discrete=False, n_initial=1, initial_logvar=-60.0)
    cold, warm, hot = (_next_z_spread(world, t) for t in (0.01, 1.0, 1.5))
    assert cold < 0.15 * warm, (cold, warm)  # σ × √0.01 and π^100: nearly one point
    assert hot > 1.1 * warm, (warm, hot)  # "nightmares": more spread than τ = 1
    with pytest.raises(ValueError, match="temperature"):
        make_vec(world, 2, temperature=0.0)
    env = DreamEnv(world, device="cpu", temperature=0.5)
    assert env.temperature == 0.5
    env.temperature = 1.2
    assert env.core.temperature == 1.2
    with pytest.raises(ValueError, match="temperature"):
        env.temperature = -1.0


# --- actions --------------------------------------------------------------------------------

BOX_BAD = [
    (np.zeros(2, dtype=np.float32), "shape"),  # wrong shape
    (np.zeros((1, 3), dtype=np.float32), "shape"),
    (np.zeros(3, dtype=np.int64), "dtype"),  # ints for a Box
    (np.array([np.nan, 0.5, 0.0], dtype=np.float32), "NaN"),
    (np.array([np.inf, 0.5, 0.0], dtype=np.float32), "inf"),
]
DISCRETE_BAD = [
    (np.array([1, 2]), "shape"),
    (1.0, "dtype"),  # a float for a Discrete
    (np.float32(2.0), "dtype"),
    (3, r"\[0, 3\)"),  # out of range
    (-1, r"\[0, 3\)"),
]


def test_bad_actions_single_env(box_world_dir: Path, discrete_world_dir: Path) -> None:
    for world, cases in ((box_world_dir, BOX_BAD), (discrete_world_dir, DISCRETE_BAD)):
        env = DreamEnv(world, device="cpu")
        env.reset(seed=0)
        for action, message in cases:
            with pytest.raises(ValueError, match=message):
                env.step(action)
        env.step(env.action_space.sample())  # still usable afterwards
    # a single int-like numpy scalar or a (1,) array are fine for Discrete
    env = DreamEnv(discrete_world_dir, device="cpu")
    env.reset(seed=0)
    env.step(np.int64(2))
    env.step(np.array([1]))


def test_bad_actions_vector_env(box_world_dir: Path, discrete_world_dir: Path) -> None:
    n = 4
    box = make_vec(box_world_dir, n)
    box.reset(seed=0)
    nan = np.zeros((n, 3), dtype=np.float32)
    nan[2, 1] = np.nan
    for action, message in [
        (np.zeros((n, 2), dtype=np.float32), "shape"),
        (np.zeros((n + 1, 3), dtype=np.float32), "shape"),
        (np.zeros(3, dtype=np.float32), "shape"),
        (np.zeros((n, 3), dtype=np.int64), "dtype"),
        (nan, "NaN"),
        (torch.zeros(n, 2), "shape"),
        (torch.full((n, 3), float("nan")), "NaN"),
    ]:
        with pytest.raises(ValueError, match=message):
            box.step(action)
    disc = make_vec(discrete_world_dir, n)
    disc.reset(seed=0)
    for action, message in [
        (np.zeros((n, 1), dtype=np.int64), "shape"),
        (np.zeros(n + 1, dtype=np.int64), "shape"),
        (np.zeros(n, dtype=np.float32), "dtype"),
        (np.array([0, 1, 3, 0]), r"\[0, 3\).*3"),
        (np.array([0, -2, 1, 0]), r"\[0, 3\).*-2"),
        (torch.zeros(n), "dtype"),
        (torch.tensor([0, 1, 2, 9]), r"\[0, 3\)"),
    ]:
        with pytest.raises(ValueError, match=message):
            disc.step(action)
    # torch-level validation too
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        disc.step_tensors(torch.tensor([0, 1, 2, 3]))
    disc.step(np.array([0, 1, 2, 0], dtype=np.int32))  # any integer dtype is fine


def test_box_actions_are_clipped_to_the_bounds(box_world_dir: Path) -> None:
    """An out-of-range Box action behaves exactly like the clipped one (as CarRacing clips)."""
    out = []
    for action in ([5.0, 2.0, -3.0], [1.0, 1.0, 0.0]):
        venv = make_vec(box_world_dir, 4)
        venv.reset(seed=0)
        out.append(venv.step(np.tile(np.asarray(action, dtype=np.float32), (4, 1))))
    for x, y in zip(out[0][:4], out[1][:4], strict=True):
        assert np.array_equal(x, y)


def test_step_before_reset_is_an_error(box_world_dir: Path) -> None:
    venv = make_vec(box_world_dir, 2)
    with pytest.raises(gym.error.ResetNeeded):
        venv.step(np.zeros((2, 3), dtype=np.float32))


# --- devices and the torch-level step -----------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error(box_world_dir: Path) -> None:
    with pytest.raises(ValueError, match="CUDA"):
        DreamVectorEnv(box_world_dir, num_envs=2, device="cuda")
    with pytest.raises(ValueError, match="CUDA"):
        gym.make("DreamEnv-v0", world=box_world_dir, device="cuda")


def test_auto_device_works(box_world_dir: Path) -> None:
    venv = DreamVectorEnv(box_world_dir, num_envs=2, device="auto")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert venv.device.type == want and venv.world.device.type == want
    venv.reset(seed=0)
    venv.step(np.zeros((2, 3), dtype=np.float32))
    env = gym.make("DreamEnv-v0", world=box_world_dir)  # device defaults to "auto"
    env.reset(seed=0)
    env.step(env.action_space.sample())
    with pytest.raises(ValueError, match="device"):
        DreamVectorEnv(box_world_dir, num_envs=2, device="tpu")


@pytest.mark.parametrize("autoreset_mode", ["NextStep", "SameStep", "Disabled"])
def test_step_tensors_stays_in_torch(world_dir: Path, autoreset_mode: str) -> None:
    venv = DreamVectorEnv(world_dir, num_envs=32, device="cpu", autoreset_mode=autoreset_mode)
    obs = venv.reset_tensors(seed=0)
    assert isinstance(obs, torch.Tensor) and obs.device == venv.device and obs.shape == (32, 30)
    discrete = isinstance(venv.single_action_space, gym.spaces.Discrete)
    gen = torch.Generator().manual_seed(0)
    saw_final = False
    for _ in range(5):
        if discrete:
            actions = torch.randint(0, 3, (32,), generator=gen)
        else:
            actions = torch.rand(32, 3, generator=gen)
        step = venv.step_tensors(actions)
        assert isinstance(step, DreamStep)
        for name in ("obs", "reward", "terminated", "truncated", "done"):
            t = getattr(step, name)
            assert isinstance(t, torch.Tensor) and t.device == venv.device, name
            assert t.shape[0] == 32
        assert step.reward.dtype == torch.float32
        assert step.terminated.dtype == step.truncated.dtype == step.done.dtype == torch.bool
        assert torch.equal(step.done, step.terminated | step.truncated)
        if step.final_obs is not None:
            assert autoreset_mode == "SameStep" and isinstance(step.final_obs, torch.Tensor)
            saw_final = True
    assert saw_final == (autoreset_mode == "SameStep")


def test_world_object_is_accepted_and_not_shared_across_devices(box_world_dir: Path) -> None:
    from dreamgym.world import World

    world = World.load(box_world_dir)
    venv = DreamVectorEnv(world, num_envs=3, device="cpu")
    assert venv.world is world  # same device: no copy
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (3, TINY_LATENT + TINY_HIDDEN)


# --- rendering ------------------------------------------------------------------------------


def test_render_rgb_array(world_dir: Path) -> None:
    env = gym.make("DreamEnv-v0", world=world_dir, render_mode="rgb_array", device="cpu")
    env.reset(seed=0)
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.shape == (64, 64, 3)
    env.step(env.action_space.sample())
    assert env.render().shape == (64, 64, 3)
    venv = make_vec(world_dir, 3, render_mode="rgb_array")
    venv.reset(seed=0)
    frames = venv.render()
    assert len(frames) == 3 and all(f.dtype == np.uint8 and f.shape == (64, 64, 3) for f in frames)
    # pixels observations are the same decoding as the render
    pix = make_vec(world_dir, 3, obs_mode="pixels", render_mode="rgb_array")
    obs, _ = pix.reset(seed=0)
    assert np.array_equal(obs, np.stack(pix.render()))


def test_record_video(box_world_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("moviepy", reason="gymnasium's RecordVideo writes videos with moviepy")
    env = gym.make("DreamEnv-v0", world=box_world_dir, render_mode="rgb_array", device="cpu")
    env = gym.wrappers.RecordVideo(env, str(tmp_path / "videos"), episode_trigger=lambda e: True)
    env.reset(seed=0)
    for _ in range(10):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            break
    env.close()
    assert list((tmp_path / "videos").glob("*.mp4"))
