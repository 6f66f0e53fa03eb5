"""An RSSM world through every job that reads M: teacher forcing, diagnose, calibrate,
evaluate, gap, the controller search and an SB3 agent (`dreamgym.models.memory`, the seam).

Real episodes run in `dreamgym_test_envs:TestImage-v0` (12 steps, reward = action), so the
real side is fast and known; teacher forcing is checked against M's own arithmetic (the
MDN-RNN's LSTM over the whole episode as before the seam, the RSSM's posterior and prior).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import build_tiny_world

from dreamgym.cli import main as cli_main
from dreamgym.data import collect, load_manifest
from dreamgym.evaluation import evaluate_real
from dreamgym.evaluation.diagnose.figures import dream_rollout_png
from dreamgym.evaluation.diagnose.teacher import (
    PRIOR_DRAWS,
    RealEpisode,
    teacher_force_episode,
    teacher_force_episodes,
)
from dreamgym.policies import FramePolicyFactory, LinearController, load_policy
from dreamgym.world import World

TEST_ENV = "dreamgym_test_envs:TestImage-v0"
"""Episodes of 12 steps, reward = the Discrete(3) action."""
STEPS = 8
"""Real and dream episodes of the job tests are capped here."""
DONE_LOGIT = -3.0
"""The calibration world's constant done logit: p(done) ≈ 0.047, dreams of ≈ 21 steps."""


def _episode(steps: int, seed: int) -> RealEpisode:
    rng = np.random.default_rng(seed)
    return RealEpisode(
        rng.integers(0, 256, (steps + 1, 64, 64, 3), dtype=np.uint8),
        rng.integers(0, 3, steps).astype(np.int64),
        rng.normal(size=steps).astype(np.float32),
        np.eye(1, steps, steps - 1, dtype=bool)[0],
    )


