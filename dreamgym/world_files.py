"""Reading a world bundle's files: config.json validated, safetensors checked, no pickle.

`dreamgym.world.World.load` reads through these, so every way a bundle can be damaged (a file cut
off, NaN weights, shapes that do not fit the config, a name leaving the bundle) is one
`WorldLoadError` naming the file and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from dreamgym.utils.files import sha256_file
from dreamgym.utils.validate import resolve_inside
from dreamgym.utils.versioned_json import read_versioned_json
from dreamgym.world_config import (
    SCHEMA_VERSIONS,
    check_config_checksum,
    validate_config,
)


class WorldLoadError(ValueError):
    """A world bundle is missing, incomplete, corrupt, or does not fit what it is used with."""


def read_config(config_path: Path) -> dict[str, Any]:
    """config.json, once its version, every field and (version 2) its own checksum are right."""
    config = read_versioned_json(
        config_path,
        "world config",
        SCHEMA_VERSIONS,
        "the bundle is corrupt or from another dreamgym: restore it or re-save the world",
        error=WorldLoadError,
    )
    try:
        validate_config(config, config_path)
        check_config_checksum(config, config_path)
    except ValueError as e:
        raise WorldLoadError(str(e)) from None
    return config


def check_files(
    path: Path, config_path: Path, checksums: dict[str, str], required: tuple[str, ...]
) -> None:
    """Every file config.json names is there, inside the bundle, with its recorded sha256."""
    for name in required:
        if name not in checksums:
            raise WorldLoadError(f"{config_path} records no sha256 for {name}; re-save the world")
    for name, expected in checksums.items():
        f = inside(path, name, config_path)
        if not f.is_file():
            raise WorldLoadError(
                f"world {path} has no {name} — re-run `dreamgym train` or pass a complete "
                "bundle directory"
            )
        actual = sha256_file(f)
        if actual != expected:
            raise WorldLoadError(
                f"{f} has sha256 {actual[:12]}…, but {config_path.name} records "
                f"{expected[:12]}…: the file is corrupt or was replaced; restore it or re-save "
                "the world"
            )


def inside(path: Path, name: str, config_path: Path) -> Path:
    """A file the config names, once its name stays inside the bundle (no '..', no root)."""
    try:
        return resolve_inside(path, name, f"files[{name!r}]", str(config_path))
    except ValueError as e:
        raise WorldLoadError(str(e)) from None


def check_weights(file: Path, name: str, tensor: torch.Tensor) -> None:
    """Weights are floating point and finite: a NaN in V or M would dream NaN without a word."""
    if not tensor.is_floating_point():
        raise WorldLoadError(
            f"{file}: tensor {name!r} has dtype {tensor.dtype}, not a float; the weights are "
            "not a dreamgym world's"
        )
    if not bool(torch.isfinite(tensor).all()):
        raise WorldLoadError(
            f"{file}: tensor {name!r} holds NaN or inf values; the weights are damaged (a "
            "diverged training run?) — retrain or restore the bundle"
        )


def read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file; a cut-off or garbled file is a WorldLoadError naming it."""
    try:
        return load_file(str(file))
    except Exception as e:  # safetensors raises its own error types for a cut-off file
        raise WorldLoadError(f"{file} is not a readable safetensors file ({e})") from e


def load_state(module: torch.nn.Module, file: Path) -> None:
    """Load safetensors weights into `module`, naming the file on any mismatch."""
    state = read_safetensors(file)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise WorldLoadError(
            f"{file} does not match the network in config.json: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}"
        )
    for k, v in expected.items():
        check_weights(file, k, state[k])
        if tuple(state[k].shape) != tuple(v.shape):
            raise WorldLoadError(
                f"{file}: tensor {k!r} has shape {tuple(state[k].shape)} but config.json implies "
                f"{tuple(v.shape)}; the weights do not match the config"
            )
    module.load_state_dict({k: v.float() for k, v in state.items()})
