"""A world bundle's `config.json`: its one validator and its own checksum.

`config.json` says what the weights mean (env id, action space, preprocessing, V's and M's
hyper-parameters, the episode limit, τ) and records the sha256 of every other file. Since schema
version 2 it also records `config_sha256`, the sha256 of its own content without that key
(canonical JSON: sorted keys, no spaces), so an edited env id, limit or done head offset is
refused like a swapped weight file. Version 1 bundles (no such key) still load.

After editing a config.json by hand, re-stamp it: `python -m dreamgym.world_config WORLD_DIR`
(or `restamp_config(WORLD_DIR)`); every dreamgym writer of config.json stamps it itself.

This module imports no torch.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dreamgym.utils.files import atomic_write_json
from dreamgym.utils.validate import (
    InvalidValueError,
    check_float,
    check_int,
    check_mapping,
    check_positive,
    check_relative_path,
    check_str,
    is_real,
)
from dreamgym.utils.versioned_json import VERSION_KEY

SCHEMA_VERSION = 2
"""What dreamgym writes: version 2 carries `config_sha256`."""
SCHEMA_VERSIONS = (1, 2)
"""What dreamgym reads: version 1 (no config checksum) too."""
CHECKSUM_KEY = "config_sha256"
CONFIG_FILE = "config.json"
MIXTURE_KINDS = ("per_dim", "shared")
MEMORY_KINDS = ("mdnrnn", "rssm")
"""The memory families a bundle may name (`"memory"`; absent: "mdnrnn"), as `models.memory`."""
STOCH_KINDS = ("gaussian", "categorical")
"""An RSSM's stochastic state, as `models.rssm.STOCH_KINDS` (this module loads no torch)."""

Check = Callable[[Any, str, str], Any]


