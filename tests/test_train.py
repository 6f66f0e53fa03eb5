"""dreamgym.training: V → encode → M → bundle on tiny real datasets, resuming, refusing bad input."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from PIL import Image

from dreamgym.cli import main as cli_main
from dreamgym.data import CorruptShardError, collect, load_manifest
from dreamgym.models.mdnrnn import MDNRNN, MDNRNNConfig
from dreamgym.training import (
    PROGRESS_FILE,
    REPORT_DIR,
    WORK_DIR,
    LatentEpisodes,
    TrainConfig,
    TrainingStateError,
    done_metrics,
    evaluate_rnn,
    latent_stats,
    make_adam,
    make_windows,
    train_rnn_epoch,
    train_world,
)
from dreamgym.world import World

CAR = "CarRacing-v3"
DOOM = "VizdoomTakeCover-v1"
STEPS = 30
TINY: dict[str, Any] = {
    "vae_epochs": 1,
    "rnn_epochs": 1,
    "latent": 4,
    "hidden": 16,
    "mixtures": 2,
    "seq_len": 16,
    "vae_batch": 32,
    "rnn_batch": 4,
    "threads": 1,
    "progress": False,
}


@pytest.fixture(scope="module")
def car_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("car") / "data"
    collect(CAR, 3, out, workers=1, max_steps=STEPS, progress=False)
    return out


@pytest.fixture(scope="module")
def doom_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("doom") / "data"
    collect(DOOM, 3, out, workers=1, max_steps=STEPS, progress=False)
    return out


def _progress(out: Path) -> dict[str, Any]:
    return json.loads((out / WORK_DIR / PROGRESS_FILE).read_text())


def _check_bundle(out: Path, env_id: str, limit: int) -> World:
    world = World.load(out)
    assert world.env_id == env_id and world.latent_dim == 4 and world.hidden_dim == 16
    assert world.max_episode_steps == limit  # the real env's limit, not the collection's 30
    assert world.initial_mu.shape == (2, 4)  # first frames of the 2 training episodes
    m = world.config["metrics"]
    assert 0 < m["vae"]["recon_mse"] < 1 and m["vae"]["baseline_mean_frame_mse"] > 0
    assert np.isfinite(m["rnn"]["nll_per_dim"]) and m["rnn"]["steps"] == STEPS
    assert m["rnn"]["reward_mae"] >= 0 and "auc" in m["rnn"]["done"]
    assert "lossless" in m["float16_check"]
    prov = world.config["provenance"]
    assert prov["episodes"]["train"] == 2 and prov["episodes"]["val"] == 1
    assert prov["real_steps"] == 3 * STEPS and prov["frames"] == 3 * (STEPS + 1)
    assert prov["command"].startswith("dreamgym train --data ")
    assert world.config["mdnrnn"]["done_pos_weight"] >= 1.0
    card = (out / "MODEL_CARD.md").read_text()
    assert "Held-out metrics" in card and "reconstruction MSE" in card
    for name, height in (("reconstructions.png", 2), ("dream_rollout.png", 4)):
        with Image.open(out / REPORT_DIR / name) as img:
            assert img.height > height * 128 and img.width > 10 * 128
    return world


def test_train_carracing_then_step_the_dream(car_data: Path, tmp_path: Path) -> None:
    out = train_world(TrainConfig(data=str(car_data), out=str(tmp_path / "w"), **TINY))
    world = _check_bundle(out, CAR, 1000)
    # new worlds: the paper's M (a mixture per dim), trained on whole episodes with carried state
    assert (
        world.config["mdnrnn"]["mixture"] == "per_dim" and world.mdnrnn.config.mixture == "per_dim"
    )
    assert world.config["mdnrnn"]["done_pos_weight"] == 10.0
    training = world.config["provenance"]["training"]
    assert training["rnn_sequences"] == "episodes" and training["nll_reduction"] == "sum"
    assert training["mask_terminal_z"] is True and training["rnn_lr_decay"] == pytest.approx(
        0.99999
    )
    card = (out / "MODEL_CARD.md").read_text()
    assert "per latent dim" in card and "whole episodes in 16-step chunks" in card
    env = gym.make("DreamEnv-v0", world=str(out))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4 + 16,)
    for _ in range(5):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and np.isfinite(reward)
    env.close()


def test_cli_trains_doom(doom_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "w"
    args = ["train", "--data", str(doom_data), "--out", str(out), "--weights-dtype", "float32"]
    for k, v in TINY.items():
        flag = "--" + k.replace("_", "-")
        args += [flag] if v is True else [f"--no-{flag[2:]}"] if v is False else [flag, str(v)]
    assert cli_main(args) == 0
    world = _check_bundle(out, DOOM, 2100)
    assert world.config["weights_dtype"] == "float32"
    env = gym.make("DreamEnv-v0", world=str(out), obs_mode="pixels")
    env.reset(seed=1)
    obs, *_ = env.step(2)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8


_KILL_SCRIPT = """
import json, os, signal, sys
from dreamgym.training import TrainConfig, train_world

