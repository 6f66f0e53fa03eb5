"""`dreamgym diagnose`: fixed policies, the fidelity flag, teacher forcing, the report and the CLI.

Real episodes run in VizdoomTakeCover-v1 (fast) with a tiny world that preprocesses its frames
as TakeCover's rule says, episodes capped at a few steps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tiny_world, set_done_logit

from dreamgym.cli import main as cli_main
from dreamgym.controllers import LinearController
from dreamgym.data import collect, load_episode, load_manifest
from dreamgym.envs.settings import DreamSettings
from dreamgym.evaluation import evaluate_dream, evaluate_real
from dreamgym.evaluation import real as real_module
from dreamgym.evaluation.diagnose import (
    DiagnoseConfig,
    diagnose,
    done_auc,
    fidelity_check,
    fixed_suite,
    suite_row,
    suite_table,
    teacher_force_episode,
)
from dreamgym.evaluation.diagnose.config import ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE
from dreamgym.evaluation.diagnose.teacher import RealEpisode
from dreamgym.evaluation.stats import spread_check
from dreamgym.policies import AlternatingPolicy, ConstantPolicy, load_policy
from dreamgym.preprocessing import preprocessing_for
from dreamgym.world import World

STEPS = 8
"""Real and dream episodes in these tests are capped at this many steps."""


@pytest.fixture(scope="module")
def doom_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny TakeCover world that reads the real env's "screen" (saved; do not modify)."""
    world = build_tiny_world(discrete=True, name="tiny-doom")
    world.config["preprocessing"] = preprocessing_for("VizdoomTakeCover-v1", None).to_dict()
    return world.save(tmp_path_factory.mktemp("worlds") / "doom")


# --- fixed policies ------------------------------------------------------------------------------
def test_constant_specs(discrete_world_dir: Path, box_world_dir: Path) -> None:
    doom, car = World.load(discrete_world_dir), World.load(box_world_dir)
    p = load_policy("constant:2", doom)
    assert isinstance(p, ConstantPolicy) and p.spec == "constant:2" and p.obs_mode == "zh"
    assert p.act(np.zeros((3, 30), np.float32)).tolist() == [2, 2, 2]
    a = load_policy("constant:0,0.5,0", car).act(np.zeros((2, 30), np.float32))
    assert a.dtype == np.float32 and a.tolist() == [[0, 0.5, 0], [0, 0.5, 0]]
    for bad, world in (("constant:3", doom), ("constant:1.5", doom), ("constant:0,2,0", car)):
        with pytest.raises(ValueError, match="is not an action of"):
            load_policy(bad, world)
    with pytest.raises(ValueError, match="separate the Box actions with '/'"):
        load_policy("alternate:0,1,0@5", car)
    with pytest.raises(ValueError, match="is not a whole number"):
        load_policy("alternate:1,2@x", doom)


def test_alternating_phase_restarts_where_h_is_zero(discrete_world_dir: Path) -> None:
    """A row's phase restarts on an episode's first observation (h = 0), per row."""
    world = World.load(discrete_world_dir)
    p = load_policy("alternate:1,2@2", world)
    assert isinstance(p, AlternatingPolicy)
    z, h = world.latent_dim, world.hidden_dim
    fresh = np.zeros((2, z + h), np.float32)
    moving = fresh.copy()
    moving[:, z] = 0.3  # h ≠ 0: the episode goes on
    seen = [p.act(fresh if t == 0 else moving).tolist() for t in range(5)]
    assert seen == [[1, 1], [1, 1], [2, 2], [2, 2], [1, 1]]
    restart = moving.copy()
    restart[1, z:] = 0.0  # row 1 starts a new episode, row 0 goes on
    assert p.act(restart).tolist() == [1, 1]
    assert p.act(moving).tolist() == [2, 1]


