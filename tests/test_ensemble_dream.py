"""Ensemble dreams (`DreamSettings.ensemble`, `EnsembleKernel`): several M's on one V stepped
together, their disagreement d, MOPO's penalty r − λ·d and MOReL's halt where d is large."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import make_member as member
from gymnasium.utils.env_checker import check_env as gym_check_env

from dreamgym.envs.dream import DreamVectorEnv
from dreamgym.envs.settings import DreamSettings
from dreamgym.models.mdn_kernel import DreamKernel, EnsembleKernel
from dreamgym.models.mixture import mdn_mean
from dreamgym.options import DreamOptions
from dreamgym.sb3 import DreamVecEnv
from dreamgym.utils.validate import InvalidValueError
from dreamgym.world import World


def actions_for(env: DreamVectorEnv, steps: int, seed: int = 0) -> list[torch.Tensor]:
    env.single_action_space.seed(seed)
    return [
        torch.as_tensor(np.stack([env.single_action_space.sample() for _ in range(env.num_envs)]))
        for _ in range(steps)
    ]


def run(env: DreamVectorEnv, actions: list[torch.Tensor], seed: int = 0) -> dict[str, list]:
    out: dict[str, list] = {"obs": [env.reset_tensors(seed=seed).clone()], "reward": []}
    out.update(done=[], d=[])
    for a in actions:
        step = env.step_tensors(a)
        out["obs"].append(step.obs.clone())
        out["reward"].append(step.reward.clone())
        out["done"].append(step.done.clone())
        out["d"].append(None if env.last_disagreement is None else env.last_disagreement.clone())
    return out


def test_identical_members_dream_the_worlds_own_dream(world_dir: Path) -> None:
    """The pick of the drawing member has a generator of its own: with identical members the
    dream is the one-world dream, bit for bit, and d is zero."""
    plain = DreamVectorEnv(world_dir, num_envs=64, device="cpu")
    ens = DreamVectorEnv(world_dir, num_envs=64, device="cpu", ensemble=[world_dir, world_dir])
    acts = actions_for(plain, 30)
    a, b = run(plain, acts), run(ens, acts)
    for key in ("obs", "reward", "done"):
        assert all(torch.equal(x, y) for x, y in zip(a[key], b[key], strict=True)), key
    assert max(float(d.max()) for d in b["d"]) < 1e-5


def test_disagreement_grows_with_the_members_spread(world_dir: Path, tmp_path: Path) -> None:
    means = []
    for spread in (0.01, 0.1, 0.5):
        members = [member(world_dir, tmp_path, spread, seed) for seed in (1, 2)]
        env = DreamVectorEnv(world_dir, num_envs=128, device="cpu", ensemble=members)
        d = run(env, actions_for(env, 10))["d"]
        means.append(float(torch.stack(d).mean()))
    assert 0 < means[0] < means[1] < means[2], means


def test_disagreement_is_the_largest_rms_distance_from_the_ensemble_mean(
    world_dir: Path, tmp_path: Path
) -> None:
    """d by hand from each M's own (unfused) step: max_k RMS_j(E_k[z_j] − mean_k E_k[z_j])."""
    worlds = [World.load(world_dir)] + [
        World.load(member(world_dir, tmp_path, 0.3, s)) for s in (1, 2)
    ]
    b = 16
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(b, worlds[0].latent_dim, generator=gen)
    a = torch.rand(b, 3, generator=gen)
    kernels = [DreamKernel(w.mdnrnn) for w in worlds]
    ens = EnsembleKernel(kernels)
    xs, cs = [], []
    for k in kernels:
        x = k.new_rows(b, "cpu")
        k.z(x).copy_(z)
        xs.append(x)
        cs.append(torch.zeros(b, worlds[0].hidden_dim))
    u = torch.rand(b, kernels[0].noise.width, generator=gen)
    with torch.inference_mode():
        _, _, _, d = ens.step(xs, cs, a, u, torch.rand(b, generator=gen), 1.0)
        expected = []
        for w in worlds:
            zeros = torch.zeros(b, w.hidden_dim)
            out, _ = w.mdnrnn.step(z, a, (zeros, zeros.clone()))  # M's own step from h = c = 0
            expected.append(mdn_mean(out.logpi, out.mu))
    stacked = torch.stack(expected)
    want = (stacked - stacked.mean(0)).pow(2).mean(2).sqrt().amax(0)
    torch.testing.assert_close(d, want, rtol=1e-4, atol=1e-5)


def test_penalty_subtracts_lambda_times_d_and_halt_ends_uncertain_dreams(
    world_dir: Path, tmp_path: Path
) -> None:
    members = [member(world_dir, tmp_path, 0.2, s) for s in (1, 2)]
    kw = {"num_envs": 64, "device": "cpu", "ensemble": members, "max_episode_steps": 1000}
    base = DreamVectorEnv(world_dir, **kw)
    acts = actions_for(base, 5)
    plain = run(base, acts)
    penalised = run(DreamVectorEnv(world_dir, uncertainty_penalty=2.5, **kw), acts)
    for r0, r1, d in zip(plain["reward"], penalised["reward"], plain["d"], strict=True):
        torch.testing.assert_close(r1, r0 - 2.5 * d)
    median = float(torch.stack(plain["d"][:1]).median())
    halted = run(DreamVectorEnv(world_dir, uncertainty_halt=median, **kw), acts[:1])
    assert torch.equal(halted["done"][0], plain["done"][0] | (plain["d"][0] > median))
    assert 0 < int(halted["done"][0].sum()) < 64
    never = run(DreamVectorEnv(world_dir, uncertainty_halt=1e9, **kw), acts)
    assert all(torch.equal(x, y) for x, y in zip(never["done"], plain["done"], strict=True))