def on_epoch(stage, epoch, record):
    if stage == "rnn" and epoch == 1:
        os.kill(os.getpid(), signal.SIGKILL)

train_world(TrainConfig(**json.loads(sys.argv[1])), on_epoch)
"""


def test_kill_9_after_v_then_resume_skips_v(car_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "w"
    config = TrainConfig(data=str(car_data), out=str(out), **{**TINY, "rnn_epochs": 2})
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_SCRIPT, json.dumps(dataclasses.asdict(config))],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    progress = _progress(out)
    assert progress["vae"]["epochs_done"] == 1 and progress["rnn"]["epochs_done"] == 1
    assert not (out / "config.json").exists()
    v_ckpt = out / WORK_DIR / progress["vae"]["checkpoint"]["file"]
    v_bytes = v_ckpt.read_bytes()

    calls: list[tuple[str, int]] = []
    train_world(config, on_epoch=lambda stage, epoch, record: calls.append((stage, epoch)))
    assert calls == [("rnn", 2)]  # V and M's first epoch were not trained again
    assert v_ckpt.read_bytes() == v_bytes
    assert _progress(out)["rnn"]["epochs_done"] == 2
    World.load(out)

    calls.clear()  # the same command again: nothing to do
    train_world(config, on_epoch=lambda stage, epoch, record: calls.append((stage, epoch)))
    assert calls == []

    with pytest.raises(TrainingStateError, match="--latent 4 \\(this run: 8\\)"):
        train_world(dataclasses.replace(config, latent=8))

    calls.clear()  # more epochs of M continue the run
    train_world(
        dataclasses.replace(config, rnn_epochs=3),
        on_epoch=lambda stage, epoch, record: calls.append((stage, epoch)),
    )
    assert calls == [("rnn", 3)]
    assert World.load(out).config["provenance"]["stages"]["rnn"]["epochs"] == 3


def test_old_run_resumes_with_what_it_trained_with(car_data: Path, tmp_path: Path) -> None:
    """A progress.json from before per-dim M (no such options) resumes under the same command."""
    out = tmp_path / "w"
    old = {
        "mixture": "shared",
        "rnn_sequences": "windows",
        "nll_reduction": "sum",
        "mask_terminal_z": False,
        "done_weight": 0.0,
        "rnn_lr_decay": 1.0,
    }
    world = World.load(train_world(TrainConfig(data=str(car_data), out=str(out), **TINY, **old)))
    assert world.mdnrnn.config.mixture == "shared"
    assert "windows" in (out / "MODEL_CARD.md").read_text()
    path = out / WORK_DIR / PROGRESS_FILE
    progress = json.loads(path.read_text())
    options = progress["fingerprint"]["options"]
    for k in ("mixture", "rnn_sequences", "nll_reduction", "mask_terminal_z", "rnn_lr_decay"):
        del options[k]
    del options["rnn_lr_min"]
    options["done_weight"] = None  # what "automatic" was stored as
    path.write_text(json.dumps(progress))

    calls: list[tuple[str, int]] = []
    config = TrainConfig(data=str(car_data), out=str(out), **TINY)  # the old command
    train_world(config, on_epoch=lambda stage, epoch, record: calls.append((stage, epoch)))
    assert calls == []  # recognised as the same, finished run
    train_world(
        dataclasses.replace(config, rnn_epochs=2),
        on_epoch=lambda stage, epoch, record: calls.append((stage, epoch)),
    )
    assert calls == [("rnn", 2)]
    world = World.load(out)
    assert world.mdnrnn.config.mixture == "shared"
    assert world.config["provenance"]["training"]["rnn_sequences"] == "windows"
    with pytest.raises(TrainingStateError, match="--mixture shared \\(this run: per_dim\\)"):
        train_world(dataclasses.replace(config, rnn_epochs=2, mixture="per_dim"))


def test_corrupt_shard_is_reported_before_training(car_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(car_data, data)
    shard = data / load_manifest(data)["episodes"][1]["file"]
    shard.write_bytes(shard.read_bytes()[:-100])
    out = tmp_path / "w"
    with pytest.raises(CorruptShardError, match=shard.name):
        train_world(TrainConfig(data=str(data), out=str(out), **TINY))
    assert not out.exists()


def test_too_little_data_is_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    collect(CAR, 1, data, workers=1, max_steps=5, progress=False)
    with pytest.raises(ValueError, match="--val-fraction.*dreamgym collect --env CarRacing-v3"):
        train_world(TrainConfig(data=str(data), out=str(tmp_path / "w"), **TINY))
    with pytest.raises(FileNotFoundError, match="not a dreamgym dataset"):
        train_world(TrainConfig(data=str(tmp_path), out=str(tmp_path / "w"), **TINY))


def test_done_metrics_known_case() -> None:
    p = np.array([0.9, 0.8, 0.6, 0.3, 0.2, 0.1])
    y = np.array([1, 0, 1, 0, 0, 0], dtype=bool)
    m = done_metrics(p, y)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0
    assert m["f1"] == pytest.approx(0.8)
    assert m["auc"] == pytest.approx(7 / 8)  # 7 of the 8 (pos, neg) pairs ordered right
    assert m["best_f1"] == pytest.approx(0.8) and m["best_threshold"] == pytest.approx(0.6)


def test_windows_cover_every_step_once() -> None:
    lengths = np.array([5, 40, 17])
    w = make_windows(lengths, np.array([0, 1, 2]), 16, np.random.default_rng(0))
    for e, t in enumerate(lengths):
        mine = w[w[:, 0] == e]
        covered = np.concatenate([np.arange(t0, t0 + n) for _, t0, n in mine])
        assert sorted(covered.tolist()) == list(range(t)) and (mine[:, 2] <= 16).all()


def test_rnn_learns_simple_dynamics() -> None:
    """M's held-out NLL falls well below the baselines on z_{t+1} = 0.9 z_t + 0.5 a_t."""
    rng = np.random.default_rng(0)
    lengths = np.full(12, 40)
    mus, actions, rewards, dones = [], [], [], []
    for t_max in lengths:
        a = rng.choice([-1.0, 1.0], size=(t_max, 1)).astype(np.float32)
        z = np.zeros((t_max + 1, 2), dtype=np.float32)
        z[0] = rng.normal(size=2)
        for t in range(t_max):
            z[t + 1] = 0.9 * z[t] + 0.5 * a[t, 0] + 0.02 * rng.normal(size=2)
        mus.append(z)
        actions.append(a)
        rewards.append(z[:-1, 0].copy())
        d = np.zeros(t_max, dtype=bool)
        d[-1] = True
        dones.append(d)
    mu = np.concatenate(mus)
    data = LatentEpisodes.from_arrays(
        mu,
        np.full_like(mu, -12.0),
        np.concatenate(actions),
        np.concatenate(rewards),
        np.concatenate(dones),
        lengths,
    )
    train, val = np.arange(10), np.array([10, 11])
    torch.manual_seed(0)
    rnn = MDNRNN(MDNRNNConfig(latent_dim=2, action_dim=1, hidden_dim=32, n_mixtures=2))
    opt = make_adam(rnn.parameters(), 1e-2)
    stats = latent_stats(data, train)
    before = evaluate_rnn(rnn, data, val, stats, seed=0)
    for epoch in range(40):
        train_rnn_epoch(rnn, opt, data, train, 20, 8, 1.0, 1.0, 1.0, seed=0, epoch=epoch)
    after = evaluate_rnn(rnn, data, val, stats, seed=0)
    assert after["nll_per_dim"] < before["nll_per_dim"] - 1.0
    assert after["nll_per_dim"] < after["baseline_previous_z_nll_per_dim"] - 0.5
    assert after["reward_mae"] < 0.5 * after["reward_mae_baseline_mean"]


