"""The controller search's options: [z, c, h] input, common random numbers, re-scoring the
CMA-ES mean, threshold termination, the L2 penalty, the paper's action head, and resuming."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BOX_ACTIONS, TINY_HIDDEN, TINY_LATENT, build_tiny_world, set_done_logit
from safetensors import safe_open
from safetensors.numpy import load_file as load_np
from safetensors.numpy import save_file as save_np

from dreamgym.agents.cmaes import HISTORY_FILE, STATE_FILE, ControllerConfig, train_controller
from dreamgym.agents.cmaes_search import Search, _ask, _generation_seeds, _mean_seed
from dreamgym.agents.population import EnsembleEvaluator, PopulationEvaluator, member_seed
from dreamgym.cli import main as cli_main
from dreamgym.envs.dream import DreamVectorEnv
from dreamgym.envs.real import make_real_env
from dreamgym.policies.linear import (
    CONTROLLER_META,
    ControllerPolicy,
    LinearController,
    load_bundled_controller,
)
from dreamgym.world import World
from dreamgym.world_config import write_config
from dreamgym.wrappers import WorldModelObservation


def run_config(world_dir: Path, out: Path, **kw: object) -> ControllerConfig:
    cfg: dict[str, object] = dict(
        world=str(world_dir), out=str(out), generations=2, popsize=4, rollouts=2, max_steps=6,
        mean_rollouts=4, device="cpu", progress=False, seed=3,
    )  # fmt: skip
    cfg.update(kw)
    return ControllerConfig(**cfg)  # type: ignore[arg-type]


def random_params(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.5, n)


# --- [z, c, h] ---------------------------------------------------------------------------------
def test_zch_observation_in_the_dream_and_in_reality(box_world_dir: Path) -> None:
    world = World.load(box_world_dir)
    dream = DreamVectorEnv(world, num_envs=3, obs_mode="zch", device="cpu")
    dim = TINY_LATENT + 2 * TINY_HIDDEN
    assert dream.single_observation_space.shape == (dim,)
    dream.reset(seed=0)
    step = dream.step_tensors(torch.as_tensor(BOX_ACTIONS.sample()).repeat(3, 1))
    np.testing.assert_array_equal(step.obs[:, TINY_LATENT:-TINY_HIDDEN], dream._c)
    np.testing.assert_array_equal(step.obs[:, -TINY_HIDDEN:], dream._h)
    assert not torch.equal(dream._c, dream._h)

    ctrl = LinearController(world, obs_mode="zch", params=random_params(dim * 3 + 3, 0))
    real = WorldModelObservation(make_real_env(world.env_id), world, obs_mode="zch")
    try:
        assert real.observation_space == dream.single_observation_space
        obs, _ = real.reset(seed=0)
        for _ in range(3):
            obs, *_ = real.step(ControllerPolicy(ctrl).act(obs[None])[0])
        assert obs in real.observation_space
        np.testing.assert_array_equal(obs[TINY_LATENT:-TINY_HIDDEN], real.c)
        np.testing.assert_array_equal(obs[-TINY_HIDDEN:], real.h)
        assert np.abs(real.c).max() > 0
    finally:
        real.close()


# --- common random numbers ---------------------------------------------------------------------
@pytest.mark.parametrize("discrete", [False, True])
def test_crn_identical_candidates_get_identical_returns(discrete: bool) -> None:
    world = build_tiny_world(discrete=discrete, done_logit=-2.5)
    n = LinearController(world).n_params
    a, b = random_params(n, 1), random_params(n, 2)
    params = np.stack([a, b, a, a])
    crn = PopulationEvaluator(world, 4, 3, device="cpu")  # CRN is the default
    returns = crn(params, seed=5)
    np.testing.assert_array_equal(returns[0], returns[2])
    np.testing.assert_array_equal(returns[0], returns[3])
    assert len(set(returns[0].tolist())) == 3  # rollouts differ from each other
    independent = PopulationEvaluator(world, 4, 3, device="cpu", crn=False)(params, seed=5)
    assert not np.array_equal(independent[0], independent[2])
    # generations meet other dreams: their seeds differ
    s0, s1 = (_generation_seeds(0, g)[1] for g in (0, 1))
    assert s0 != s1 and not np.array_equal(crn(params, seed=s0), crn(params, seed=s1))
    with pytest.raises(ValueError, match="noise_groups must divide num_envs \\(6\\)"):
        DreamVectorEnv(world, num_envs=6, noise_groups=4, device="cpu")


# --- re-scoring the mean -----------------------------------------------------------------------
def test_best_mean_is_the_controller_shipped(tmp_path: Path, box_world_dir: Path) -> None:
    world = World.load(box_world_dir)
    result = train_controller(run_config(box_world_dir, tmp_path / "run", generations=3))
    history = json.loads((tmp_path / "run" / HISTORY_FILE).read_text())
    scored = [g["mean_eval"]["return"] for g in history["generations"]]
    assert len(scored) == 3 and history["kept"] == "best-mean"
    best = int(np.argmax(scored))
    assert result.best_mean_generation == best and result.best_mean_return == max(scored)
    assert history["best_mean"] == {"return": max(scored), "generation": best}
    assert history["best_candidate"]["generation"] == result.best_generation
    shipped = LinearController.load(tmp_path / "run", world)
    assert shipped.metadata["kept"] == "best-mean" and shipped.metadata["fitness"] == max(scored)
    state = load_np(str(tmp_path / "run" / STATE_FILE))
    np.testing.assert_allclose(shipped.get_params(), state["best_mean_params"], rtol=1e-6)
    assert not np.allclose(shipped.get_params(), state["best_params"])  # not the best candidate
    # it scores what was recorded on the run's fixed dreams (the same seed every generation)
    judge = PopulationEvaluator(world, 1, 4, max_steps=6, device="cpu")
    again = judge(shipped.get_params()[None], seed=_mean_seed(3)).mean()
    assert again == pytest.approx(max(scored), rel=1e-5)
    # the mean re-scored after generation g is CMA-ES's mean after g's tell
    search = Search.start(shipped.n_params, 0.1, 4, 3, 0.0)
    for g in range(best + 1):
        search.es.tell(list(_ask(search.es, search.normal, 3, g)), list(-state["fitness"][g]))
    np.testing.assert_allclose(search.es.mean, state["best_mean_params"], rtol=1e-9)

    train_controller(run_config(box_world_dir, tmp_path / "cand", keep="best-candidate"))
    cand = LinearController.load(tmp_path / "cand", world)
    state = load_np(str(tmp_path / "cand" / STATE_FILE))
    np.testing.assert_allclose(cand.get_params(), state["best_params"], rtol=1e-6)
    assert cand.metadata["kept"] == "best-candidate"
    assert cand.metadata["best_mean"]["return"] is not None  # both are recorded


# --- termination, L2 ---------------------------------------------------------------------------
def test_threshold_termination_reaches_the_dream(tmp_path: Path, make_tiny_world) -> None:
    world_dir = make_tiny_world(tmp_path, discrete=True, done_logit=-3.0)
    world = World.load(world_dir)
    with torch.no_grad():  # reward 1 per step: a return is an episode's length
        world.mdnrnn.head.weight[-2].zero_()
        world.mdnrnn.head.bias[-2] = 1.0
    world.save(world_dir)
    n = LinearController(world).n_params
    params = np.stack([random_params(n, s) for s in range(2)])

    def lengths(**kw: object) -> np.ndarray:
        return PopulationEvaluator(world, 2, 3, max_steps=9, device="cpu", **kw)(params, seed=0)

    np.testing.assert_array_equal(lengths(termination="threshold", done_threshold=0.0), 1.0)
    np.testing.assert_array_equal(lengths(termination="threshold", done_threshold=0.5), 9.0)
    assert (lengths() < 9.0).any()  # sampled: p ≈ 0.05 per step ends some episodes early
    train_controller(
        run_config(world_dir, tmp_path / "run", termination="threshold", done_threshold=0.0)
    )
    meta = json.loads((tmp_path / "run" / CONTROLLER_META).read_text())
    assert meta["termination"] == "threshold" and meta["done_threshold"] == 0.0
    history = json.loads((tmp_path / "run" / HISTORY_FILE).read_text())["generations"]
    assert all(g["best"] == 1.0 and g["mean_eval"]["return"] == 1.0 for g in history)


def test_l2_lowers_fitness_by_lambda_times_squared_norm(
    tmp_path: Path, box_world_dir: Path
) -> None:
    lam = 0.3
    train_controller(run_config(box_world_dir, tmp_path / "plain", generations=1))
    train_controller(run_config(box_world_dir, tmp_path / "l2", generations=1, l2=lam))
    plain = load_np(str(tmp_path / "plain" / STATE_FILE))["fitness"][0]
    penalised = load_np(str(tmp_path / "l2" / STATE_FILE))["fitness"][0]
    n = LinearController(World.load(box_world_dir)).n_params
    search = Search.start(n, 0.1, 4, 3, lam)
    theta = _ask(search.es, search.normal, 3, 0)  # generation 0's candidates, in both runs
    np.testing.assert_allclose(plain - penalised, lam * np.square(theta).sum(axis=1), rtol=1e-9)
    assert json.loads((tmp_path / "l2" / CONTROLLER_META).read_text())["l2"] == lam


# --- action heads ------------------------------------------------------------------------------
def test_old_controller_files_keep_their_action_map(tmp_path: Path) -> None:
    """A controller file from before action heads (no "action_head" in its JSON) acts with the
    affine map it was trained with; the same weights under the paper's head brake exactly 0."""
    world = World.load("carracing", device="cpu")
    shipped = load_bundled_controller(world)
    assert shipped.head.mapping == "paper"  # the bundled controller is a new one
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    shutil.copy2(world.path / "controller.safetensors", old_dir / "controller.safetensors")
    meta = json.loads((world.path / CONTROLLER_META).read_text())
    del meta["action_head"]
    (old_dir / CONTROLLER_META).write_text(json.dumps(meta))
    ctrl = LinearController.load(old_dir)
    assert ctrl.head.mapping == "affine"
    obs = np.random.default_rng(0).normal(0, 1, (64, ctrl.obs_dim)).astype(np.float32)
    actions = ControllerPolicy(ctrl).act(obs)
    new = ControllerPolicy(shipped).act(obs)
    x = torch.addmm(ctrl.b, torch.as_tensor(obs), ctrl.W.t())
    np.testing.assert_array_equal(new[:, 0], actions[:, 0])  # steering: tanh either way
    np.testing.assert_allclose(new[:, 1:], torch.tanh(x[:, 1:]).clamp(0, 1), atol=1e-7)
    np.testing.assert_allclose(actions[:, 1:], (torch.tanh(x[:, 1:]) + 1) / 2, atol=1e-6)
    assert (new[:, 1:] == 0).mean() > 0.3 and (actions[:, 1:] == 0).mean() < 0.1