def test_box_alternating_and_suite_specs(box_world_dir: Path, discrete_world_dir: Path) -> None:
    car, doom = World.load(box_world_dir), World.load(discrete_world_dir)
    p = load_policy("alternate:-1,1,0/1,1,0@1", car)
    obs = np.zeros((1, 30), np.float32)
    assert p.act(obs).tolist() == [[-1, 1, 0]]
    obs[0, car.latent_dim] = 1.0
    assert p.act(obs).tolist() == [[1, 1, 0]]
    car_suite = dict(fixed_suite(car, 10))
    assert car_suite["no action (stands still)"] == "constant:0,0,0"
    assert car_suite["straight gas"] == "constant:0,1,0"
    assert len(car_suite) == 8 and "random" in car_suite.values()
    doom_suite = fixed_suite(doom, 7)
    assert [s for _, s in doom_suite] == [
        "constant:0",
        "constant:1",
        "constant:2",
        "random",
        "alternate:1,2@7",
    ]
    for _, spec in car_suite.items():  # every spec of the suite loads and fits the world
        load_policy(spec, car)


def test_fixed_specs_in_real_worker_processes(doom_world: Path) -> None:
    """Specs travel to workers as strings (never turned into paths) and give the same returns.

    Runs exactly what a spawned worker runs (its initializer, then one call per episode), in
    this process: spawning a pool costs more than the whole test.
    """
    spec = "alternate:1,2@3"
    assert real_module._portable_spec(spec) == spec
    one = evaluate_real(doom_world, spec, 2, seed=3, workers=1, max_steps=STEPS, progress=False)
    real_module._init_real_worker(str(doom_world), real_module._portable_spec(spec), 3, STEPS)
    try:
        worker = [real_module._real_worker_episode(i)[1] for i in range(2)]
    finally:
        real_module._WORKER["env"].close()
        real_module._WORKER.clear()
    assert worker == one.tolist() and np.all(np.isfinite(one))


# --- the flag and the statistics -----------------------------------------------------------------
def test_fidelity_check_hand_numbers() -> None:
    check = fidelity_check(110.0, 100.0, rel_tol=0.15, abs_tol=5.0)
    assert check == {"ratio": 1.1, "difference": 10.0, "ok": True, "flag": "ok"}
    high = fidelity_check(120.0, 100.0, rel_tol=0.15, abs_tol=5.0)
    assert high["flag"] == "dream high" and not high["ok"] and high["ratio"] == pytest.approx(1.2)
    low = fidelity_check(400.0, 600.0, rel_tol=0.15, abs_tol=30.0)  # 200 > max(90, 30)
    assert low["flag"] == "dream low" and low["ratio"] == pytest.approx(2 / 3)
    # Near zero the absolute tolerance decides: -34 vs -10 is off by 24 ≤ 30.
    assert fidelity_check(-10.0, -34.0, rel_tol=0.15, abs_tol=30.0)["ok"]
    assert not fidelity_check(-10.0, -34.0, rel_tol=0.15, abs_tol=20.0)["ok"]
    assert fidelity_check(3.0, 0.0, rel_tol=0.15, abs_tol=30.0)["ratio"] is None
    row = suite_row("p", "constant:0", np.array([1.0, 3.0]), np.array([2.0, 2.0]), 0, 0.15, 0, 200)
    assert row["dream"]["mean"] == 2.0 and row["real"]["std"] == 0.0 and row["ratio"] == 1.0
    assert row["spread"]["sd_ratio"] is None  # reality's std is 0


def test_spread_check_hand_numbers() -> None:
    """KS is the largest CDF gap, W₁ the area between the CDFs, sd_ratio the stds' ratio."""
    same = spread_check(np.array([1.0, 2.0, 3.0]), np.array([3.0, 1.0, 2.0]))
    assert same == {"sd_ratio": 1.0, "ks": 0.0, "wasserstein": 0.0}
    shifted = spread_check(np.array([11.0, 12.0, 13.0]), np.array([1.0, 2.0, 3.0]))
    assert shifted["ks"] == 1.0 and shifted["wasserstein"] == pytest.approx(10.0)
    # Same mean (2), three times the spread: W₁ = ∫|F_d − F_r| = 1/2·2 + 1/2·2 = 2 (hand CDFs).
    wide = spread_check(np.array([-1.0, 5.0]), np.array([1.0, 3.0]))
    assert wide["sd_ratio"] == pytest.approx(3.0) and wide["ks"] == 0.5
    assert wide["wasserstein"] == pytest.approx(2.0)
    table = suite_table([suite_row("p", "random", np.array([1.0, 5.0]), np.array([2.0, 4.0]),
                                   0, 0.15, 0, 50)])  # fmt: skip
    assert "| sd dream/real | KS | W₁ |" in table and "| 2.00 | 0.50 | 1.0 |" in table


