"""`dreamgym train --memory rssm`: the bundle, its dream, resuming, refusing, and collect → gap.

Tiny data from `dreamgym_test_envs:TestImage-v0` (12-step episodes of random frames, Discrete(3)
actions, reward = action), tiny V and RSSM: each run takes seconds.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from dreamgym.cli import main as cli_main
from dreamgym.data import collect
from dreamgym.training import PROGRESS_FILE, WORK_DIR, TrainConfig, TrainingStateError, train_world
from dreamgym.training.config import FINGERPRINT_FIELDS, RSSM_FIELDS, bundle_settings
from dreamgym.training.workspace import fingerprint
from dreamgym.world import World

ENV = "dreamgym_test_envs:TestImage-v0"
EPISODES = 5
STEPS = 12  # TestImage-v0's episode length
TINY: dict[str, Any] = {
    "memory": "rssm",
    "vae_epochs": 1,
    "rnn_epochs": 1,
    "latent": 4,
    "hidden": 16,
    "stoch_dim": 4,
    "groups": 3,
    "classes": 4,
    "seq_len": 8,
    "vae_batch": 16,
    "rnn_batch": 2,
    "val_fraction": 0.4,
    "threads": 1,
    "progress": False,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rssm") / "data"
    collect(ENV, EPISODES, out, workers=1, progress=False)
    return out


def _cli_args(options: dict[str, Any]) -> list[str]:
    args = []
    for k, v in options.items():
        flag = "--" + k.replace("_", "-")
        args += [flag] if v is True else [f"--no-{flag[2:]}"] if v is False else [flag, str(v)]
    return args


def _progress(out: Path) -> dict[str, Any]:
    return json.loads((out / WORK_DIR / PROGRESS_FILE).read_text())


@pytest.mark.parametrize("stoch", ["gaussian", "categorical"])
def test_cli_writes_an_rssm_bundle_that_dreams(data: Path, tmp_path: Path, stoch: str) -> None:
    out = tmp_path / "w"
    options = {**TINY, "stoch": stoch, "weights_dtype": "float32"}
    assert cli_main(["train", "--data", str(data), "--out", str(out), *_cli_args(options)]) == 0
    assert json.loads((out / "config.json").read_text())["memory"] == "rssm"
    assert (out / "rssm.safetensors").is_file() and not (out / "mdnrnn.safetensors").exists()
    world = World.load(out)
    assert world.memory_kind == "rssm" and world.latent_dim == 4
    c = world.rssm.config
    assert (c.stoch, c.deter_dim, c.hidden_dim, c.stoch_dim, c.groups) == (stoch, 16, 16, 4, 3)
    assert c.done_pos_weight == 10.0  # chosen as M's: --done-weight's default
    m = world.config["metrics"]["rssm"]
    assert m["steps"] == 2 * STEPS and np.isfinite(m["nll_per_dim"]) and m["kl"] >= 0
    assert set(m["loss"]) >= {"nll", "reward_mse", "done_bce", "kl"} and "auc" in m["done"]
    ol = m["openloop"]  # 12-step episodes: a 6-frame context, k = 1 only
    assert ol["context"] == 6 and ol["windows"] > 0 and ol["rmse"]["1"] > 0
    assert ol["rmse"]["10"] is None and ol["copy_last"]["50"] is None
    assert "lossless" in world.config["metrics"]["float16_check"]
    training = world.config["provenance"]["training"]
    assert training["memory"] == "rssm" and training["stoch"] == stoch
    assert training["mlp_units"] == 16 and "mixture" not in training
    assert "--memory rssm" in world.config["provenance"]["command"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "an RSSM" in card and "open-loop z RMSE" in card and "KL(posterior" in card
    assert (out / "report" / "dream_rollout.png").is_file()

    env = gym.make("DreamEnv-v0", world=str(out), max_episode_steps=STEPS)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4 + c.feature_dim,)
    for _ in range(5):
        obs, reward, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and np.isfinite(reward)
    env.close()


def _interrupt_at(stage: str, epoch: int) -> Any:
    def on_epoch(s: str, e: int, record: dict[str, Any]) -> None:
        if (s, e) == (stage, epoch):
            raise KeyboardInterrupt

    return on_epoch


def test_interrupted_rssm_run_resumes_bit_identical(data: Path, tmp_path: Path) -> None:
    """Ctrl-C after the RSSM's first epoch, then the same command: the same weights, to the bit;
    the same command again is up to date; more epochs continue; another memory is refused."""
    options = {**TINY, "rnn_epochs": 2, "weights_dtype": "float32"}
    whole = train_world(TrainConfig(data=str(data), out=str(tmp_path / "whole"), **options))
    config = TrainConfig(data=str(data), out=str(tmp_path / "cut"), **options)
    with pytest.raises(KeyboardInterrupt):
        train_world(config, on_epoch=_interrupt_at("rnn", 1))
    assert _progress(tmp_path / "cut")["rnn"]["epochs_done"] == 1
    calls: list[tuple[str, int]] = []
    cut = train_world(config, on_epoch=lambda s, e, r: calls.append((s, e)))
    assert calls == [("rnn", 2)]  # V and the RSSM's first epoch were not trained again
    for name in ("vae.safetensors", "rssm.safetensors", "initial_latents.safetensors"):
        assert (cut / name).read_bytes() == (whole / name).read_bytes(), name

    calls.clear()
    train_world(config, on_epoch=lambda s, e, r: calls.append((s, e)))
    assert calls == []  # up to date
    train_world(
        dataclasses.replace(config, rnn_epochs=3), on_epoch=lambda s, e, r: calls.append((s, e))
    )
    assert calls == [("rnn", 3)]
    assert World.load(cut).config["provenance"]["stages"]["rnn"]["epochs"] == 3
    with pytest.raises(TrainingStateError, match="--memory rssm \\(this run: mdnrnn\\)"):
        train_world(
            dataclasses.replace(config, memory="mdnrnn", stoch_dim=32, groups=16, classes=16)
        )
    with pytest.raises(TrainingStateError, match="--kl-balance 0.8 \\(this run: 0.5\\)"):
        train_world(dataclasses.replace(config, rnn_epochs=3, kl_balance=0.5))


def test_mdnrnn_runs_keep_their_fingerprint_and_bundle_settings() -> None:
    """The new options at their defaults leave an MDN-RNN run's records as they were."""
    config = TrainConfig(data="d", out="o")
    manifest = {"env_id": "CarRacing-v3"}
    options = fingerprint(config, manifest, [])["options"]
    assert list(options) == list(FINGERPRINT_FIELDS)  # no memory, no RSSM option
    assert "memory" not in bundle_settings(config)
    rssm = fingerprint(dataclasses.replace(config, memory="rssm"), manifest, [])["options"]
    assert rssm["memory"] == "rssm" and set(RSSM_FIELDS) <= set(rssm) and "mixture" not in rssm
    assert bundle_settings(dataclasses.replace(config, memory="rssm"))["memory"] == "rssm"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"memory": "lstm"}, "--memory must be one of \\('mdnrnn', 'rssm'\\), got 'lstm'"),
        ({"stoch": "categorical"}, "--stoch is an option of --memory rssm, not of --memory mdnrnn"),
        (
            {"memory": "rssm", "mixtures": 3, "reward_events": 0.0},
            "--mixtures, --reward-events are options of --memory mdnrnn, not of --memory rssm",
        ),
        ({"memory": "rssm", "stoch": "beta"}, "--stoch must be one of"),
        ({"memory": "rssm", "kl_balance": 1.5}, "--kl-balance must lie in \\[0, 1\\], got 1.5"),
        ({"memory": "rssm", "free_nats": -1.0}, "--free-nats must be a finite number ≥ 0"),
        ({"memory": "rssm", "overshooting": -2}, "--overshooting must be an integer ≥ 0"),
        ({"memory": "rssm", "groups": 0}, "--groups must be an integer ≥ 1, got 0"),
    ],
)
def test_bad_memory_options_are_clear_errors(
    tmp_path: Path, options: dict[str, Any], match: str
) -> None:
    out = tmp_path / "w"
    with pytest.raises(ValueError, match=match):
        train_world(TrainConfig(data=str(tmp_path / "data"), out=str(out), **options))
    assert not out.exists()