def test_same_seed_same_ensemble_dream_and_threads_split_alike(
    world_dir: Path, tmp_path: Path
) -> None:
    members = [member(world_dir, tmp_path, 0.2, s) for s in (1, 2)]
    env = DreamVectorEnv(world_dir, num_envs=512, device="cpu", ensemble=members)
    acts = actions_for(env, 8)
    first, again = run(env, acts, seed=5), run(env, acts, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(first["obs"], again["obs"], strict=True))
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # two parts of 256 rows, side by side
    try:
        split = run(env, acts, seed=5)
    finally:
        torch.set_num_threads(before)
    for key in ("obs", "reward", "d"):
        assert all(torch.equal(x, y) for x, y in zip(first[key], split[key], strict=True)), key


def test_gym_make_sb3_and_checkers_see_the_disagreement(world_dir: Path, tmp_path: Path) -> None:
    members = [str(member(world_dir, tmp_path, 0.2))]
    kw = {"world": world_dir, "device": "cpu", "ensemble": members, "uncertainty_penalty": 0.5}
    env = gym.make("DreamEnv-v0", **kw)
    assert env.spec is not None and env.spec.kwargs["uncertainty_penalty"] == 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gym_check_env(env.unwrapped)
    env.reset(seed=0)
    *_, info = env.step(env.action_space.sample())
    assert info["disagreement"] >= 0.0
    venv = gym.make_vec("DreamEnv-v0", num_envs=4, vectorization_mode="vector_entry_point", **kw)
    venv.reset(seed=0)
    *_, infos = venv.step(venv.action_space.sample())
    assert infos["disagreement"].shape == (4,) and infos["_disagreement"].all()
    sb3 = DreamVecEnv(world_dir, num_envs=3, device="cpu", ensemble=members)
    sb3.reset()
    *_, infos = sb3.step(np.stack([sb3.action_space.sample() for _ in range(3)]))
    assert all(i["disagreement"] >= 0.0 for i in infos)


def test_bad_ensembles_are_clear_errors(
    world_dir: Path, box_world_dir: Path, discrete_world_dir: Path, make_tiny_world, tmp_path: Path
) -> None:
    with pytest.raises(InvalidValueError, match="ensemble=\\[WORLD"):
        DreamSettings(uncertainty_penalty=1.0)
    with pytest.raises(InvalidValueError, match="ensemble"):
        DreamSettings(uncertainty_halt=0.1)
    with pytest.raises(InvalidValueError, match="uncertainty_penalty"):
        DreamSettings(ensemble=(str(world_dir),), uncertainty_penalty=float("nan"))
    with pytest.raises(InvalidValueError, match="uncertainty_halt"):
        DreamSettings(ensemble=(str(world_dir),), uncertainty_halt=0.0)
    with pytest.raises(InvalidValueError, match="list of worlds"):
        DreamSettings(ensemble=str(world_dir))
    with pytest.raises(ValueError, match="--members"):
        DreamOptions(world=str(world_dir), uncertainty_penalty=1.0)
    other = box_world_dir if world_dir == discrete_world_dir else discrete_world_dir
    with pytest.raises(ValueError, match="ensemble members must model the same env"):
        DreamVectorEnv(world_dir, device="cpu", ensemble=[other])
    discrete = world_dir == discrete_world_dir
    another_v = make_tiny_world(tmp_path, discrete, seed=7, subdir="another-v")
    with pytest.raises(ValueError, match="--vae-from"):
        DreamVectorEnv(world_dir, device="cpu", ensemble=[another_v])


def test_options_build_the_ensemble_dream(world_dir: Path, tmp_path: Path) -> None:
    members = [str(member(world_dir, tmp_path, 0.2))]
    opts = DreamOptions(
        world=str(world_dir), members=members, uncertainty_penalty=1.5, uncertainty_halt=2.0
    )
    settings = opts.dream_settings()
    assert settings.ensemble == tuple(members)
    assert (settings.uncertainty_penalty, settings.uncertainty_halt) == (1.5, 2.0)
    world = World.load(world_dir)
    record = opts.dream_record(world)
    assert record["members"] == members and record["uncertainty_penalty"] == 1.5
    assert "members" not in DreamOptions(world=str(world_dir)).dream_record(world)


def test_report_headers_name_the_ensemble_dream() -> None:
    from dreamgym.options import threshold_note

    plain = {"termination": "sample", "done_threshold": None}
    assert threshold_note(plain) == ""
    record = {**plain, "members": ["m1", "m2"], "uncertainty_penalty": 1.5}
    assert threshold_note({**record, "uncertainty_halt": None}) == ", ensemble of 3, r − 1.5·d"
    halted = {**record, "uncertainty_penalty": 0.0, "uncertainty_halt": 0.2}
    assert threshold_note(halted) == ", ensemble of 3, halt at d > 0.2"
