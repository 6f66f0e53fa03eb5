"""Bad inputs at every door: each is refused with one line naming the file or option to fix.

One parametrized case per mistake: the dream's arguments and settings, seeds and actions, closed
envs, bundle config.json, dataset manifests, controller JSON, agent sidecars, outputs that would
overwrite inputs, unknown envs, a full disk and a failing Ray cluster. Tiny worlds, no training.
"""

from __future__ import annotations

import errno
import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from dreamgym.cli import main as cli_main
from dreamgym.data import collect, load_manifest
from dreamgym.envs.dream import DreamVectorEnv
from dreamgym.envs.sb3_vec import DreamVecEnv
from dreamgym.envs.settings import DreamSettings
from dreamgym.envs.single import DreamEnv
from dreamgym.policies.linear import LinearController
from dreamgym.policies.sb3_agent import validate_sidecar
from dreamgym.runners.errors import ClusterError
from dreamgym.world import (
    CONFIG_FILE,
    LATENTS_FILE,
    MDNRNN_FILE,
    World,
    WorldLoadError,
    bundled_world_names,
    sha256_file,
)
from dreamgym.world_config import (
    CHECKSUM_KEY,
    check_config_checksum,
    config_checksum,
    restamp_config,
)

TEST_ENV = "dreamgym_test_envs:TestImage-v0"


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# --- the dream's arguments ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_envs": 2.7}, "num_envs must be an integer ≥ 1, got 2.7"),
        ({"num_envs": True}, "num_envs must be an integer ≥ 1, got True"),
        ({"num_envs": "4"}, "num_envs must be an integer ≥ 1, got '4'"),
        ({"num_envs": 0}, "num_envs must be an integer ≥ 1, got 0"),
        ({"noise_groups": 1.5}, "noise_groups must be an integer"),
        ({"device": "mps"}, "device='mps' is not supported by the dream"),
        ({"device": 3}, "device must be 'auto', 'cpu' or 'cuda', got 3"),
        ({"done_threshold": math.nan}, "done_threshold must be a finite number"),
        ({"done_threshold": 2}, "done_threshold must be .* ≤ 1, got 2"),
        ({"done_threshold": True}, "done_threshold must be .*, got True"),
        ({"done_threshold": -1}, "done_threshold must be .*≥ 0.*, got -1"),
        ({"max_episode_steps": 0}, "max_episode_steps must be an integer ≥ 1"),
        ({"max_episode_steps": -3}, "max_episode_steps must be an integer ≥ 1"),
        ({"max_episode_steps": 5.5}, "max_episode_steps must be an integer ≥ 1"),
        ({"temperature": math.inf}, "temperature must be a finite number > 0, got inf"),
        ({"temperature": math.nan}, "temperature must be a finite number > 0, got nan"),
        ({"temperature": 0}, "temperature must be a finite number > 0, got 0"),
        ({"temperature": "1.2"}, "temperature must be a finite number > 0, got '1.2'"),
        ({"obs_mode": "rgb"}, "obs_mode must be one of"),
        ({"termination": "never"}, "termination must be one of"),
    ],
)
def test_dream_arguments(box_world_dir: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DreamVectorEnv(box_world_dir, **{"num_envs": 2, "device": "cpu", **kwargs})


def test_settings_refuse_the_same(box_world_dir: Path) -> None:
    with pytest.raises(ValueError, match="done_threshold"):
        DreamSettings(done_threshold=math.nan)
    with pytest.raises(ValueError, match="num_envs"):
        gym.make_vec("DreamEnv-v0", num_envs=True, world=str(box_world_dir), device="cpu")


@pytest.mark.parametrize(
    "seed", [-1, 1.5, "3", 2**64, 2**70, True, [1, -2], np.float64(2.0)], ids=repr
)
def test_vector_reset_seeds(box_world_dir: Path, seed: Any) -> None:
    env = DreamVectorEnv(box_world_dir, num_envs=2, device="cpu")
    with pytest.raises(ValueError, match=r"seed(\[1\])? must be an integer in \[0, 2\*\*64\)"):
        env.reset(seed=seed)
    env.reset(seed=2**64 - 1)  # the largest seed is fine
    env.reset(seed=np.int64(7))


@pytest.mark.parametrize("value", [math.inf, math.nan, 0.0, -1.0, "2", True])
def test_temperature_set_later(box_world_dir: Path, value: Any) -> None:
    single = DreamEnv(box_world_dir, device="cpu")
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        single.unwrapped.temperature = value
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        single.core.temperature = value
    assert single.temperature == 1.0


def test_uint64_action_shows_its_value(discrete_world_dir: Path) -> None:
    env = DreamVectorEnv(discrete_world_dir, num_envs=2, device="cpu")
    env.reset(seed=0)
    big = np.array([2**64 - 1, 0], dtype=np.uint64)
    with pytest.raises(ValueError, match="got \\[18446744073709551615\\]"):
        env.step(big)
    single = DreamEnv(discrete_world_dir, device="cpu")
    single.reset(seed=0)
    with pytest.raises(ValueError, match="got 18446744073709551615"):
        single.step(np.uint64(2**64 - 1))


def _closed_single(world: Path) -> tuple[Callable[[], Any], Callable[[], Any]]:
    env = DreamEnv(world, device="cpu")
    env.reset(seed=0)
    env.close()
    return (lambda: env.step(env.action_space.sample())), (lambda: env.reset(seed=1))


def _closed_vector(world: Path) -> tuple[Callable[[], Any], Callable[[], Any]]:
    env = DreamVectorEnv(world, num_envs=2, device="cpu")
    env.reset(seed=0)
    env.close()
    return (lambda: env.step(env.action_space.sample())), (lambda: env.reset(seed=1))


def _closed_sb3(world: Path) -> tuple[Callable[[], Any], Callable[[], Any]]:
    env = DreamVecEnv(world, num_envs=2, device="cpu", seed=0)
    env.reset()
    env.close()
    actions = np.stack([env.action_space.sample() for _ in range(2)])
    return (lambda: env.step(actions)), env.reset


@pytest.mark.parametrize("make", [_closed_single, _closed_vector, _closed_sb3])
def test_closed_is_closed(box_world_dir: Path, make: Callable[..., Any]) -> None:
    step, reset = make(box_world_dir)
    for call in (step, reset):
        with pytest.raises(gym.error.ClosedEnvironmentError, match="was closed"):
            call()


# --- bundle config.json ------------------------------------------------------------------------
@pytest.fixture
def bundle(tmp_path: Path, box_world_dir: Path) -> Path:
    return Path(shutil.copytree(box_world_dir, tmp_path / "world"))


def _edit(bundle: Path, edit: Callable[[dict[str, Any]], None], stamp: bool = True) -> None:
    """Edit config.json; `stamp`: re-stamp it, as a careful (or malicious) editor would."""
    config = json.loads((bundle / CONFIG_FILE).read_text())
    edit(config)
    if stamp:
        config[CHECKSUM_KEY] = config_checksum(config)
    (bundle / CONFIG_FILE).write_text(json.dumps(config))


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set config[a][b] = value for path "a.b"; under "files." the rest is one file name."""
    keys = ["files", path[6:]] if path.startswith("files.") else path.split(".")

    def edit(config: dict[str, Any]) -> None:
        *parents, leaf = keys
        target = config
        for p in parents:
            target = target[p]
        target[leaf] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set("files.../x", "0" * 64), r"files\['\.\./x'\] '\.\./x' leaves its folder"),
        (_set("files./etc/passwd", "0" * 64), "'/etc/passwd' leaves its folder"),
        (_set("mdnrnn.done_pos_weight", math.nan), "mdnrnn.done_pos_weight must be a finite"),
        (_set("mdnrnn.done_pos_weight", "10"), "mdnrnn.done_pos_weight must be a finite"),
        (_set("mdnrnn.hidden_dim", "24"), "mdnrnn.hidden_dim must be an integer"),
        (_set("mdnrnn.done_logit_offset", math.inf), "mdnrnn.done_logit_offset must be a finite"),
        (_set("mdnrnn.mixtures", 3), "mdnrnn.mixtures is not a field dreamgym knows"),
        (_set("vae.latent_dim", True), "vae.latent_dim must be an integer"),
        (_set("temperature", "0.5"), "temperature must be a finite number > 0"),
        (_set("temperature", -1), "temperature must be a finite number > 0"),
        (_set("max_episode_steps", 0), "max_episode_steps must be an integer ≥ 1"),
        (_set("max_episode_steps", -3), "max_episode_steps must be an integer ≥ 1"),
        (_set("env_id", 5), "env_id must be a non-empty string"),
        (_set("action_space.low", [-1.0, "0", 0.0]), "action_space.low must be"),
        (_set("action_space.type", "MultiDiscrete"), "action_space.type must be one of"),
        (_set("preprocessing.size", 0), "preprocessing.size must be an integer ≥ 1"),
        (_set("files", []), "files must be a JSON object"),
    ],
)
def test_bundle_config_fields(bundle: Path, edit: Any, match: str) -> None:
    _edit(bundle, edit)
    with pytest.raises(WorldLoadError, match=match) as info:
        World.load(bundle)
    assert CONFIG_FILE in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "edit", [_set("env_id", "CarRacing-v2"), _set("max_episode_steps", 5), _set("name", "x")]
)
def test_bundle_config_checksum_covers_every_field(bundle: Path, edit: Any) -> None:
    _edit(bundle, edit, stamp=False)
    with pytest.raises(WorldLoadError, match="does not match its config_sha256.*re-stamp"):
        World.load(bundle)
    restamp_config(bundle)  # an intended edit, re-stamped: loads
    World.load(bundle)


def test_outside_file_is_never_opened_or_hashed(bundle: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("outside")
    _edit(bundle, _set(f"files.../{secret.name}", "0" * 64))
    with pytest.raises(WorldLoadError) as info:
        World.load(bundle)
    assert sha256_file(secret)[:12] not in str(info.value)
    (bundle / "link").symlink_to(secret)
    _edit(bundle, lambda c: c["files"].pop(f"../{secret.name}"))
    _edit(bundle, _set("files.link", "0" * 64))
    with pytest.raises(WorldLoadError, match="resolves outside"):
        World.load(bundle)


def test_schema_1_bundle_without_checksum_still_loads(bundle: Path) -> None:
    def downgrade(config: dict[str, Any]) -> None:
        config["schema_version"] = 1
        del config[CHECKSUM_KEY]

    _edit(bundle, downgrade, stamp=False)
    assert World.load(bundle).config["schema_version"] == 1
    _edit(bundle, _set("schema_version", 2), stamp=False)  # version 2 without it: refused
    with pytest.raises(WorldLoadError, match="config_sha256"):
        World.load(bundle)


@pytest.mark.parametrize("name", bundled_world_names())
def test_bundled_worlds_are_stamped(name: str) -> None:
    from dreamgym.world import BUNDLED_DIR

    config = json.loads((BUNDLED_DIR / name / CONFIG_FILE).read_text())
    assert config["schema_version"] == 2 and CHECKSUM_KEY in config
    check_config_checksum(config, BUNDLED_DIR / name / CONFIG_FILE)


def _poison(file: str, key: str | None, value: float, dtype: torch.dtype | None = None) -> Any:
    def apply(bundle: Path) -> None:
        tensors = load_file(str(bundle / file))
        name = key or sorted(tensors)[0]
        t = tensors[name].clone()
        if dtype is not None:
            t = t.to(dtype)
        else:
            t.view(-1)[0] = value
        tensors[name] = t
        save_file(tensors, str(bundle / file))
        _edit(bundle, _set(f"files.{file}", sha256_file(bundle / file)))

    return apply


@pytest.mark.parametrize(
    ("poison", "match"),
    [
        (_poison(MDNRNN_FILE, None, math.nan), "holds NaN or inf"),
        (_poison("vae.safetensors", None, math.inf), "holds NaN or inf"),
        (_poison(LATENTS_FILE, "logvar", math.inf), "'logvar' holds NaN or inf"),
        (_poison(LATENTS_FILE, "mu", math.nan), "'mu' holds NaN or inf"),
        (_poison(MDNRNN_FILE, None, 0.0, torch.int64), "not a float"),
    ],
)
def test_weights_are_finite_floats(bundle: Path, poison: Any, match: str) -> None:
    poison(bundle)
    with pytest.raises(WorldLoadError, match=match):
        World.load(bundle)


def test_cli_nan_world_is_one_line(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _poison(MDNRNN_FILE, None, math.nan)(bundle)
    argv = ["evaluate", "--world", str(bundle), "--policy", "random", "--episodes", "2"]
    assert cli_main([*argv, "--device", "cpu"]) == 2
    assert "NaN or inf" in _one_line(capsys)


# --- dataset manifests -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "d"
    collect(TEST_ENV, 2, out, workers=1, progress=False)
    return out


def _manifest_edit(edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return edit


def _entry(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["episodes"][0].__setitem__(key, value)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_entry("file", "../x.npz"), r"episodes\[0\].file must be a shard name"),
        (_entry("file", "/etc/passwd"), r"episodes\[0\].file must be a shard name"),
        (_entry("steps", "12"), r"episodes\[0\].steps must be an integer"),
        (_entry("return", math.nan), r"episodes\[0\].return must be a finite number"),
        (_entry("sha256", None), r"episodes\[0\].sha256 must be a sha256"),
        (lambda m: m["episodes"].__setitem__(0, "episode_000000.npz"), "episodes\\[0\\] must be"),
        (lambda m: m.pop("env_id"), "env_id must be a non-empty string"),
        (lambda m: m.__setitem__("episodes", {}), "episodes must be a list"),
        (lambda m: m.__setitem__("seed", -1), "seed must be an integer ≥ 0"),
        (lambda m: m.__setitem__("action_space", None), "action_space must be a JSON object"),
        (lambda m: m.__setitem__("frame_shape", [64, 64]), "frame_shape must be"),
    ],
)
def test_manifest_fields(
    dataset: Path, tmp_path: Path, edit: Any, match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = Path(shutil.copytree(dataset, tmp_path / "d"))
    manifest = json.loads((data / "manifest.json").read_text())
    edit(manifest)
    (data / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=match) as info:
        load_manifest(data)
    assert "manifest.json" in str(info.value)
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "w"), "--no-progress"]
    assert cli_main(argv) == 2
    assert "manifest.json" in _one_line(capsys)


# --- controller JSON and agent sidecars -------------------------------------------------------
@pytest.fixture
def controller(tmp_path: Path, box_world_dir: Path) -> Path:
    world = World.load(box_world_dir)
    ctrl = LinearController(world.latent_dim + world.hidden_dim, world.action_space, obs_mode="zh")
    ctrl.save(tmp_path / "ctrl", world)
    return tmp_path / "ctrl"


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("obs_dim", "30", "obs_dim must be an integer ≥ 1"),
        ("obs_dim", 0, "obs_dim must be an integer ≥ 1"),
        ("obs_mode", "pixels", "obs_mode must be one of"),
        ("action_space", {"type": "Box", "low": [0], "high": []}, "action_space"),
        ("action_head", "magic", "has action_head 'magic'; this dreamgym knows"),
        ("weights_sha256", 12, "weights_sha256 must be a sha256"),
    ],
)
def test_controller_json_fields(controller: Path, key: str, value: Any, match: str) -> None:
    meta_path = controller / "controller.json"
    meta = json.loads(meta_path.read_text())
    meta[key] = value
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=match) as info:
        LinearController.load(controller)
    assert "controller.json" in str(info.value)


def test_controller_weights_are_finite(controller: Path) -> None:
    weights = controller / "controller.safetensors"
    tensors = load_file(str(weights))
    tensors["W"][0, 0] = math.nan
    save_file(tensors, str(weights))
    meta_path = controller / "controller.json"
    meta = json.loads(meta_path.read_text())
    meta["weights_sha256"] = sha256_file(weights)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="finite floats"):
        LinearController.load(controller)


SIDECAR = {
    "format": "dreamgym-sb3-agent",
    "world": {"name": "w", "env_id": "CarRacing-v3", "sha256": "0" * 64},
    "obs_mode": "zh",
    "algo": "ppo",
}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"world": "carracing"}, "world must be a JSON object"),
        ({"world": {"name": "w", "env_id": 3, "sha256": "x"}}, "world.env_id must be"),
        ({"obs_mode": "rgb"}, "obs_mode must be one of"),
        ({"algo": "dqn"}, "algo must be one of"),
        ({"policy": 7}, "policy must be a non-empty string"),
    ],
)
def test_agent_sidecar_fields(change: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        validate_sidecar({**SIDECAR, **change}, Path("agents/ppo.json"))
    assert "ppo.json" in str(info.value)
    validate_sidecar(SIDECAR, Path("agents/ppo.json"))


# --- outputs, envs, disks and clusters --------------------------------------------------------
def test_outputs_never_overwrite_inputs(
    dataset: Path, box_world_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (["train", "--data", str(dataset), "--out", str(dataset)], "also this job's input"),
        (["train", "--data", str(box_world_dir), "--out", str(dataset)], "holds a dataset"),
        (["train", "--data", str(dataset), "--out", str(a_file)], "is a file"),
        (
            ["collect", "--env", TEST_ENV, "--episodes", "1", "--out", str(box_world_dir)],
            "holds a world",
        ),
        (["collect", "--env", TEST_ENV, "--episodes", "1", "--out", str(a_file)], "is a file"),
        (["controller", "--world", str(box_world_dir), "--out", str(a_file)], "is a file"),
        (["controller", "--world", str(box_world_dir), "--out", str(dataset)], "holds a dataset"),
        (["init", "--env", TEST_ENV, "--out", str(dataset)], "holds a dataset"),
    ]
    for argv, match in cases:
        assert cli_main(argv) == 2, argv
        line = _one_line(capsys)
        assert match in line and "--out" in line, line
    assert not (dataset / CONFIG_FILE).exists() and not list(box_world_dir.glob("episode_*"))


@pytest.mark.parametrize("job", ["collect", "init"])
def test_unknown_env_is_one_line(
    tmp_path: Path, job: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [job, "--env", "NoSuchEnv-v0", "--out", str(tmp_path / "o")]
    argv += ["--episodes", "1"] if job == "collect" else []
    assert cli_main(argv) == 2
    assert "no real env 'NoSuchEnv-v0'" in _one_line(capsys)


def test_disk_full_is_one_line_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dreamgym.data.shards as shards

    real_write = shards.atomic_write_bytes
    calls = {"n": 0}

    def full_after_one(path: Any, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(path, data)

    out = tmp_path / "d"
    argv = ["collect", "--env", TEST_ENV, "--episodes", "3", "--out", str(out), "--workers", "1"]
    monkeypatch.setattr(shards, "atomic_write_bytes", full_after_one)
    assert cli_main([*argv, "--no-progress"]) == 2
    line = _one_line(capsys)
    assert "disk is full" in line and "re-run the same command" in line
    monkeypatch.undo()
    assert len(load_manifest(out)["episodes"]) == 1  # what was written is kept
    assert cli_main([*argv, "--no-progress"]) == 0
    whole = tmp_path / "whole"
    collect(TEST_ENV, 3, whole, workers=1, progress=False)
    for name in ("episode_000000.npz", "episode_000002.npz"):
        assert (out / name).read_bytes() == (whole / name).read_bytes()


def test_failing_ray_cluster_is_one_dreamgym_line() -> None:
    ray = pytest.importorskip("ray")
    from dreamgym.runners import ray_backend

    class DeadCluster:
        exceptions = ray.exceptions

        @staticmethod
        def get(ref: Any) -> Any:
            raise ray.exceptions.RaySystemError("the head node is gone\nmore lines")

    with pytest.raises(ClusterError, match="the Ray cluster failed .*RaySystemError.*re-run"):
        ray_backend._result(DeadCluster, object(), 3)