def test_done_auc_hand_numbers() -> None:
    labels = np.array([0, 0, 1, 0, 1], bool)
    assert done_auc(np.array([0.1, 0.2, 0.9, 0.3, 0.8]), labels) == 1.0
    # Positives 0.3 and 0.1 against negatives 0.2, 0.3, 0.05: wins 2 + 0.5 (tie) + 1 → 3.5 / 6.
    assert done_auc(np.array([0.2, 0.3, 0.3, 0.05, 0.1]), labels) == pytest.approx(3.5 / 6)
    assert done_auc(np.array([0.1, 0.2]), np.array([0, 0], bool)) is None


# --- teacher forcing -----------------------------------------------------------------------------
def _short_episode(world: World, steps: int, seed: int = 0) -> RealEpisode:
    rng = np.random.default_rng(seed)
    return RealEpisode(
        rng.integers(0, 256, (steps + 1, 64, 64, 3), dtype=np.uint8),
        rng.integers(0, 3, steps).astype(np.int64),
        np.ones(steps, np.float32),
        np.eye(1, steps, steps - 1, dtype=bool)[0],
    )


def test_teacher_forcing_reproduces_hand_computed_predictions() -> None:
    world = build_tiny_world(discrete=True)
    world.mdnrnn.config.done_pos_weight = 4.0
    ep = _short_episode(world, 5)
    # Reward head constant 0.25 and done logit constant 1.0: the sums are known by hand.
    with torch.no_grad():
        world.mdnrnn.head.weight[-2].zero_()
        world.mdnrnn.head.bias[-2] = 0.25
    set_done_logit(world, 1.0)
    f = teacher_force_episode(world, ep)
    assert f.reward.sum() == pytest.approx(5 * 0.25, abs=1e-5)
    p = 1.0 / (1.0 + math.exp(-(1.0 - math.log(4.0))))  # the weight undone: odds / 4
    assert f.p_done.sum() == pytest.approx(5 * p, rel=1e-5)

    # A trained-looking M: the teacher-forced sums equal a step-by-step pass from h = 0 over
    # V's means and the one-hot actions (the dream's code path).
    world = build_tiny_world(discrete=True, seed=1)
    ep = _short_episode(world, 6, seed=1)
    f = teacher_force_episode(world, ep)
    with torch.no_grad():
        mu, _ = world.vae.encode(torch.as_tensor(ep.frames))
        state, total, hazard = world.mdnrnn.initial_state(1), 0.0, 0.0
        for t in range(6):
            a = torch.nn.functional.one_hot(torch.tensor([int(ep.actions[t])]), 3).float()
            out, state = world.mdnrnn.step(mu[t : t + 1], a, state)
            total += float(out.reward[0])
            hazard += float(world.mdnrnn.done_probability(out.done_logit)[0])
    assert f.reward.sum() == pytest.approx(total, abs=1e-4)
    assert f.p_done.sum() == pytest.approx(hazard, abs=1e-4)
    assert np.allclose(f.mu, mu.numpy(), atol=1e-6)