def config_checksum(config: dict[str, Any]) -> str:
    """sha256 of `config` without its own checksum, as canonical JSON (sorted keys, no spaces)."""
    body = {k: v for k, v in config.items() if k != CHECKSUM_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def stamp_config(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of `config` at `SCHEMA_VERSION` with its checksum, schema_version first."""
    body = {k: v for k, v in copy.deepcopy(config).items() if k not in (VERSION_KEY, CHECKSUM_KEY)}
    stamped = {VERSION_KEY: SCHEMA_VERSION, **body}
    stamped[CHECKSUM_KEY] = config_checksum(stamped)
    return stamped


def write_config(directory: str | os.PathLike[str], config: dict[str, Any]) -> dict[str, Any]:
    """Validate, stamp and write `directory/config.json` atomically; returns what was written."""
    path = Path(directory) / CONFIG_FILE
    stamped = stamp_config(config)
    validate_config(stamped, path)
    atomic_write_json(path, stamped)
    return stamped


def restamp_config(directory: str | os.PathLike[str]) -> str:
    """Re-stamp a bundle's config.json after a hand edit (checked first); returns its checksum.

    The sha256 of the weight files it lists are not recomputed: an edit of config.json must not
    make a replaced weight file look genuine.
    """
    path = Path(directory) / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InvalidValueError(f"{path}: cannot read it as JSON ({e})") from e
    check_mapping(config, "the file", str(path))
    if config.get(VERSION_KEY) not in SCHEMA_VERSIONS:
        raise InvalidValueError(
            f"{path}: {VERSION_KEY} {config.get(VERSION_KEY)!r} is not one dreamgym reads"
        )
    return write_config(directory, config)[CHECKSUM_KEY]


def check_config_checksum(config: dict[str, Any], path: Path) -> None:
    """A version-2 config must carry the checksum of its content (version 1 has none)."""
    if config.get(VERSION_KEY, 1) < 2:
        return
    recorded = config.get(CHECKSUM_KEY)
    if recorded != config_checksum(config):
        raise InvalidValueError(
            f"{path}: its content does not match its {CHECKSUM_KEY} "
            f"({str(recorded)[:12]}…): the file was edited or damaged; restore it, or after an "
            f"intended edit re-stamp it with `python -m dreamgym.world_config {path.parent}`"
        )


# --- field checks ------------------------------------------------------------------------------
def _opt(check: Check) -> Check:
    return lambda v, name, where: None if v is None else check(v, name, where)


def _int_at_least(minimum: int) -> Check:
    return lambda v, name, where: check_int(v, name, where, minimum=minimum)


def _finite(v: Any, name: str, where: str) -> float | None:
    return check_float(v, name, where)


def _non_negative(v: Any, name: str, where: str) -> float | None:
    return check_float(v, name, where, low=0.0)


def _mixture(v: Any, name: str, where: str) -> str:
    return check_str(v, name, where, choices=MIXTURE_KINDS)


VAE_FIELDS: dict[str, Check] = {"latent_dim": _int_at_least(1), "kl_tolerance": _non_negative}
MDNRNN_FIELDS: dict[str, Check] = {
    "latent_dim": _int_at_least(1),
    "action_dim": _int_at_least(1),
    "hidden_dim": _int_at_least(1),
    "n_mixtures": _int_at_least(1),
    "done_pos_weight": check_positive,
    "mixture": _mixture,
    "done_logit_offset": _finite,
    "reward_event": _non_negative,
    "reward_event_threshold": _finite,
}
PREPROCESSING_FIELDS: dict[str, Check] = {
    "image_key": _opt(check_str),
    "crop": _opt(lambda v, name, where: _int_list(v, name, where, length=4)),
    "size": _int_at_least(1),
}
RSSM_FIELDS: dict[str, Check] = {
    "memory": lambda v, name, where: check_str(v, name, where, choices=("rssm",)),
    "latent_dim": _int_at_least(1),
    "action_dim": _int_at_least(1),
    "deter_dim": _int_at_least(1),
    "hidden_dim": _int_at_least(1),
    "stoch": lambda v, name, where: check_str(v, name, where, choices=STOCH_KINDS),
    "stoch_dim": _int_at_least(1),
    "groups": _int_at_least(1),
    "classes": _int_at_least(1),
    "min_std": _non_negative,
    "unimix": _non_negative,
    "z_std": _non_negative,
    "done_pos_weight": check_positive,
    "done_logit_offset": _finite,
}
MEMORY_SECTIONS: dict[str, tuple[dict[str, Check], tuple[str, ...]]] = {
    "mdnrnn": (MDNRNN_FIELDS, ("latent_dim", "action_dim", "hidden_dim", "n_mixtures")),
    "rssm": (RSSM_FIELDS, ("latent_dim", "action_dim", "deter_dim", "hidden_dim", "stoch")),
}
"""Each memory family's section of config.json (named as the family) and its required fields."""
REQUIRED = ("env_id", "action_space", "preprocessing", "vae", "files")


def _int_list(value: Any, name: str, where: str, length: int) -> list[int]:
    if not isinstance(value, list) or len(value) != length:
        raise InvalidValueError(
            f"{where}: {name} must be a list of {length} integers, got {value!r}"
        )
    return [check_int(v, f"{name}[{i}]", where, minimum=0) for i, v in enumerate(value)]  # type: ignore[misc]


def _check_fields(
    section: Any, spec: dict[str, Check], prefix: str, where: str, required: tuple[str, ...]
) -> None:
    check_mapping(section, prefix, where)
    for key in section:
        if key not in spec:
            raise InvalidValueError(
                f"{where}: {prefix}.{key} is not a field dreamgym knows ({', '.join(spec)})"
            )
    for key in required:
        if key not in section:
            raise InvalidValueError(f"{where}: {prefix} lacks {key!r}; the bundle is corrupt")
    for key, value in section.items():
        spec[key](value, f"{prefix}.{key}", where)


def check_action_space_dict(d: Any, where: str) -> None:
    """An action space as JSON (`spaces.action_space_to_dict`): a Box or a Discrete."""
    check_mapping(d, "action_space", where)
    kind = check_str(d.get("type"), "action_space.type", where, choices=("Box", "Discrete"))
    if kind == "Discrete":
        check_int(d.get("n"), "action_space.n", where, minimum=1)
        check_int(d.get("start", 0), "action_space.start", where)
        return
    low, high = d.get("low"), d.get("high")
    for name, bound in (("low", low), ("high", high)):
        if not isinstance(bound, list) or not bound or not all(is_real(b) for b in bound):
            raise InvalidValueError(
                f"{where}: action_space.{name} must be a non-empty list of numbers, got {bound!r}"
            )
        for i, b in enumerate(bound):
            check_float(b, f"action_space.{name}[{i}]", where)
    if len(low) != len(high) or any(lo > hi for lo, hi in zip(low, high, strict=True)):  # type: ignore[arg-type]
        raise InvalidValueError(
            f"{where}: action_space.low {low} and high {high} must have the same length and "
            "low ≤ high"
        )


def check_preprocessing_dict(d: Any, where: str) -> None:
    """Frame preprocessing as JSON (`FramePreprocessing.to_dict`)."""
    _check_fields(d, PREPROCESSING_FIELDS, "preprocessing", where, ())


def validate_config(config: Any, path: str | os.PathLike[str]) -> None:
    """Every field of a bundle's config.json: types, finite numbers, ranges, file names.

    One `InvalidValueError` (a ValueError) naming the file and the field; the checksum is
    checked separately (`check_config_checksum`), once the content is known to be well formed.
    """
    where = str(path)
    check_mapping(config, "the file", where)
    for key in REQUIRED:
        if key not in config:
            raise InvalidValueError(f"{where} lacks the key {key!r}; the bundle is corrupt")
    check_str(config["env_id"], "env_id", where)
    _opt(check_str)(config.get("name"), "name", where)
    check_action_space_dict(config["action_space"], where)
    check_preprocessing_dict(config["preprocessing"], where)
    _check_fields(config["vae"], VAE_FIELDS, "vae", where, ("latent_dim",))
    memory = check_str(config.get("memory", "mdnrnn"), "memory", where, choices=MEMORY_KINDS)
    if memory not in config:
        raise InvalidValueError(f"{where} lacks the key {memory!r}; the bundle is corrupt")
    fields, required = MEMORY_SECTIONS[memory]
    _check_fields(config[memory], fields, memory, where, required)
    check_int(config.get("max_episode_steps"), "max_episode_steps", where, minimum=1, optional=True)
    check_positive(config.get("temperature", 1.0), "temperature", where)
    if "weights_dtype" in config:
        check_str(config["weights_dtype"], "weights_dtype", where, choices=("float32", "float16"))
    files = check_mapping(config["files"], "files", where)
    for name, digest in files.items():
        check_relative_path(name, f"files[{name!r}]", where)
        if not isinstance(digest, str) or len(digest) != 64:
            raise InvalidValueError(
                f"{where}: files[{name!r}] must be a sha256 hex digest, got {digest!r}"
            )
    for key in ("provenance", "metrics"):
        if key in config:
            check_mapping(config[key], key, where)


def default_model_card(config: dict[str, Any]) -> str:
    prov = config.get("provenance", {})
    metrics = config.get("metrics", {})
    lines = [
        f"# World: {config.get('name') or config['env_id']}",
        "",
        f"- Real env: `{config['env_id']}`",
        f"- Latent z: {config['vae']['latent_dim']}, {memory_line(config)}",
        f"- Default temperature τ: {config.get('temperature', 1.0)}",
        f"- Max episode steps: {config.get('max_episode_steps')}",
        "",
        "## Provenance",
        "```json",
        json.dumps(prov, indent=2),
        "```",
        "",
        "## Held-out metrics",
        "```json",
        json.dumps(metrics, indent=2),
        "```",
        "",
    ]
    if prov.get("kind") == "untrained":
        lines.insert(2, "**Untrained**: random V and M, for plumbing only. Dreams are noise.\n")
    return "\n".join(lines)


def memory_line(config: dict[str, Any]) -> str:
    """The memory in a few words, for a card."""
    if config.get("memory", "mdnrnn") == "rssm":
        m = config["rssm"]
        stoch = (
            f"Gaussian s of {m.get('stoch_dim', 32)}"
            if m["stoch"] == "gaussian"
            else f"{m.get('groups', 16)}×{m.get('classes', 16)} categorical s"
        )
        return f"memory: RSSM (GRU h {m['deter_dim']}, {stoch})"
    m = config["mdnrnn"]
    mixture = m.get("mixture", "shared").replace("_", " ")
    return f"LSTM hidden: {m['hidden_dim']}, mixtures: {m['n_mixtures']} ({mixture})"


def main(argv: list[str] | None = None) -> int:
    """`python -m dreamgym.world_config WORLD_DIR...`: re-stamp each bundle's config.json."""
    dirs = sys.argv[1:] if argv is None else argv
    if not dirs:
        print("usage: python -m dreamgym.world_config WORLD_DIR [WORLD_DIR ...]", file=sys.stderr)
        return 2
    for d in dirs:
        try:
            digest = restamp_config(d)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{Path(d) / CONFIG_FILE}: {CHECKSUM_KEY} {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