def test_paper_head_is_recorded_and_reloaded(tmp_path: Path, box_world_dir: Path) -> None:
    world = World.load(box_world_dir)
    ctrl = LinearController(world, params=random_params(LinearController(world).n_params, 0))
    ctrl.save(tmp_path / "c", world=world)
    meta = json.loads((tmp_path / "c" / CONTROLLER_META).read_text())
    assert meta["action_head"] == "paper" and "clip(tanh(x), 0, 1)" in meta["action_map"]
    assert LinearController.load(tmp_path / "c", world).head.mapping == "paper"
    x = torch.tensor([[-50.0], [0.0], [0.3], [50.0]])
    one = LinearController(1, BOX_ACTIONS)
    one.W = torch.ones(3, 1)
    a = one.act_tensor(x)
    expected = torch.tanh(x).expand(4, 3).clone()
    expected[:, 1:] = expected[:, 1:].clamp(0, 1)
    torch.testing.assert_close(a, expected)
    meta["action_head"] = "sigmoid"
    (tmp_path / "c" / CONTROLLER_META).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="action_head 'sigmoid'"):
        LinearController.load(tmp_path / "c")


# --- the command line and resuming -------------------------------------------------------------
def test_cli_flags_reach_the_run(tmp_path: Path, discrete_world_dir: Path) -> None:
    out = tmp_path / "ctrl"
    code = cli_main(
        ["controller", "--world", str(discrete_world_dir), "--out", str(out), "--generations", "2",
         "--popsize", "4", "--rollouts", "2", "--max-steps", "5", "--device", "cpu",
         "--no-progress", "--obs-mode", "zch", "--no-crn", "--eval-mean-every", "2",
         "--mean-rollouts", "3", "--keep", "best-candidate", "--termination", "threshold",
         "--done-threshold", "0.7", "--l2", "0.01", "--action-head", "affine"]
    )  # fmt: skip
    assert code == 0
    meta = json.loads((out / CONTROLLER_META).read_text())
    assert meta["obs_mode"] == "zch" and meta["action_head"] == "affine"
    assert meta["kept"] == "best-candidate" and meta["crn"] is False and meta["l2"] == 0.01
    assert meta["termination"] == "threshold" and meta["done_threshold"] == 0.7
    history = json.loads((out / HISTORY_FILE).read_text())
    assert history["run"]["mean_rollouts"] == 3 and history["run"]["eval_mean_every"] == 2
    assert ["mean_eval" in g for g in history["generations"]] == [False, True]
    with pytest.raises(ValueError, match="--keep best-mean needs the mean re-scored"):
        train_controller(run_config(discrete_world_dir, tmp_path / "x", eval_mean_every=0))