def test_teacher_forcing_uses_the_held_out_episodes(tmp_path: Path, doom_world: Path) -> None:
    """--data: only the episodes the world's provenance lists as validation are used."""
    data = tmp_path / "data"
    collect("VizdoomTakeCover-v1", 3, data, workers=1, max_steps=6, seed=5, progress=False)
    world = World.load(doom_world)
    world.config["provenance"] = {"data": str(data), "episodes": {"val_indices": [1]}}
    world_dir = world.save(tmp_path / "world")
    config = DiagnoseConfig(
        world=str(world_dir),
        data=[str(data)],
        suite=False,
        figures=False,
        out=str(tmp_path / "out"),
        progress=False,
        resamples=100,
    )
    teacher = diagnose(config)["teacher"]
    assert teacher["source"]["selection"] == {str(data): "the world's val_indices"}
    assert [r["index"] for r in teacher["per_episode"]] == [1]
    manifest = load_manifest(data)
    entry = next(e for e in manifest["episodes"] if e["index"] == 1)
    real = load_episode(data, entry, manifest=manifest)
    row = teacher["per_episode"][0]
    assert row["real_return"] == pytest.approx(float(real["rewards"].sum()))
    assert row["steps"] == len(real["rewards"]) and math.isfinite(row["predicted_return"])


