"""Policies from spec strings, dream and real returns, and the dream-vs-real gap report."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tiny_world

from dreamgym.cli import main as cli_main
from dreamgym.controllers import ControllerPolicy, LinearController, bundle_controller
from dreamgym.evaluation import (
    GapConfig,
    bootstrap_ci,
    evaluate_dream,
    evaluate_real,
    gap,
    gap_report,
    load_policy,
)
from dreamgym.policies import Policy, RandomPolicy
from dreamgym.world import World

REAL_STEPS = 20
"""Real CarRacing episodes in these tests are capped at this many steps."""


def save_controller(world: World, path: Path, seed: int = 0) -> Path:
    ctrl = LinearController(world)
    ctrl.set_params(np.random.default_rng(seed).normal(0.0, 0.5, ctrl.n_params))
    ctrl.save(path, world=world)
    return path


# --- load_policy -------------------------------------------------------------------------------
def test_load_policy_specs(tmp_path: Path, box_world_dir: Path) -> None:
    world = World.load(box_world_dir)
    random = load_policy("random", world, seed=1)
    assert isinstance(random, RandomPolicy) and isinstance(random, Policy)
    ctrl_dir = save_controller(world, tmp_path / "ctrl")
    for spec in (ctrl_dir, ctrl_dir / "controller.safetensors", ctrl_dir / "controller.json"):
        policy = load_policy(str(spec), world)
        assert isinstance(policy, ControllerPolicy) and policy.spec == str(spec)
        assert policy.act(np.zeros((2, 30), np.float32)).shape == (2, 3)
    with pytest.raises(FileNotFoundError, match="ships no controller"):
        load_policy("bundled", world)
    with pytest.raises(FileNotFoundError, match="no policy file is there"):
        load_policy(str(tmp_path / "nothing"), world)
    bigger = build_tiny_world(discrete=False, hidden=40, name="bigger")
    with pytest.raises(ValueError, match="controller expects obs of size 30 but world 'bigger'"):
        load_policy(str(ctrl_dir), bigger)

    shipped = shutil.copytree(box_world_dir, tmp_path / "world")
    bundle_controller(World.load(shipped), LinearController.load(ctrl_dir))
    assert isinstance(load_policy("bundled", World.load(shipped)), ControllerPolicy)


def test_load_policy_reads_sb3_agents(tmp_path: Path, discrete_world_dir: Path) -> None:
    from stable_baselines3 import PPO

    from dreamgym.sb3 import DreamVecEnv, save_agent

    world = World.load(discrete_world_dir)
    model = PPO(
        "MlpPolicy",
        DreamVecEnv(world, num_envs=2, device="cpu"),
        n_steps=16,
        batch_size=32,
        device="cpu",
    )
    save_agent(model, tmp_path / "agent", world, "zh")
    for spec in ("agent", "agent.zip", "agent.json"):
        policy = load_policy(str(tmp_path / spec), world)
        assert policy.obs_mode == "zh"
    returns = evaluate_dream(world, policy, episodes=3, seed=0, device="cpu")
    assert returns.shape == (3,) and np.isfinite(returns).all()


# --- dream ---------------------------------------------------------------------------------------
def test_evaluate_dream_is_reproducible(tmp_path: Path, world_dir: Path) -> None:
    world = World.load(world_dir)
    ctrl = save_controller(world, tmp_path / "ctrl")
    for spec in ("random", str(ctrl)):
        a = evaluate_dream(
            world, load_policy(spec, world, seed=0), episodes=6, seed=3, device="cpu"
        )
        b = evaluate_dream(
            world, load_policy(spec, world, seed=0), episodes=6, seed=3, device="cpu"
        )
        c = evaluate_dream(
            world, load_policy(spec, world, seed=0), episodes=6, seed=4, device="cpu"
        )
        assert a.shape == (6,) and a.dtype == np.float64
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    assert evaluate_dream(world, str(ctrl), episodes=2, seed=3, device="cpu").shape == (2,)


def test_evaluate_dream_counts_only_the_first_episode(tmp_path: Path) -> None:
    # every episode ends at its first step: the return is the first reward, however long we run
    world = build_tiny_world(discrete=False, done_logit=30.0)
    policy = RandomPolicy(world.action_space, seed=0)
    one = evaluate_dream(world, policy, episodes=5, seed=1, max_steps=1, device="cpu")
    policy = RandomPolicy(world.action_space, seed=0)
    many = evaluate_dream(world, policy, episodes=5, seed=1, max_steps=40, device="cpu")
    np.testing.assert_allclose(one, many)


def test_evaluate_dream_threshold_termination() -> None:
    """A done probability of ~0.5 every step: sampled deaths end dreams at different steps; the
    threshold rule ends every dream at step 1 below p and never above it (truncated at the cap)."""
    from dreamgym.evaluation.dream import dream_episodes

    cfg = build_tiny_world(discrete=False).mdnrnn.config
    logit = float(np.log(cfg.done_pos_weight)) - cfg.done_logit_offset  # p = 0.5, weight undone
    world = build_tiny_world(discrete=False, done_logit=logit)
    assert abs(float(world.mdnrnn.done_probability(torch.tensor(logit))) - 0.5) < 1e-6

    def lengths(**kw: object) -> np.ndarray:
        policy = RandomPolicy(world.action_space, seed=0)
        return dream_episodes(world, policy, 64, 0, max_steps=30, device="cpu", **kw).lengths

    sampled = lengths()
    assert sampled.min() == 1 and sampled.max() > 1
    assert (lengths(termination="threshold", done_threshold=0.4) == 1).all()
    assert (lengths(termination="threshold", done_threshold=0.6) == 30).all()
    with pytest.raises(ValueError, match="termination"):
        lengths(termination="never")


# --- reality and the gap ---------------------------------------------------------------------
def test_evaluate_real_same_returns_in_workers_and_in_process(
    tmp_path: Path, box_world_dir: Path
) -> None:
    world = World.load(box_world_dir)
    ctrl = str(save_controller(world, tmp_path / "ctrl"))
    kw = dict(episodes=3, seed=7, max_steps=REAL_STEPS, progress=False)
    alone = evaluate_real(world, ctrl, workers=1, **kw)  # type: ignore[arg-type]
    parallel = evaluate_real(str(box_world_dir), ctrl, workers=2, **kw)  # type: ignore[arg-type]
    np.testing.assert_allclose(alone, parallel)  # episode i uses seed 7 + i wherever it runs
    assert alone.shape == (3,) and len(set(alone.tolist())) > 1
    # a policy object (not a spec) runs in this process, with the same result
    obj = ControllerPolicy(LinearController.load(ctrl, world))
    np.testing.assert_allclose(evaluate_real(world, obj, workers=2, **kw), alone)  # type: ignore[arg-type]
    # the random baseline is reseeded per episode: episode 1 alone = episode 1 of a longer run
    rand = evaluate_real(world, "random", workers=1, **kw)  # type: ignore[arg-type]
    one = evaluate_real(
        world, "random", episodes=1, seed=8, workers=1, max_steps=REAL_STEPS, progress=False
    )
    assert one[0] == pytest.approx(rand[1])


def test_gap_writes_files_and_matches_the_evaluations(tmp_path: Path, box_world_dir: Path) -> None:
    world = World.load(box_world_dir)
    ctrl = str(save_controller(world, tmp_path / "ctrl"))
    out = tmp_path / "gap"
    report = gap(
        GapConfig(
            world=str(box_world_dir), policy=ctrl, episodes=3, seed=5, out=str(out), max_steps=REAL_STEPS,
            workers=1, device="cpu", resamples=2000, progress=False,
        )
    )  # fmt: skip
    dream = evaluate_dream(
        world, load_policy(ctrl, world), 3, seed=5, max_steps=REAL_STEPS, device="cpu"
    )
    real = evaluate_real(world, ctrl, 3, seed=5, workers=1, max_steps=REAL_STEPS, progress=False)
    np.testing.assert_allclose(report["dream"]["returns"], dream)
    np.testing.assert_allclose(report["real"]["returns"], real)
    saved = json.loads((out / "gap.json").read_text())
    assert saved["dream"]["mean"] == pytest.approx(dream.mean())
    assert saved["real"]["ci95"][0] <= real.mean() <= saved["real"]["ci95"][1]
    rows = list(csv.DictReader((out / "gap.csv").open()))
    assert [float(r["real_return"]) for r in rows] == pytest.approx(real.tolist())
    assert (out / "gap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gap_warns_when_the_dream_is_too_kind(box_world_dir: Path) -> None:
    world = World.load(box_world_dir)
    kind = gap_report(
        world, "x", np.array([10.0, 11.0, 12.0]), np.array([5.0, 6.0, 7.0]), margin=0.2
    )
    assert kind["exploit_warning"] and "exploiting the model" in kind["warning"]
    assert kind["ratio"] == pytest.approx(11.0 / 6.0)
    fair = gap_report(world, "x", np.array([6.0, 7.0]), np.array([6.0, 6.5]), margin=0.2)
    assert not fair["exploit_warning"]


def test_bootstrap_ci_is_seeded() -> None:
    x = np.random.default_rng(0).normal(3.0, 1.0, 50)
    lo, hi = bootstrap_ci(x, seed=1)
    assert (lo, hi) == bootstrap_ci(x, seed=1)
    assert lo < x.mean() < hi and hi - lo < 1.0
    assert bootstrap_ci(np.array([2.0]), seed=0) == (2.0, 2.0)


def test_cli_evaluate_json(capsys: pytest.CaptureFixture[str], discrete_world_dir: Path) -> None:
    args = [
        "evaluate",
        "--world",
        str(discrete_world_dir),
        "--policy",
        "random",
        "--episodes",
        "4",
        "--seed",
        "2",
        "--device",
        "cpu",
        "--json",
    ]
    assert cli_main([*args, "--dream"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {
        "world",
        "policy",
        "mode",
        "episodes",
        "seed",
        "temperature",
        "termination",
        "done_threshold",
        "precision",
        "mean",
        "std",
        "ci95",
        "returns",
    }
    assert result["mode"] == "dream" and len(result["returns"]) == 4
    assert result["termination"] == "sample" and result["done_threshold"] is None
    world = World.load(discrete_world_dir)
    expected = evaluate_dream(
        world, RandomPolicy(world.action_space, seed=2), 4, seed=2, device="cpu"
    )
    assert result["returns"] == pytest.approx(expected.tolist())
    assert cli_main([*args, "--dream", "--policy", "nowhere"]) == 2
    assert "no policy file is there" in capsys.readouterr().err


def _module_prefixed_world(tmp_path: Path, env: str) -> Path:
    """A tiny world learned (so its config says) from `dreamgym_test_envs:<env>`."""
    import gymnasium as gym

    from dreamgym.models.mdnrnn import MDNRNNConfig
    from dreamgym.models.vae import VAEConfig
    from dreamgym.preprocessing import FramePreprocessing

    world = World.build(
        f"dreamgym_test_envs:{env}",
        gym.spaces.Discrete(3),
        FramePreprocessing(),
        vae_config=VAEConfig(latent_dim=4),
        rnn_config=MDNRNNConfig(latent_dim=4, action_dim=3, hidden_dim=8, n_mixtures=2),
        initial_frames=np.zeros((2, 64, 64, 3), np.uint8),
        name="prefixed",
    )
    return world.save(tmp_path / env)


def test_world_of_a_module_prefixed_env_evaluates_in_reality(tmp_path: Path) -> None:
    world_dir = _module_prefixed_world(tmp_path, "TestImage-v0")
    kw = dict(episodes=3, seed=2, progress=False)
    alone = evaluate_real(str(world_dir), "random", workers=1, **kw)  # type: ignore[arg-type]
    parallel = evaluate_real(str(world_dir), "random", workers=2, **kw)  # type: ignore[arg-type]
    np.testing.assert_allclose(alone, parallel)
    assert alone.shape == (3,) and np.all(alone > 0)  # reward = action, 12 steps


def test_real_worker_setup_error_is_the_one_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import os

    import dreamgym_test_envs as envs

    from dreamgym.runners import WorkerSetupError

    os.environ[envs.DRIVER_PID_VAR] = str(os.getpid())  # workers cannot make the env
    world_dir = _module_prefixed_world(tmp_path, "DriverOnly-v0")
    with pytest.raises(WorkerSetupError, match="real-env worker process") as e:
        evaluate_real(str(world_dir), "random", episodes=2, seed=0, workers=2, progress=False)
    assert envs.MISSING_MESSAGE in str(e.value)
    args = ["evaluate", "--world", str(world_dir), "--policy", "random", "--real"]
    assert cli_main([*args, "--episodes", "2", "--workers", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and envs.MISSING_MESSAGE in err[0], err
