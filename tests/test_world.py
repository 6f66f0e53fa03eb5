"""The world bundle: exact round trips, and a clear WorldLoadError naming the file for each corruption."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import build_tiny_world  # tests/ is on sys.path under pytest

from dreamgym.world import (
    CONFIG_FILE,
    LATENTS_FILE,
    MDNRNN_FILE,
    MODEL_CARD_FILE,
    SCHEMA_VERSION,
    VAE_FILE,
    World,
    WorldLoadError,
    sha256_file,
)
from dreamgym.world_config import CHECKSUM_KEY, config_checksum


def _assert_state_equal(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sb[k].dtype == torch.float32, k
        assert torch.equal(sa[k], sb[k]), k


def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    world = build_tiny_world(discrete=False)
    world.save(tmp_path / "w")
    assert {p.name for p in (tmp_path / "w").iterdir()} == {
        CONFIG_FILE,
        VAE_FILE,
        MDNRNN_FILE,
        LATENTS_FILE,
        MODEL_CARD_FILE,
    }
    loaded = World.load(tmp_path / "w")
    _assert_state_equal(world.vae, loaded.vae)
    _assert_state_equal(world.mdnrnn, loaded.mdnrnn)
    assert torch.equal(world.initial_mu, loaded.initial_mu)
    assert torch.equal(world.initial_logvar, loaded.initial_logvar)
    assert loaded.initial_mu.dtype == torch.float32
    assert loaded.config["schema_version"] == SCHEMA_VERSION
    assert loaded.config["weights_dtype"] == "float32"
    assert loaded.action_space == world.action_space
    assert loaded.max_episode_steps == world.max_episode_steps
    assert loaded.path == tmp_path / "w"
    # saving the loaded world again gives the same bytes (checksums are stable)
    loaded.save(tmp_path / "w2")
    for name in (VAE_FILE, MDNRNN_FILE, LATENTS_FILE):
        assert sha256_file(tmp_path / "w" / name) == sha256_file(tmp_path / "w2" / name)


def test_discrete_world_round_trip(tmp_path: Path) -> None:
    world = build_tiny_world(discrete=True)
    loaded = World.load(world.save(tmp_path / "w"))
    assert loaded.action_space == world.action_space
    _assert_state_equal(world.mdnrnn, loaded.mdnrnn)


def test_float16_save_loads_within_tolerance(tmp_path: Path) -> None:
    world = build_tiny_world(discrete=False)
    world.save(tmp_path / "w32")
    world.save(tmp_path / "w16", dtype="float16")
    assert (tmp_path / "w16" / VAE_FILE).stat().st_size < 0.6 * (
        tmp_path / "w32" / VAE_FILE
    ).stat().st_size
    loaded = World.load(tmp_path / "w16")
    assert loaded.config["weights_dtype"] == "float16"
    ref = build_tiny_world(discrete=False)  # same seed, untouched by save's dtype
    for mine, theirs in ((loaded.vae, ref.vae), (loaded.mdnrnn, ref.mdnrnn)):
        for k, v in mine.state_dict().items():
            assert v.dtype == torch.float32
            assert torch.allclose(v, theirs.state_dict()[k], rtol=1e-3, atol=1e-4), k
    assert torch.equal(loaded.initial_mu, ref.initial_mu)  # the latent bank stays float32
    with pytest.raises(ValueError, match="dtype"):
        world.save(tmp_path / "bad", dtype="bfloat16")


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return build_tiny_world(discrete=False).save(tmp_path / "world")


def _edit_config(path: Path, **changes) -> None:
    cfg = json.loads((path / CONFIG_FILE).read_text())
    for key, value in changes.items():
        target = cfg
        *parents, leaf = key.split("__")
        for p in parents:
            target = target[p]
        target[leaf] = value
    cfg[CHECKSUM_KEY] = config_checksum(cfg)  # an edit made through the front door
    (path / CONFIG_FILE).write_text(json.dumps(cfg))


def _fix_checksum(path: Path, name: str) -> None:
    """Record the current sha256 of `name`, so only a later check (parse, shape) can object."""
    cfg = json.loads((path / CONFIG_FILE).read_text())
    cfg["files"][name] = sha256_file(path / name)
    cfg[CHECKSUM_KEY] = config_checksum(cfg)
    (path / CONFIG_FILE).write_text(json.dumps(cfg))


@pytest.mark.parametrize("name", [CONFIG_FILE, VAE_FILE, MDNRNN_FILE, LATENTS_FILE])
def test_missing_file_names_it(saved: Path, name: str) -> None:
    (saved / name).unlink()
    with pytest.raises(WorldLoadError, match=re.escape(name)):
        World.load(saved)


@pytest.mark.parametrize("name", [VAE_FILE, MDNRNN_FILE, LATENTS_FILE])
def test_flipped_byte_fails_checksum(saved: Path, name: str) -> None:
    data = bytearray((saved / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (saved / name).write_bytes(bytes(data))
    with pytest.raises(WorldLoadError, match=re.escape(name) + ".*sha256"):
        World.load(saved)


@pytest.mark.parametrize("name", [VAE_FILE, MDNRNN_FILE, LATENTS_FILE])
def test_truncated_safetensors(saved: Path, name: str) -> None:
    data = (saved / name).read_bytes()
    (saved / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(WorldLoadError, match=re.escape(name)):
        World.load(saved)  # caught by the checksum
    _fix_checksum(saved, name)
    with pytest.raises(WorldLoadError, match=re.escape(name)) as info:
        World.load(saved)  # caught by the safetensors parser, still a WorldLoadError
    assert "sha256" not in str(info.value)


def test_shapes_not_matching_config(saved: Path) -> None:
    """config.json says latent 7 but the weights were saved with latent 6: the shape check objects."""
    _edit_config(saved, vae__latent_dim=7, mdnrnn__latent_dim=7)
    with pytest.raises(WorldLoadError, match=re.escape(VAE_FILE) + ".*shape"):
        World.load(saved)


def test_latent_bank_not_matching_config(saved: Path, tmp_path: Path) -> None:
    """A latent bank from a different world (latent 8) in a latent-6 bundle."""
    other = build_tiny_world(discrete=False, latent=8).save(tmp_path / "other")
    shutil.copy(other / LATENTS_FILE, saved / LATENTS_FILE)
    _fix_checksum(saved, LATENTS_FILE)
    with pytest.raises(WorldLoadError, match=re.escape(LATENTS_FILE)):
        World.load(saved)


def test_action_space_not_matching_m(saved: Path) -> None:
    _edit_config(saved, action_space={"type": "Discrete", "n": 5, "start": 0})
    with pytest.raises(WorldLoadError, match="action_dim"):
        World.load(saved)


def test_wrong_schema_version(saved: Path) -> None:
    _edit_config(saved, schema_version=SCHEMA_VERSION + 1)
    with pytest.raises(WorldLoadError, match=re.escape(CONFIG_FILE) + ".*schema_version"):
        World.load(saved)


def test_config_not_json_or_incomplete(saved: Path) -> None:
    cfg = (saved / CONFIG_FILE).read_text()
    (saved / CONFIG_FILE).write_text(cfg[: len(cfg) // 2])
    with pytest.raises(WorldLoadError, match=re.escape(CONFIG_FILE)):
        World.load(saved)
    (saved / CONFIG_FILE).write_text(json.dumps({"schema_version": SCHEMA_VERSION}))
    with pytest.raises(WorldLoadError, match="env_id"):
        World.load(saved)


def test_unknown_world_name() -> None:
    with pytest.raises(WorldLoadError, match="no-such-world"):
        World.load("no-such-world")


def test_extra_registered_file_is_checked(saved: Path) -> None:
    world = World.load(saved)
    (saved / "controller.json").write_text("{}")
    world.register_file("controller.json")
    World.load(saved)
    (saved / "controller.json").write_text('{"x": 1}')
    with pytest.raises(WorldLoadError, match=r"controller\.json"):
        World.load(saved)


def test_copy_to_is_independent(saved: Path) -> None:
    world = World.load(saved)
    twin = world.copy_to("cpu")
    with torch.no_grad():
        twin.mdnrnn.head.bias.add_(1.0)
    assert not torch.equal(twin.mdnrnn.head.bias, world.mdnrnn.head.bias)
