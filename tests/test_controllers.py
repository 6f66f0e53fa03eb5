"""The linear controller, its files, the batched population, and CMA-ES in the dream."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import BOX_ACTIONS, build_tiny_world
from safetensors.numpy import load_file as load_np

from dreamgym.cli import main as cli_main
from dreamgym.controllers import (
    CONTROLLER_META,
    CONTROLLER_WEIGHTS,
    HISTORY_FILE,
    STATE_FILE,
    ControllerConfig,
    ControllerPolicy,
    LinearController,
    PopulationController,
    PopulationEvaluator,
    bundle_controller,
    load_bundled_controller,
    n_params,
    train_controller,
)
from dreamgym.envs.dream import DreamEnv
from dreamgym.models.mdnrnn import LOG_SIGMA_MAX, LOG_SIGMA_MIN, MDNRNNConfig
from dreamgym.models.vae import VAEConfig
from dreamgym.preprocessing import FramePreprocessing
from dreamgym.world import World


def random_controller(world: World, seed: int = 0, obs_mode: str = "zh") -> LinearController:
    ctrl = LinearController(world, obs_mode=obs_mode)
    ctrl.set_params(np.random.default_rng(seed).normal(0.0, 0.5, ctrl.n_params))
    return ctrl


# --- the map -----------------------------------------------------------------------------------
def test_carracing_controller_has_867_parameters() -> None:
    world = World.build("CarRacing-v3", BOX_ACTIONS, FramePreprocessing())  # z 32, h 256
    ctrl = LinearController(world)
    assert ctrl.obs_dim == 288
    assert ctrl.n_params == 288 * 3 + 3 == 867 == n_params(288, BOX_ACTIONS)
    assert LinearController(world, obs_mode="z").n_params == 32 * 3 + 3


def test_action_map_squashes_into_the_bounds() -> None:
    ctrl = LinearController(1, BOX_ACTIONS, action_head="affine")  # the head of old files
    x = torch.tensor([[-50.0], [0.0], [0.3], [50.0]])
    ctrl.W = torch.ones(3, 1)
    a = ctrl.act_tensor(x)
    assert torch.allclose(a[0], torch.tensor([-1.0, 0.0, 0.0]))
    assert torch.allclose(a[1], torch.tensor([0.0, 0.5, 0.5]))
    assert torch.allclose(a[3], torch.tensor([1.0, 1.0, 1.0]))
    # tanh for steering, sigmoid(2x) for gas and brake
    assert torch.allclose(a[2, 0], torch.tanh(torch.tensor(0.3)))
    assert torch.allclose(a[2, 1:], torch.sigmoid(torch.tensor(0.6)).expand(2))
    disc = LinearController(2, gym.spaces.Discrete(3, start=1))
    disc.W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    assert disc.act_tensor(torch.tensor([[2.0, 1.0], [0.0, 3.0], [-2.0, -2.0]])).tolist() == [
        1,
        2,
        3,
    ]


def test_population_equals_each_candidate(box_world_dir: Path, discrete_world_dir: Path) -> None:
    for world_dir in (box_world_dir, discrete_world_dir):
        world = World.load(world_dir)
        ctrls = [random_controller(world, seed=s) for s in range(5)]
        obs = torch.randn(5, 7, ctrls[0].obs_dim, generator=torch.Generator().manual_seed(0))
        pop = PopulationController(
            ctrls[0].obs_dim, world.action_space, np.stack([c.get_params() for c in ctrls])
        )
        batched = pop.act(obs)
        for p, ctrl in enumerate(ctrls):
            single = ctrl.act_tensor(obs[p])
            if isinstance(world.action_space, gym.spaces.Discrete):
                assert torch.equal(batched[p], single)
            else:
                assert torch.allclose(batched[p], single, atol=1e-6)


# --- files -------------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path: Path, box_world_dir: Path) -> None:
    world = World.load(box_world_dir)
    ctrl = random_controller(world)
    ctrl.save(tmp_path / "ctrl", world=world, fitness=1.5, generation=3, temperature=1.2)
    assert (tmp_path / "ctrl" / CONTROLLER_WEIGHTS).is_file()
    meta = json.loads((tmp_path / "ctrl" / CONTROLLER_META).read_text())
    assert meta["obs_dim"] == ctrl.obs_dim and meta["obs_mode"] == "zh"
    assert meta["fitness"] == 1.5 and meta["generation"] == 3 and meta["temperature"] == 1.2
    assert meta["world"]["env_id"] == "CarRacing-v3" and len(meta["world"]["config_sha256"]) == 64
    for path in ("ctrl", f"ctrl/{CONTROLLER_WEIGHTS}", f"ctrl/{CONTROLLER_META}"):
        loaded = LinearController.load(tmp_path / path, world)
        np.testing.assert_array_equal(loaded.get_params(), ctrl.get_params())
    obs = np.random.default_rng(0).normal(size=(4, ctrl.obs_dim)).astype(np.float32)
    np.testing.assert_array_equal(
        ControllerPolicy(loaded).act(obs), ControllerPolicy(ctrl).act(obs)
    )
    # x.safetensors + x.json also work
    ctrl.save(tmp_path / "best.safetensors")
    assert (tmp_path / "best.json").is_file()
    np.testing.assert_array_equal(
        LinearController.load(tmp_path / "best.json").get_params(), ctrl.get_params()
    )


def test_load_checks_shapes_against_the_world(tmp_path: Path, box_world_dir: Path) -> None:
    world = World.load(box_world_dir)
    ctrl = random_controller(world)
    ctrl.save(tmp_path / "ctrl", world=world)
    other = build_tiny_world(discrete=False, hidden=12, name="smaller")
    size = world.latent_dim + world.hidden_dim
    with pytest.raises(
        ValueError,
        match=f"controller expects obs of size {size} but world 'smaller' gives 18 in obs_mode 'zh'",
    ):
        LinearController.load(tmp_path / "ctrl", other)
    with pytest.raises(ValueError, match="acts in Box"):
        LinearController.load(tmp_path / "ctrl", build_tiny_world(discrete=True))
    with pytest.raises(ValueError, match=r"expected 93 parameters \(3 × 30 \+ 3\)"):
        ctrl.set_params(np.zeros(30))
    # weights replaced behind the sidecar's back
    (tmp_path / "ctrl" / CONTROLLER_WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="sha256"):
        LinearController.load(tmp_path / "ctrl", world)
    with pytest.raises(FileNotFoundError, match="no controller"):
        LinearController.load(tmp_path / "missing")


def test_world_bundle_can_ship_a_controller(tmp_path: Path, box_world_dir: Path) -> None:
    world_dir = shutil.copytree(box_world_dir, tmp_path / "world")
    world = World.load(world_dir)
    with pytest.raises(FileNotFoundError, match="ships no controller"):
        load_bundled_controller(world)
    ctrl = random_controller(world)
    bundle_controller(world, ctrl)
    reloaded = World.load(world_dir)  # verifies the registered checksums
    assert CONTROLLER_WEIGHTS in reloaded.config["files"]
    assert CONTROLLER_META in reloaded.config["files"]
    np.testing.assert_array_equal(load_bundled_controller(reloaded).get_params(), ctrl.get_params())
    # shipped inside its world's folder: it names no folder of the machine it was bundled on
    assert json.loads((world_dir / CONTROLLER_META).read_text())["world"]["path"] is None


# --- fitness in the batched dream -----------------------------------------------------------
def deterministic_world() -> World:
    """A tiny world whose dream is deterministic: one initial latent, done decided by h."""
    # a shared-mixture M: the seed was picked for that head layout (episodes of several lengths)
    world = build_tiny_world(
        discrete=False, n_initial=1, initial_logvar=-60.0, seed=3, mixture="shared"
    )
    head = world.mdnrnn.head
    with torch.no_grad():  # done logit = ±large, sign set by the state: lengths vary, p ≈ 0 or 1
        head.weight[-1] = 400.0 * torch.randn(
            head.weight.shape[1], generator=torch.Generator().manual_seed(1)
        )
        head.bias[-1] = 0.0
    return world


def test_population_evaluation_matches_single_env_rollouts() -> None:
    world = deterministic_world()
    tau = 1e-12  # no sampling noise left in z_{t+1}
    ctrls = [random_controller(world, seed=s) for s in range(6)]
    params = np.stack([c.get_params() for c in ctrls])
    batched = PopulationEvaluator(world, 6, 3, temperature=tau, device="cpu")(params, seed=0)
    assert batched.shape == (6, 3)
    lengths = []
    for p, ctrl in enumerate(ctrls):  # reference: the Gymnasium single env, one episode
        alone = PopulationEvaluator(world, 1, 3, temperature=tau, device="cpu")(
            params[p : p + 1], seed=7
        )
        np.testing.assert_allclose(alone[0], batched[p], rtol=1e-4, atol=1e-4)
        env = DreamEnv(world, temperature=tau, device="cpu")
        obs, _ = env.reset(seed=11)
        total, steps, done = 0.0, 0, False
        while not done:
            obs, r, term, trunc, _ = env.step(ControllerPolicy(ctrl).act(obs[None])[0])
            total, steps, done = total + r, steps + 1, term or trunc
        lengths.append(steps)
        np.testing.assert_allclose(batched[p], total, rtol=1e-4, atol=1e-4)
    assert min(lengths) < world.max_episode_steps, (
        "no episode terminated: the alive mask is untested"
    )
    assert len(set(lengths)) > 1, lengths


@pytest.mark.parametrize("crn", [False, True])
@pytest.mark.parametrize("discrete", [False, True])
def test_population_evaluation_matches_a_per_env_reference(discrete: bool, crn: bool) -> None:
    """Random episode ends (p ≈ 0.08 per step): returns count each env's first episode only."""
    world = build_tiny_world(discrete=discrete, done_logit=-2.5)
    P, R = 3, 4
    ctrls = [random_controller(world, seed=s) for s in range(P)]
    params = np.stack([c.get_params() for c in ctrls])
    fast = PopulationEvaluator(world, P, R, device="cpu", crn=crn)(params, seed=42)
    # Reference: the same P·R envs through the numpy API, one candidate's policy per block of R
    # (with CRN: envs equal modulo R share their noise).
    from dreamgym.envs.dream import DreamVectorEnv

    env = DreamVectorEnv(
        world,
        num_envs=P * R,
        device="cpu",
        autoreset_mode="Disabled",
        noise_groups=R if crn else None,
    )
    obs, _ = env.reset(seed=42)
    total, alive, lengths = np.zeros(P * R), np.ones(P * R, bool), np.zeros(P * R, int)
    for _ in range(world.max_episode_steps):
        actions = np.concatenate(
            [ControllerPolicy(c).act(obs[p * R : (p + 1) * R]) for p, c in enumerate(ctrls)]
        )
        obs, reward, term, trunc, _ = env.step(actions)
        total += np.where(alive, reward, 0.0)
        lengths += alive
        alive &= ~(term | trunc)
    np.testing.assert_allclose(fast.reshape(-1), total, rtol=1e-5, atol=1e-5)
    assert len(set(lengths.tolist())) > 3 and lengths.min() < world.max_episode_steps