def _strip_new_options(state_file: Path) -> None:
    """Make a run's state look as if written before the new options existed."""
    with safe_open(str(state_file), framework="np") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != "best_mean_params"}
    run = json.loads(meta["run"])
    for key in ("termination", "done_threshold", "crn", "l2", "action_head", "keep"):
        run.pop(key)
    run.pop("eval_mean_every"), run.pop("mean_rollouts")
    meta["run"] = json.dumps(run)
    save_np(tensors, str(state_file), metadata=meta)


def test_a_run_from_before_the_new_options_resumes(tmp_path: Path, box_world_dir: Path) -> None:
    legacy = dict(crn=False, action_head="affine", keep="best-candidate", eval_mean_every=0)
    train_controller(run_config(box_world_dir, tmp_path / "straight", generations=3, **legacy))
    train_controller(run_config(box_world_dir, tmp_path / "old", generations=2, **legacy))
    _strip_new_options(tmp_path / "old" / STATE_FILE)
    with pytest.raises(ValueError, match="--no-crn --action-head affine --keep best-candidate"):
        train_controller(run_config(box_world_dir, tmp_path / "old", generations=3))
    assert train_controller(run_config(box_world_dir, tmp_path / "old", generations=3, **legacy))
    a = json.loads((tmp_path / "straight" / HISTORY_FILE).read_text())["generations"]
    b = json.loads((tmp_path / "old" / HISTORY_FILE).read_text())["generations"]
    assert [g["best"] for g in a] == [g["best"] for g in b]
    with pytest.raises(ValueError, match="l2=0.0 \\(now 0.5\\)"):
        train_controller(run_config(box_world_dir, tmp_path / "old", generations=4, l2=0.5))


