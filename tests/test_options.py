"""Option groups: every dream command takes the dream's options, one name per concept, old
spellings still work and warn, bad values are one line naming the option, and the CLI loads
only the command it runs."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dreamgym import cli
from dreamgym.agents.sb3 import SB3Config
from dreamgym.cli import build_parser, config_class, main
from dreamgym.envs.settings import DreamSettings
from dreamgym.evaluation import evaluate_dream
from dreamgym.evaluation.jobs import EvaluateConfig, evaluate_from_config
from dreamgym.options import DreamAndRealOptions, DreamOptions, DreamRunOptions, RealRunOptions

DREAM_COMMANDS = ("controller", "sb3", "evaluate", "gap", "diagnose", "calibrate", "play", "demo")
"""Every command that runs a dream: each takes the whole `DreamRunOptions` group (and all but
demo, which dreams several worlds, `DreamOptions`: which world too)."""
REAL_COMMANDS = ("collect", "evaluate", "gap", "diagnose", "demo")
"""Every command that plays real episodes: each takes the whole `RealRunOptions` group."""
DREAM_FLAGS = ("--temperature", "--termination", "--done-threshold", "--device", "--precision")
REAL_FLAGS = ("--episodes", "--seed", "--workers", "--ray", "--max-steps")


def _flags(command: str) -> set[str]:
    parser = build_parser([command])
    sub = next(a for a in parser._actions if a.dest == "command")
    return {s for a in sub.choices[command]._actions for s in a.option_strings}


@pytest.mark.parametrize("command", DREAM_COMMANDS)
def test_every_dream_command_takes_the_dream_options(command: str) -> None:
    assert issubclass(config_class(command), DreamRunOptions)
    assert issubclass(config_class(command), DreamOptions) == (command != "demo")
    flags = _flags(command)
    assert set(DREAM_FLAGS) <= flags and ("--world" in flags) == (command != "demo")
    # calibrate caps each dream at its dataset's limit: no --max-steps there
    assert ("--max-steps" in flags) == (command != "calibrate")


@pytest.mark.parametrize("command", REAL_COMMANDS)
def test_every_real_command_takes_the_real_run_options(command: str) -> None:
    assert issubclass(config_class(command), RealRunOptions)
    assert set(REAL_FLAGS) <= _flags(command)


def test_one_name_per_concept() -> None:
    """The episode cap is max_steps and the batch size num_envs in every job."""
    for command in cli.JOBS:
        names = {f.name for f in dataclasses.fields(config_class(command))}
        assert not names & {"max_episode_steps", "n_envs"}, command


def test_old_spellings_warn_and_work(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sb3", "--world", "w", "--out", "o", "--n-envs", "3", "--max-episode-steps", "9"]
    args = build_parser(["sb3"]).parse_args(argv)
    assert (args.num_envs, args.max_steps) == (3, 9)
    err = capsys.readouterr().err
    assert "--n-envs is deprecated, use --num-envs" in err
    assert "--max-episode-steps is deprecated, use --max-steps" in err
    with pytest.warns(DeprecationWarning, match="n_envs is deprecated, use num_envs"):
        config = SB3Config(world="w", out="o", n_envs=3)
    assert config.num_envs == 3
    with pytest.warns(DeprecationWarning, match="max_episode_steps is deprecated"):
        assert SB3Config(world="w", out="o", max_episode_steps=9).max_steps == 9
    with pytest.warns(DeprecationWarning):
        assert config.n_envs == 3
    with pytest.raises(TypeError, match="pass num_envs= alone"):
        SB3Config(world="w", out="o", n_envs=3, num_envs=4)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--temperature", "nan"),
        ("--temperature", "-1"),
        ("--done-threshold", "1.5"),
        ("--done-threshold", "inf"),
        ("--episodes", "0"),
        ("--max-steps", "0"),
        ("--workers", "0"),
    ],
)
def test_bad_values_are_one_line_naming_the_option(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", "--world", "nowhere", "--policy", "random", flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err and err.startswith("dreamgym evaluate:")


def test_python_configs_are_checked_too() -> None:
    with pytest.raises(ValueError, match="--done-threshold must be a finite number"):
        DreamOptions(world="w", done_threshold=float("nan"))
    with pytest.raises(ValueError, match="--episodes must be an integer"):
        RealRunOptions(episodes=2.5)
    with pytest.raises(ValueError, match="--precision must be one of auto, float32, bfloat16"):
        DreamOptions(world="w", precision="half")
    with pytest.raises(ValueError, match="--termination must be one of"):
        DreamAndRealOptions(world="w", termination="never")


def test_temperature_none_means_the_worlds_in_one_place() -> None:
    world = SimpleNamespace(temperature=1.15, max_episode_steps=300)
    options = DreamOptions(world="w", termination="threshold", done_threshold=0.8)
    settings = options.dream_settings(obs_mode="z", world=world)
    assert (settings.temperature, settings.max_episode_steps, settings.obs_mode) == (1.15, 300, "z")
    assert (settings.termination, settings.done_threshold) == ("threshold", 0.8)
    assert options.dream_settings().temperature is None  # resolved only against a world
    ours = DreamOptions(world="w", temperature=0.5, max_steps=7).dream_settings(world=world)
    assert (ours.temperature, ours.max_episode_steps) == (0.5, 7)
    assert options.dream_record(world)["temperature"] == 1.15


def test_evaluate_dreams_under_the_termination_given(discrete_world_dir: Path) -> None:
    """`evaluate --termination threshold` is the dream `evaluate_dream` runs under it."""
    common = {"world": str(discrete_world_dir), "policy": "constant:1", "episodes": 4}
    config = EvaluateConfig(**common, device="cpu", termination="threshold", done_threshold=0.01)
    report = evaluate_from_config(config)
    settings = DreamSettings(device="cpu", termination="threshold", done_threshold=0.01)
    expected = evaluate_dream(str(discrete_world_dir), "constant:1", 4, 0, settings=settings)
    np.testing.assert_allclose(report["returns"], expected)
    assert report["termination"] == "threshold" and report["done_threshold"] == 0.01


def test_help_loads_no_torch() -> None:
    code = (
        "import sys\n"
        "from dreamgym.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'dreamgym --help imported torch'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "evaluate" in done.stdout and "diagnose" in done.stdout


def test_a_command_that_cannot_load_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = ("dreamgym.no_such_module", "Config", "evaluate", "broken")
    monkeypatch.setitem(cli.JOBS, "evaluate", broken)
    assert main(["evaluate", "--world", "w", "--policy", "random"]) == 2
    err = capsys.readouterr().err
    assert "dreamgym evaluate: cannot load its options" in err and "no_such_module" in err
    build_parser(["gap"])  # the other commands still build


def test_train_cap_is_max_steps_and_recorded_under_its_old_key() -> None:
    """Renaming train's cap must not make finished runs look out of date."""
    from dreamgym.training.config import TrainConfig, bundle_settings

    with pytest.warns(DeprecationWarning, match="max_episode_steps is deprecated"):
        old = TrainConfig(data=["d"], out="o", max_episode_steps=7)
    new = TrainConfig(data=["d"], out="o", max_steps=7)
    assert old.max_steps == 7 and bundle_settings(new) == bundle_settings(old)
    assert bundle_settings(new)["max_episode_steps"] == 7 and "max_steps" not in bundle_settings(
        new
    )
