"""`dreamgym calibrate`: the done-logit offset, its fit, the datasets it accepts, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_LATENT, build_tiny_world

from dreamgym.cli import main as cli_main
from dreamgym.data import collect, load_episode, load_manifest
from dreamgym.data.manifest import DatasetMismatchError
from dreamgym.evaluation.calibrate import (
    CalibrateConfig,
    LengthTarget,
    calibrate,
    dream_policy,
    fit_offset,
    length_targets,
)
from dreamgym.evaluation.dream import dream_episodes
from dreamgym.models.mdnrnn import MDNRNN, MDNRNNConfig
from dreamgym.policies import FramePolicyFactory, LinearController
from dreamgym.preprocessing import preprocessing_for
from dreamgym.world import World

NOOP_CAP = 200
"""Real noop episodes (and the dreams matched to them) are capped here; TakeCover's noop dies at ≈ 150."""
DONE_LOGIT = -3.0
"""The tiny worlds' constant done logit: p(done) = sigmoid(-3) ≈ 0.047, dreams of ≈ 21 steps."""


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


@pytest.fixture(scope="module")
def doom_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny TakeCover world (real "screen" preprocessing) whose done logit is DONE_LOGIT."""
    world = build_tiny_world(
        discrete=True, name="tiny-doom", done_logit=DONE_LOGIT, max_episode_steps=2100
    )
    world.config["preprocessing"] = preprocessing_for("VizdoomTakeCover-v1", None).to_dict()
    return world.save(tmp_path_factory.mktemp("worlds") / "doom")


@pytest.fixture(scope="module")
def noop_data(tmp_path_factory: pytest.TempPathFactory, doom_world: Path) -> Path:
    """Two real TakeCover episodes of `constant:0` (standing still until a fireball hits), capped
    at NOOP_CAP steps so that the dreams matched to them are short too (both end in a death)."""
    data = tmp_path_factory.mktemp("data") / "noop"
    policy = FramePolicyFactory("constant:0", doom_world)
    collect(
        "VizdoomTakeCover-v1",
        2,
        data,
        workers=1,
        policy=policy,
        max_steps=NOOP_CAP,
        seed=3,
        progress=False,
    )
    assert any(e["terminated"] for e in load_manifest(data)["episodes"])
    return data


def test_offset_shifts_the_done_probability_and_old_configs_stay_unchanged() -> None:
    plain = MDNRNNConfig(latent_dim=4, hidden_dim=8, n_mixtures=2, done_pos_weight=10.0)
    assert "done_logit_offset" not in plain.to_dict()  # bundles from before keep their bytes
    shifted = MDNRNNConfig.from_dict({**plain.to_dict(), "done_logit_offset": -0.5})
    assert shifted.to_dict()["done_logit_offset"] == -0.5
    logit = torch.tensor([0.0, 2.0])
    p0 = MDNRNN(plain).done_probability(logit)
    p1 = MDNRNN(shifted).done_probability(logit)
    assert torch.allclose(p0, torch.sigmoid(logit - math.log(10.0)))
    assert torch.allclose(p1, torch.sigmoid(logit - math.log(10.0) - 0.5))
    with pytest.raises(ValueError, match="done_logit_offset must be a finite number"):
        MDNRNNConfig(done_logit_offset=float("nan"))


def test_fit_recovers_the_hazard_of_a_constant_done_head() -> None:
    """Dream lengths are geometric with mean 1/p: real means 10 and 40 ask for the p whose mean
    is their geometric mean, 20 (the objective is the mean log ratio)."""
    world = build_tiny_world(discrete=True, done_logit=DONE_LOGIT, max_episode_steps=2100)
    targets = [
        LengthTarget("a", "constant:0", np.full(50, 10), 50, 2100),
        LengthTarget("b", "constant:1", np.full(50, 40), 50, 2100),
    ]
    config = CalibrateConfig(world="unused", data=[], dreams=1024, progress=False)
    offset, evaluations = fit_offset(world, targets, 1.0, config)
    expected = _logit(1 / 20.0) - DONE_LOGIT
    assert offset == pytest.approx(expected, abs=0.1)
    assert abs(evaluations[-1]["objective"]) < 0.01 or len(evaluations) == config.iterations
    assert evaluations[0]["offset"] == 0.0  # the head as trained comes first
    assert world.mdnrnn.config.done_logit_offset == 0.0  # the fit leaves the world as it was
    # Common random numbers: the same offset gives the same dreams.
    a = dream_episodes(world, "constant:0", 64, 0, max_steps=2100).lengths
    b = dream_episodes(world, "constant:0", 64, 0, max_steps=2100).lengths
    assert np.array_equal(a, b)


def test_calibrate_writes_the_offset_and_the_dreams_follow(
    tmp_path: Path, doom_world: Path, noop_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world_dir = World.load(doom_world).save(tmp_path / "world")
    real_mean = float(np.mean([e["steps"] for e in load_manifest(noop_data)["episodes"]]))
    argv = ["calibrate", "--world", str(world_dir), "--data", str(noop_data), "--no-progress"]
    before = (world_dir / "config.json").read_bytes()
    assert cli_main([*argv, "--dry-run", "--dreams", "64"]) == 0
    assert "--dry-run: the world is unchanged" in capsys.readouterr().out
    assert (world_dir / "config.json").read_bytes() == before

    assert cli_main([*argv, "--temperature", "0.5", "--dreams", "256"]) == 0
    printed = capsys.readouterr().out
    assert "| noop | constant:0 | 2 |" in printed and "wrote the offset and τ=0.5" in printed
    world = World.load(world_dir)
    offset = world.mdnrnn.config.done_logit_offset
    assert offset < 0  # the tiny head's dreams (≈ 21 steps) were far shorter than real ones
    assert world.temperature == 0.5
    record = world.config["provenance"]["calibration"]
    assert record["offset"] == offset and record["targets"][0]["real_mean"] == real_mean
    # Fresh seeds: capped like the data, the calibrated dreams last as long as the real episodes.
    lengths = dream_episodes(world, "constant:0", 256, 1, max_steps=NOOP_CAP).lengths
    assert lengths.mean() == pytest.approx(real_mean, rel=0.15)
    assert (
        json.loads((world_dir / "config.json").read_text())["mdnrnn"]["done_logit_offset"] == offset
    )


def test_calibrate_refuses_data_it_cannot_use(
    tmp_path: Path, doom_world: Path, noop_data: Path
) -> None:
    world = World.load(doom_world)
    controller = LinearController(world).save(tmp_path / "ctrl", world=world).parent
    by_controller = tmp_path / "by-controller"
    policy = FramePolicyFactory(str(controller), doom_world)
    collect(
        "VizdoomTakeCover-v1",
        1,
        by_controller,
        workers=1,
        policy=policy,
        max_steps=4,
        progress=False,
    )
    with pytest.raises(ValueError, match="needs datasets of fixed policies or of collect's"):
        length_targets(world, [str(by_controller)])
    cut = tmp_path / "cut"
    collect("VizdoomTakeCover-v1", 1, cut, workers=1, max_steps=4, seed=1, progress=False)
    with pytest.raises(ValueError, match="nothing to calibrate"):
        length_targets(world, [str(cut)])
    box = build_tiny_world(discrete=False)
    with pytest.raises(DatasetMismatchError, match="was collected in VizdoomTakeCover-v1"):
        length_targets(box, [str(noop_data)])
    with pytest.raises(ValueError, match="--dreams must be an integer ≥ 1"):
        calibrate(CalibrateConfig(world=str(doom_world), data=[str(noop_data)], dreams=0))


def test_the_random_policy_acts_in_the_dream_as_it_did_in_collect(tmp_path: Path) -> None:
    """Dream i replays the action sequence of collect's episode i (seeded the same way)."""
    data = tmp_path / "random"
    collect("VizdoomTakeCover-v1", 3, data, workers=1, max_steps=12, seed=7, progress=False)
    manifest = load_manifest(data)
    world = build_tiny_world(discrete=True)
    policy = dream_policy(world, manifest["policy"], 3, 7)
    assert policy.obs_mode == "z"  # Discrete: no frames needed, V decodes nothing
    acted = np.stack([policy.act(np.zeros((3, TINY_LATENT))) for _ in range(12)], axis=1)
    for entry, actions in zip(manifest["episodes"], acted, strict=True):
        real = load_episode(data, entry, manifest=manifest)["actions"]
        assert np.array_equal(actions[: len(real)], real)
    with pytest.raises(ValueError, match="was built for 3 dreams but got 2"):
        policy.act(np.zeros((2, TINY_LATENT)))