def bandit_world(
    gain: float = 4.0, width: float = 1.0, sigma: float = 0.5, steps: int = 10
) -> World:
    """A contextual bandit built into M by hand: reward peaks when the action equals z_0.

    The LSTM's first two units copy u = a − z_0 through g = tanh(gain·u ± width) (input and
    output gates open, forget gate shut), and the reward head reads h_0 − h_1, a bump of height 1
    at u = 0. z_{t+1} ~ N(0, σ²) whatever happened, so the controller must read z_0 from its
    observation: the optimum is a ≈ z_0, i.e. W[z_0] ≈ 1 and everything else 0.
    """
    z, h = 4, 8
    world = World.build(
        "Bandit-v0",
        gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
        FramePreprocessing(),
        vae_config=VAEConfig(latent_dim=z),
        rnn_config=MDNRNNConfig(latent_dim=z, action_dim=1, hidden_dim=h, n_mixtures=1),
        max_episode_steps=steps,
        name="bandit",
    )
    rnn = world.mdnrnn
    with torch.no_grad():
        for p in rnn.parameters():
            p.zero_()
        w_ih, b = rnn.lstm.weight_ih_l0, rnn.lstm.bias_ih_l0  # gate rows: i, f, g, o
        b[0:h], b[h : 2 * h], b[3 * h :] = 20.0, -20.0, 20.0
        for unit, offset in ((0, width), (1, -width)):
            w_ih[2 * h + unit, 0], w_ih[2 * h + unit, z] = -gain, gain
            b[2 * h + unit] = offset
        peak = 2.0 * math.tanh(math.tanh(width))
        rnn.head.weight[-2, 0], rnn.head.weight[-2, 1] = 1.0 / peak, -1.0 / peak  # reward
        rnn.head.bias[-1] = -30.0  # never done
        s = (math.log(sigma) - LOG_SIGMA_MIN) / (LOG_SIGMA_MAX - LOG_SIGMA_MIN)
        rnn.head.bias[1 + z : 1 + 2 * z] = math.log(s / (1.0 - s))  # σ of z_{t+1}
    world.initial_mu = torch.zeros(1, z)
    world.initial_logvar = torch.full((1, z), 2.0 * math.log(sigma))
    return world