def test_cli_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli_main(["train", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in text


def test_cli_error_for_other_bundle(
    car_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "w"
    out.mkdir()
    (out / "config.json").write_text("{}")
    assert cli_main(["train", "--data", str(car_data), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"dreamgym train: error: {out} already holds a world bundle")
    assert "\n" not in err  # one line, no traceback


def test_iterative_training_on_two_datasets_keeps_v(
    car_data: Path, doom_data: Path, tmp_path: Path
) -> None:
    """The paper's iterative step: new rollouts beside the old ones, V kept, only M retrained."""
    first = train_world(TrainConfig(data=str(car_data), out=str(tmp_path / "w1"), **TINY))
    more = tmp_path / "more"
    collect(CAR, 2, more, workers=1, max_steps=STEPS, seed=100, progress=False)
    out = tmp_path / "w2"
    args = ["train", "--data", str(car_data), str(more), "--out", str(out)]
    args += ["--vae-from", str(first), "--vae-epochs", "0"]
    for k, v in TINY.items():
        if k != "vae_epochs":
            flag = "--" + k.replace("_", "-")
            args += [f"--no-{flag[2:]}"] if v is False else [flag, str(v)]
    assert cli_main(args) == 0
    w1, w2 = World.load(first), World.load(out)
    for k, v in w1.vae.state_dict().items():  # V is the first world's, bit for bit
        assert torch.equal(v, w2.vae.state_dict()[k]), k
    prov = w2.config["provenance"]
    assert prov["data_episodes"] == [3, 2] and prov["real_steps"] == 5 * STEPS
    assert prov["episodes"]["train"] + prov["episodes"]["val"] == 5
    assert all(len(v) == 2 for v in prov["episodes"]["val_indices"])  # [dataset, index]
    assert "--vae-from" in prov["command"] and str(more) in prov["command"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "- Datasets:" in card and "V started from the world" in card
    # M really trained on the combined data: its weights differ from the first world's.
    assert not torch.equal(w1.mdnrnn.head.weight, w2.mdnrnn.head.weight)

    with pytest.raises(ValueError, match="one env"):  # CarRacing and Doom data do not mix
        train_world(
            TrainConfig(data=[str(car_data), str(doom_data)], out=str(tmp_path / "x"), **TINY)
        )
    with pytest.raises(ValueError, match="VizdoomTakeCover-v1 frames"):
        train_world(
            TrainConfig(data=str(doom_data), out=str(tmp_path / "y"), vae_from=str(first), **TINY)
        )
    with pytest.raises(ValueError, match="twice"):
        train_world(TrainConfig(data=[str(more), str(more)], out=str(tmp_path / "z"), **TINY))


def test_reward_events_reach_the_bundle_the_card_and_the_dream(
    car_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "w"
    code = cli_main(
        ["train", "--data", str(car_data), "--out", str(out), "--vae-epochs", "1", "--rnn-epochs",
         "1", "--latent", "4", "--hidden", "16", "--mixtures", "2", "--seq-len", "16",
         "--vae-batch", "32", "--rnn-batch", "4", "--threads", "1", "--no-progress",
         "--reward-events"]
    )  # fmt: skip
    assert code == 0
    world = World.load(out)
    cfg = world.config["mdnrnn"]
    assert cfg["reward_event_threshold"] == 0.0 and cfg["reward_event"] > 1.0  # a tile: ≈ 3.3
    assert world.config["provenance"]["training"]["reward_events"] == 0.0
    assert 0.0 <= world.config["metrics"]["rnn"]["reward_events"]["rate"] <= 1.0
    assert "rewards above 0 are events" in (out / "MODEL_CARD.md").read_text()
    env = gym.make("DreamEnv-v0", world=str(out))
    env.reset(seed=0)
    for _ in range(5):
        _, reward, *_ = env.step(env.action_space.sample())
        assert -0.1 - 1.0 < reward < cfg["reward_event"] + 1.0
    env.close()


def _interrupt_at(stage: str, epoch: int) -> Any:
    def on_epoch(s: str, e: int, record: dict[str, Any]) -> None:
        if (s, e) == (stage, epoch):
            raise KeyboardInterrupt

    return on_epoch


@pytest.mark.parametrize("stage", ["vae", "rnn"])
def test_interrupted_run_resumes_bit_identical(car_data: Path, tmp_path: Path, stage: str) -> None:
    """Ctrl-C after an epoch of V (or M), then the same command: the same weights, to the bit."""
    options = {**TINY, "vae_epochs": 3, "rnn_epochs": 2, "weights_dtype": "float32"}
    whole = train_world(TrainConfig(data=str(car_data), out=str(tmp_path / "whole"), **options))
    config = TrainConfig(data=str(car_data), out=str(tmp_path / "cut"), **options)
    with pytest.raises(KeyboardInterrupt):
        train_world(config, on_epoch=_interrupt_at(stage, 1))
    assert _progress(tmp_path / "cut")[stage]["epochs_done"] == 1
    cut = train_world(config)
    for name in ("vae.safetensors", "mdnrnn.safetensors", "initial_latents.safetensors"):
        assert (cut / name).read_bytes() == (whole / name).read_bytes(), name