def test_a_run_does_not_resume_in_a_recalibrated_world(tmp_path: Path, box_world_dir: Path) -> None:
    """`dreamgym calibrate` changes the dream without touching M's weights: a run must notice."""
    world_dir = World.load(box_world_dir).save(tmp_path / "world")
    train_controller(run_config(world_dir, tmp_path / "run", generations=1))
    config = json.loads((world_dir / "config.json").read_text())
    config["mdnrnn"]["done_logit_offset"] = -0.5
    write_config(world_dir, config)  # as `dreamgym calibrate` writes it
    with pytest.raises(ValueError, match="done_logit_offset=0.0 \\(now -0.5\\).*calibrated since"):
        train_controller(run_config(world_dir, tmp_path / "run", generations=2))
    history = json.loads((tmp_path / "run" / HISTORY_FILE).read_text())
    assert history["run"]["done_logit_offset"] == 0.0


# --- ensembles: candidates scored in other M's dreams, h tracked by the controller's own M -----
def _member(world: World, done_logit: float | None = None, jitter: float = 0.0) -> World:
    """A copy of `world` (same V) whose M is changed: a constant done logit and/or noise."""
    member = world.copy_to("cpu")
    with torch.no_grad():
        g = torch.Generator().manual_seed(7)
        for p in member.mdnrnn.parameters():
            p.add_(jitter * torch.randn(p.shape, generator=g))
    if done_logit is not None:
        set_done_logit(member, done_logit)
    return member


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("obs_mode", ["zh", "zch"])
def test_a_member_equal_to_the_world_dreams_what_the_world_dreams(
    discrete: bool, obs_mode: str
) -> None:
    """Tracking h beside a member's dream is the dream's own h when the member is the world."""
    world = build_tiny_world(discrete=discrete, done_logit=-2.5)
    params = np.stack(
        [random_params(LinearController(world, obs_mode=obs_mode).n_params, s) for s in range(4)]
    )
    own = PopulationEvaluator(world, 4, 3, obs_mode=obs_mode, device="cpu")(params, seed=5)
    copy = PopulationEvaluator(
        world, 4, 3, obs_mode=obs_mode, device="cpu", dream_world=_member(world)
    )(params, seed=5)
    np.testing.assert_array_equal(own, copy)
    alone = EnsembleEvaluator(world, [], 4, 3, obs_mode=obs_mode, device="cpu")(params, seed=5)
    np.testing.assert_array_equal(own, alone)