def test_cli_unknown_memory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli_main(
            ["train", "--data", str(tmp_path), "--out", str(tmp_path / "w"), "--memory", "gru"]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --memory: invalid choice: 'gru'" in err and "'rssm'" in err
    assert cli_main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "w"), "--stoch-dim",
                     "8"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.startswith("dreamgym train: error: --stoch-dim is an option of --memory rssm")
    assert "\n" not in err


def test_collect_train_rssm_controller_gap_end_to_end(tmp_path: Path) -> None:
    """The whole journey on a tiny env through the command line, M an RSSM."""
    data, world, ctrl, gap = (tmp_path / n for n in ("data", "world", "ctrl", "gap"))
    quiet = ["--no-progress"]
    assert cli_main(["collect", "--env", ENV, "--episodes", "4", "--out", str(data), "--workers",
                     "1", *quiet]) == 0  # fmt: skip
    options = {**TINY, "val_fraction": 0.25, "max_steps": STEPS}
    assert cli_main(["train", "--data", str(data), "--out", str(world), *_cli_args(options)]) == 0
    assert World.load(world).memory_kind == "rssm"
    assert cli_main(["controller", "--world", str(world), "--out", str(ctrl), "--generations", "2",
                     "--popsize", "4", "--rollouts", "2", "--device", "cpu", *quiet]) == 0  # fmt: skip
    assert cli_main(["gap", "--world", str(world), "--policy", str(ctrl), "--episodes", "2",
                     "--workers", "1", "--out", str(gap), *quiet]) == 0  # fmt: skip
    report = json.loads((gap / "gap.json").read_text())
    assert report["env_id"] == ENV and len(report["real"]["returns"]) == 2
    assert all(np.isfinite(report["dream"]["returns"]))
    assert all(0 <= r <= 2 * STEPS for r in report["real"]["returns"])  # reward = action ∈ {0,1,2}