def test_cma_es_reaches_the_known_optimum(tmp_path: Path) -> None:
    world = bandit_world()
    world.save(tmp_path / "bandit")
    steps = world.max_episode_steps
    judge = PopulationEvaluator(world, 21, 128, device="cpu")
    grid = np.zeros((21, 13))
    grid[:, 0] = np.linspace(0.0, 4.0, 21)  # a = tanh(w z_0): the family holding the optimum
    optimum = judge(grid, seed=1).mean(axis=1).max() / steps
    zero = judge(np.zeros((21, 13)), seed=2).mean() / steps
    assert optimum > 0.9 and zero < 0.6 * optimum  # the task is worth learning

    before = np.random.get_state()[1].copy()
    result = train_controller(
        ControllerConfig(
            world=str(tmp_path / "bandit"),
            out=str(tmp_path / "run"),
            generations=30,
            popsize=16,
            rollouts=8,
            sigma0=0.5,
            device="cpu",
            progress=False,
        )
    )
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # numpy's global RNG untouched
    ctrl = LinearController.load(result.controller, world)
    learned = PopulationEvaluator(world, 1, 256, device="cpu")(ctrl.get_params()[None], seed=3)
    assert learned.mean() / steps > 0.85 * optimum
    assert 0.7 < ctrl.W[0, 0].item() < 2.0  # it reads z_0, as designed