def _image_world(stoch: str, done_logit: float | None = None) -> World:
    """A tiny RSSM world whose config says it was learned from TEST_ENV."""
    world = build_tiny_world(discrete=True, rssm=stoch, name=f"tiny-rssm-{stoch}")
    world.config["env_id"] = TEST_ENV
    if done_logit is not None:  # a done head that says `done_logit` in every state
        last = world.rssm.done_head[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(done_logit)
    return world


@pytest.fixture(scope="module")
def image_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved categorical-RSSM world of TEST_ENV (read-only: copy first)."""
    return _image_world("categorical").save(tmp_path_factory.mktemp("worlds") / "rssm")


# --- teacher forcing through the seam --------------------------------------------------------------
def test_mdn_teacher_forcing_equals_the_lstm_pass_over_the_episode() -> None:
    """The seam's step-by-step pass gives what one `MDNRNN.forward` over each episode gave
    (the code before the seam), episodes of several lengths read side by side."""
    world = build_tiny_world(discrete=True, seed=3)
    world.mdnrnn.config.done_pos_weight = 3.0
    world.mdnrnn.config.done_logit_offset = 0.4
    episodes = [_episode(steps, seed) for seed, steps in enumerate((9, 1, 23, 14))]
    forced = teacher_force_episodes(world, episodes)
    with torch.inference_mode():
        for ep, f in zip(episodes, forced, strict=True):
            mu, logvar = world.vae.encode(torch.as_tensor(ep.frames))
            actions = torch.nn.functional.one_hot(torch.as_tensor(ep.actions), 3).float()
            out, _ = world.mdnrnn(mu[None, :-1], actions[None])
            p_done = world.mdnrnn.done_probability(out.done_logit[0])
            assert f.reward.shape == f.p_done.shape == (len(ep.rewards),)
            np.testing.assert_allclose(f.reward, out.reward[0].numpy(), atol=1e-5)
            np.testing.assert_allclose(f.p_done, p_done.numpy(), atol=1e-6)
            np.testing.assert_allclose(f.mu, mu.numpy(), atol=1e-6)
            np.testing.assert_allclose(f.logvar, logvar.numpy(), atol=1e-6)
            np.testing.assert_array_equal(f.actions, actions.numpy())
    alone = teacher_force_episode(world, episodes[2])  # a batch of one: the same numbers
    np.testing.assert_allclose(alone.reward, forced[2].reward, atol=1e-6)
    np.testing.assert_allclose(alone.p_done, forced[2].p_done, atol=1e-7)


@pytest.mark.parametrize("stoch", ["gaussian", "categorical"])
def test_rssm_teacher_forcing_reads_the_posterior_and_predicts_with_the_prior(stoch: str) -> None:
    """Frame 0 seeds the posterior; each step's reward and P(done) are the mean of the heads over
    PRIOR_DRAWS seeded draws of the prior at τ = 1 by the recorded action, before the posterior
    observes the next frame."""
    world = build_tiny_world(discrete=True, rssm=stoch, seed=4)
    world.rssm.config.done_logit_offset = -0.7
    episodes = [_episode(7, 0), _episode(3, 1)]
    rssm = world.rssm
    with torch.inference_mode():
        for ep in episodes:
            f = teacher_force_episode(world, ep)  # a batch of one: the draws below, in order
            mu, _ = world.vae.encode(torch.as_tensor(ep.frames))
            actions = torch.nn.functional.one_hot(torch.as_tensor(ep.actions), 3).float()
            state = rssm.observe(rssm.initial_state(1), mu[:1], torch.zeros(1, 3), sample=False)
            generator = torch.Generator().manual_seed(0)
            for t in range(len(ep.rewards)):
                draws = [
                    rssm.imagine(state, actions[t : t + 1], 1.0, generator)
                    for _ in range(PRIOR_DRAWS)
                ]
                reward = sum(float(d.reward[0]) for d in draws) / PRIOR_DRAWS
                p_done = sum(float(d.done_probability[0]) for d in draws) / PRIOR_DRAWS
                assert f.reward[t] == pytest.approx(reward, abs=1e-5)
                assert f.p_done[t] == pytest.approx(p_done, abs=1e-6)
                state = rssm.observe(state, mu[t + 1 : t + 2], actions[t : t + 1], sample=False)
            assert np.all((f.p_done > 0) & (f.p_done < 1)) and np.all(np.isfinite(f.reward))
    forced = teacher_force_episodes(world, episodes)
    again = teacher_force_episodes(world, episodes)  # seeded: the same figures every time
    assert all(np.array_equal(a.reward, b.reward) for a, b in zip(forced, again, strict=True))


def test_dream_rollout_figure_of_an_rssm_world() -> None:
    world = build_tiny_world(discrete=True, rssm="gaussian")
    ep = _episode(30, 2)
    png = dream_rollout_png(world, ep, teacher_force_episode(world, ep), 1.2, seed=0)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


# --- the jobs on a saved RSSM world ------------------------------------------------------------------
def test_diagnose_on_an_rssm_world(
    tmp_path: Path, image_world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "diag"
    argv = ["diagnose", "--world", str(image_world), "--episodes", "2", "--max-steps", str(STEPS)]
    argv += ["--workers", "1", "--out", str(out), "--resamples", "50", "--dream-episodes", "3"]
    assert cli_main([*argv, "--no-progress"]) == 0
    report = json.loads((out / "diagnose.json").read_text())
    assert len(report["suite"]) == 5  # Discrete(3): three constants, random, alternating
    for row in report["suite"]:
        assert math.isfinite(row["dream"]["mean"]) and math.isfinite(row["real"]["mean"])
    teacher = report["teacher"]
    assert teacher["episodes"] == 2 and teacher["source"]["kind"] == "fresh"
    for row in teacher["per_episode"]:
        assert math.isfinite(row["predicted_return"]) and row["steps"] <= STEPS
        assert 0.0 <= row["predicted_terminations"] <= row["steps"]
    assert math.isfinite(teacher["reward_mse_per_step"])
    for name in ("suite.png", "teacher.png", "reconstructions.png", "dream_rollout.png"):
        assert (out / name).stat().st_size > 0
    assert "Teacher forcing along 2 real episodes" in capsys.readouterr().out


def test_alternating_phase_restarts_with_each_real_episode(image_world: Path) -> None:
    """An RSSM's first observation is its posterior, not zeros: the evaluation tells the policy
    that an episode starts. `alternate:0,2@3` over 4 steps (reward = action) scores 0+0+0+2."""
    returns = evaluate_real(
        image_world, "alternate:0,2@3", 3, seed=0, workers=1, max_steps=4, progress=False
    )
    assert returns.tolist() == [2.0, 2.0, 2.0]
    policy = load_policy("alternate:0,2@3", World.load(image_world))
    obs = np.ones((1, 64), np.float32)  # never zeros: only start_episode restarts the phase
    assert [int(policy.act(obs)[0]) for _ in range(4)] == [0, 0, 0, 2]
    policy.start_episode()
    assert int(policy.act(obs)[0]) == 0


def test_calibrate_an_rssm_world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The offset lands in config.json's "rssm" section and the dreams follow the data."""
    world_dir = _image_world("gaussian", done_logit=DONE_LOGIT).save(tmp_path / "world")
    data = tmp_path / "noop"
    policy = FramePolicyFactory("constant:0", world_dir)  # through the RSSM's tracker
    collect(TEST_ENV, 2, data, workers=1, policy=policy, seed=1, progress=False)
    real_mean = float(np.mean([e["steps"] for e in load_manifest(data)["episodes"]]))
    assert real_mean == 12.0
    argv = ["calibrate", "--world", str(world_dir), "--data", str(data), "--no-progress"]
    assert cli_main([*argv, "--dreams", "512", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] and report["previous_offset"] == 0.0
    # Dream lengths are geometric, mean 1/p: p = 1/12 asks for logit(1/12) − DONE_LOGIT.
    expected = math.log((1 / 12) / (11 / 12)) - DONE_LOGIT
    assert report["offset"] == pytest.approx(expected, abs=0.25)
    assert report["targets"][0]["dream_mean"] == pytest.approx(real_mean, rel=0.1)
    config = json.loads((world_dir / "config.json").read_text())
    assert config["rssm"]["done_logit_offset"] == report["offset"] and "mdnrnn" not in config
    assert World.load(world_dir).rssm.config.done_logit_offset == report["offset"]


def test_controller_evaluate_gap_and_sb3_on_an_rssm_world(
    tmp_path: Path, image_world: Path
) -> None:
    ctrl = tmp_path / "ctrl"
    argv = ["controller", "--world", str(image_world), "--out", str(ctrl), "--generations", "2"]
    argv += ["--popsize", "4", "--rollouts", "2", "--max-steps", "5", "--device", "cpu"]
    assert cli_main([*argv, "--no-progress"]) == 0
    history = json.loads((ctrl / "history.json").read_text())["generations"]
    assert len(history) == 2 and all(math.isfinite(h["best"]) for h in history)

    common = ["--world", str(image_world), "--episodes", "2", "--max-steps", str(STEPS)]
    common += ["--no-progress", "--json"]
    for side in ("--dream", "--real"):
        argv = ["evaluate", *common, "--policy", str(ctrl), side, "--workers", "1"]
        assert cli_main(argv) == 0
    gap = tmp_path / "gap"
    argv = ["gap", *common[:-1], "--policy", str(ctrl), "--workers", "1", "--out", str(gap)]
    assert cli_main(argv) == 0
    report = json.loads((gap / "gap.json").read_text())
    assert math.isfinite(report["dream"]["mean"]) and math.isfinite(report["real"]["mean"])

    agent = tmp_path / "agent"
    kwargs = '{"n_steps": 32, "batch_size": 32, "n_epochs": 1}'
    argv = ["sb3", "--world", str(image_world), "--out", str(agent), "--algo", "ppo"]
    argv += ["--steps", "256", "--num-envs", "4", "--algo-kwargs", kwargs, "--no-progress"]
    assert cli_main(argv) == 0
    assert json.loads(agent.with_suffix(".json").read_text())["num_timesteps"] >= 256
    argv = ["evaluate", *common, "--policy", str(agent.with_suffix(".zip")), "--dream"]
    assert cli_main(argv) == 0


def test_mdn_only_options_refuse_an_rssm_world_clearly(tmp_path: Path) -> None:
    """Ensemble members and obs_mode "zch" need an MDN-RNN: the error says so, and what to do."""
    mdn = build_tiny_world(discrete=True).save(tmp_path / "mdn")
    rssm = build_tiny_world(discrete=True, rssm="gaussian").save(tmp_path / "rssm")  # same V
    with pytest.raises(ValueError, match="has an RSSM memory; ensemble dreams step MDN-RNN"):
        gym.make("DreamEnv-v0", world=str(mdn), ensemble=[str(rssm)])
    with pytest.raises(ValueError, match="RSSM memory: use obs_mode 'zh'"):
        LinearController(World.load(rssm), obs_mode="zch")