# --- the whole job ---------------------------------------------------------------------------------
def test_diagnose_cli_table_json_and_figures(
    tmp_path: Path, doom_world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "diag"
    argv = ["diagnose", "--world", str(doom_world), "--episodes", "2", "--max-steps", str(STEPS)]
    argv += ["--workers", "1", "--out", str(out), "--policy", "constant:1", "--resamples", "200"]
    argv += ["--dream-episodes", "3"]
    assert cli_main([*argv, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "diagnose.json").read_text())
    suite = fixed_suite(World.load(doom_world), 10) + [("constant:1", "constant:1")]
    assert [(r["policy"], r["spec"]) for r in report["suite"]] == suite
    for label, spec in suite:
        assert f"| {label} | `{spec}` |" in printed
    for r in report["suite"]:
        d, real = r["dream"]["mean"], r["real"]["mean"]
        assert math.isfinite(d) and math.isfinite(real) and len(r["real"]["returns"]) == 2
        assert len(r["dream"]["returns"]) == 3
        assert r["ratio"] == pytest.approx(d / real)
        assert r["ok"] == fidelity_check(d, real, RELATIVE_TOLERANCE, ABSOLUTE_TOLERANCE)["ok"]
    # Same seeds as `dreamgym evaluate`: the dream column is evaluate_dream's.
    dream = evaluate_dream(doom_world, "constant:1", episodes=3, seed=0, max_steps=STEPS)
    assert report["suite"][1]["dream"]["returns"] == dream.tolist()
    t = report["teacher"]
    assert t["source"]["kind"] == "fresh" and t["episodes"] == 2
    assert all(r["steps"] <= STEPS for r in t["per_episode"])
    for name in ("suite.png", "teacher.png", "reconstructions.png", "dream_rollout.png"):
        assert (out / name).stat().st_size > 0 and name in report["files"]
    assert "Teacher forcing along 2 real episodes" in printed and str(out) in printed
    assert "2 real episodes and 3 dreams each" in printed and report["dream_episodes"] == 3

    # --json prints the report itself (here without the suite: quick).
    assert cli_main([*argv, "--no-progress", "--json", "--no-suite", "--no-figures"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["suite"] == [] and printed["teacher"]["episodes"] == 2


def test_diagnose_refuses_bad_options(doom_world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["diagnose", "--world", str(doom_world), "--policy", "constant:7"]) == 2
    assert "is not an action of Discrete(3)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="leave nothing to diagnose"):
        diagnose(DiagnoseConfig(world=str(doom_world), suite=False, teacher=False))


def test_real_from_reuses_world_independent_returns(
    tmp_path: Path, doom_world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ["diagnose", "--world", str(doom_world), "--episodes", "2", "--max-steps", str(STEPS)]
    base += ["--workers", "1", "--resamples", "50", "--dream-episodes", "2", "--no-teacher"]
    base += ["--no-figures", "--no-progress"]
    first = tmp_path / "first"
    assert cli_main([*base, "--out", str(first)]) == 0
    earlier = json.loads((first / "diagnose.json").read_text())

    # The second run plays only what acts through the world: here the controller.
    ctrl = LinearController(World.load(doom_world))
    ctrl.set_params(np.random.default_rng(0).normal(0.0, 0.5, ctrl.n_params))
    ctrl_dir = ctrl.save(tmp_path / "ctrl", world=World.load(doom_world))
    played: list[str] = []
    original = real_module.evaluate_real

    def counting(world: World, policy: object, **kwargs: object) -> np.ndarray:
        played.append(policy if isinstance(policy, str) else getattr(policy, "spec", "?"))
        return original(world, policy, **kwargs)

    monkeypatch.setattr("dreamgym.evaluation.jobs.evaluate_real", counting)
    second = tmp_path / "second"
    argv = [*base, "--out", str(second), "--real-from", str(first), "--policy", str(ctrl_dir)]
    assert cli_main(argv) == 0
    report = json.loads((second / "diagnose.json").read_text())
    assert played == [str(ctrl_dir)]
    fixed = [r["spec"] for r in earlier["suite"]]
    assert report["real_reused"] == {"from": str(first), "specs": fixed}
    for old, new in zip(earlier["suite"], report["suite"][: len(fixed)], strict=True):
        assert new["real"]["returns"] == old["real"]["returns"]

    # Another seed's (or episode count's) report is of other episodes: refused, naming both.
    with pytest.raises(ValueError, match=r"seed 0 \(here 5\)"):
        diagnose(
            DiagnoseConfig(
                world=str(doom_world),
                episodes=2,
                max_steps=STEPS,
                seed=5,
                teacher=False,
                real_from=str(first / "diagnose.json"),
                workers=1,
                progress=False,
            )
        )
    with pytest.raises(FileNotFoundError, match="no diagnose.json there"):
        diagnose(DiagnoseConfig(world=str(doom_world), teacher=False, real_from=str(tmp_path)))


def test_dream_only_judges_the_dream_against_an_earlier_report(
    tmp_path: Path, doom_world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--dream-only --real-from`: the suite dreamed under the options given (here threshold
    termination), judged against the earlier report's real returns; nothing real is played."""
    base = ["diagnose", "--world", str(doom_world), "--episodes", "2", "--max-steps", str(STEPS)]
    base += ["--workers", "1", "--resamples", "50", "--dream-episodes", "3", "--no-teacher"]
    base += ["--no-progress"]
    first = tmp_path / "first"
    assert cli_main([*base, "--no-figures", "--out", str(first)]) == 0
    earlier = json.loads((first / "diagnose.json").read_text())

    def no_real(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("--dream-only played a real episode")

    monkeypatch.setattr("dreamgym.evaluation.jobs.evaluate_real", no_real)
    second = tmp_path / "second"
    argv = [*base, "--out", str(second), "--real-from", str(first), "--dream-only"]
    ctrl = LinearController(World.load(doom_world))  # acts through the world: no real known
    ctrl_dir = str(ctrl.save(tmp_path / "ctrl", world=World.load(doom_world)))
    argv += ["--termination", "threshold", "--done-threshold", "0.9", "--policy", ctrl_dir]
    assert cli_main([*argv, "--temperature", "1.3"]) == 0
    report = json.loads((second / "diagnose.json").read_text())
    assert report["dream_only"] and report["temperature"] == 1.3
    assert report["dream_settings"]["termination"] == "threshold"
    assert report["dream_settings"]["done_threshold"] == 0.9
    fixed, extra = report["suite"][:-1], report["suite"][-1]
    for old, new in zip(earlier["suite"], fixed, strict=True):
        assert new["real"]["returns"] == old["real"]["returns"] and new["ok"] is not None
    assert extra["spec"] == ctrl_dir and extra["real"] is None and extra["ok"] is None
    assert (second / "suite.png").is_file()
    settings = DreamSettings(termination="threshold", done_threshold=0.9, temperature=1.3)
    expected = evaluate_dream(
        doom_world, ctrl_dir, 3, 0, settings=settings.replace(max_episode_steps=STEPS)
    )
    assert extra["dream"]["returns"] == expected.tolist()
    with pytest.raises(ValueError, match="--dream-only plays no real episode"):
        diagnose(DiagnoseConfig(world=str(doom_world), dream_only=True))