def test_interrupted_run_resumes_where_it_stopped(tmp_path: Path, box_world_dir: Path) -> None:
    def run(out: Path, generations: int, **kw: object) -> object:
        cfg = dict(
            world=str(box_world_dir),
            out=str(out),
            generations=generations,
            popsize=6,
            rollouts=2,
            max_steps=8,
            device="cpu",
            progress=False,
            seed=5,
        )
        cfg.update(kw)
        return train_controller(ControllerConfig(**cfg))  # type: ignore[arg-type]

    run(tmp_path / "straight", 4)
    run(tmp_path / "resumed", 2)
    state = load_np(str(tmp_path / "resumed" / STATE_FILE))
    assert state["fitness"].shape == (2, 6)
    result = run(tmp_path / "resumed", 4)  # the same command, more generations: continues at 2
    assert result.generations == 4
    a = json.loads((tmp_path / "straight" / HISTORY_FILE).read_text())["generations"]
    b = json.loads((tmp_path / "resumed" / HISTORY_FILE).read_text())["generations"]
    assert [g["generation"] for g in b] == [0, 1, 2, 3]
    for x, y in zip(a, b, strict=True):
        assert x["best"] == y["best"] and x["mean"] == y["mean"] and x["sigma"] == y["sigma"]
    np.testing.assert_array_equal(
        LinearController.load(tmp_path / "straight").get_params(),
        LinearController.load(tmp_path / "resumed").get_params(),
    )
    assert run(tmp_path / "resumed", 4).generations == 4  # nothing left to do
    with pytest.raises(ValueError, match="popsize=6 \\(now 8\\)"):
        run(tmp_path / "resumed", 5, popsize=8)