def test_an_ensemble_scores_every_candidate_in_every_member() -> None:
    world = build_tiny_world(discrete=False, done_logit=-2.5)
    short = _member(world, done_logit=30.0)  # every dream ends at its first step
    other = _member(world, jitter=0.05)
    params = np.stack([random_params(LinearController(world).n_params, s) for s in range(4)])
    ens = EnsembleEvaluator(world, [short, other], 4, 3, device="cpu", max_steps=6)
    assert ens.size == 3
    returns = ens(params, seed=11)
    assert returns.shape == (4, 9)
    alone = PopulationEvaluator(world, 4, 3, device="cpu", max_steps=6)
    np.testing.assert_array_equal(returns[:, :3], alone(params, seed=11))
    for k, member in ((1, short), (2, other)):
        ev = PopulationEvaluator(world, 4, 3, device="cpu", max_steps=6, dream_world=member)
        np.testing.assert_array_equal(returns[:, 3 * k : 3 * k + 3], ev(params, member_seed(11, k)))
    one_step = PopulationEvaluator(short, 4, 3, device="cpu", max_steps=1)(
        params, member_seed(11, 1)
    )
    np.testing.assert_allclose(returns[:, 3:6], one_step, rtol=1e-6)  # the first reward only
    assert not np.allclose(returns[:, 6:], returns[:, :3])


def test_a_member_must_share_v_env_and_actions() -> None:
    world = build_tiny_world(discrete=False)
    with pytest.raises(ValueError, match="another V.*--vae-from"):
        PopulationEvaluator(world, 2, 1, device="cpu", dream_world=build_tiny_world(False, seed=1))
    with pytest.raises(ValueError, match="models VizdoomTakeCover-v1, not CarRacing-v3"):
        EnsembleEvaluator(world, [build_tiny_world(discrete=True)], 2, 1, device="cpu")


def test_an_ensemble_run_records_its_members_and_resumes_only_with_them(
    tmp_path: Path, box_world_dir: Path
) -> None:
    world = World.load(box_world_dir)
    member_dir = _member(world, jitter=0.05).save(tmp_path / "member")
    out = tmp_path / "run"
    base = ["controller", "--world", str(box_world_dir), "--out", str(out), "--popsize", "4",
            "--rollouts", "2", "--max-steps", "5", "--mean-rollouts", "2", "--device", "cpu",
            "--no-progress"]  # fmt: skip
    assert cli_main([*base, "--generations", "1", "--ensemble", str(member_dir)]) == 0
    meta = json.loads((out / CONTROLLER_META).read_text())
    assert [m["path"] for m in meta["ensemble"]] == [str(member_dir)]
    history = json.loads((out / HISTORY_FILE).read_text())
    assert len(history["run"]["ensemble"]) == 1
    with pytest.raises(ValueError, match="ensemble.*pass the worlds the run started with"):
        train_controller(run_config(box_world_dir, out, generations=2, popsize=4, rollouts=2,
                                    max_steps=5, mean_rollouts=2, seed=0))  # fmt: skip
    assert cli_main([*base, "--generations", "2", "--ensemble", str(member_dir)]) == 0
    assert len(json.loads((out / HISTORY_FILE).read_text())["generations"]) == 2