def test_cli_controller(tmp_path: Path, discrete_world_dir: Path) -> None:
    out = tmp_path / "ctrl"
    code = cli_main(
        ["controller", "--world", str(discrete_world_dir), "--out", str(out), "--generations", "2",
         "--popsize", "4", "--rollouts", "2", "--max-steps", "5", "--device", "cpu", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    meta = json.loads((out / CONTROLLER_META).read_text())
    assert meta["trained_generations"] == 2 and meta["action_space"]["type"] == "Discrete"
    history = json.loads((out / HISTORY_FILE).read_text())["generations"]
    assert len(history) == 2 and all(math.isfinite(h["best"]) for h in history)


def test_real_evaluation_during_training(tmp_path: Path, box_world_dir: Path) -> None:
    cfg = ControllerConfig(
        world=str(box_world_dir),
        out=str(tmp_path / "run"),
        generations=2,
        popsize=4,
        rollouts=2,
        max_steps=6,
        eval_real_every=2,
        eval_real_episodes=1,  # one episode: runs in this process
        device="cpu",
        progress=False,
    )
    train_controller(cfg)
    history = json.loads((tmp_path / "run" / HISTORY_FILE).read_text())["generations"]
    assert "real" not in history[0]
    assert len(history[1]["real"]["returns"]) == 1 and math.isfinite(history[1]["real"]["mean"])


def test_training_takes_its_real_evaluator_injected(tmp_path: Path, box_world_dir: Path) -> None:
    from dreamgym.agents.cmaes import train_controller as train_in_dream

    cfg = ControllerConfig(
        world=str(box_world_dir), out=str(tmp_path / "run"), generations=1, popsize=2, rollouts=1,
        max_steps=2, eval_real_every=1, eval_real_episodes=3, device="cpu", progress=False,
    )  # fmt: skip
    with pytest.raises(ValueError, match="real_evaluator"):
        train_in_dream(cfg)
    calls = []

    def fake_real(
        world: str, spec: str, episodes: int, seed: int, max_steps: int | None
    ) -> np.ndarray:
        calls.append((world, spec, episodes, seed, max_steps))
        return np.array([1.0, 3.0, 2.0])

    train_in_dream(cfg, real_evaluator=fake_real)
    assert calls == [(str(box_world_dir), str(tmp_path / "run" / "real_eval"), 3, 10_000, 2)]
    history = json.loads((tmp_path / "run" / HISTORY_FILE).read_text())["generations"]
    assert history[0]["real"]["returns"] == [1.0, 3.0, 2.0] and history[0]["real"]["mean"] == 2.0


def test_training_agents_and_policies_do_not_import_evaluation_or_commands() -> None:
    code = (
        "import sys, dreamgym.policies, dreamgym.training, dreamgym.agents.cmaes, dreamgym.agents.sb3, "
        "dreamgym.envs.sb3_vec\n"
        "up = ('dreamgym.evaluation', 'dreamgym.commands', 'dreamgym.cli', 'dreamgym.demo')\n"
        "bad = sorted(m for m in sys.modules if m.startswith(up))\n"
        "assert not bad, bad\n"
        "import dreamgym.evaluation\n"
        "assert 'dreamgym.cli' not in sys.modules and 'dreamgym.commands' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
