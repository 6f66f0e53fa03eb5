"""Value checks at the door: one error, one line, naming where the value came from and the field.

Every option group (the dream's settings, real runs) and every file format (bundle config.json,
dataset manifest, controller JSON, agent sidecar) checks its values with these functions, so the
same mistake gives the same message wherever it is made. `where` names the source ("config.json
of world carracing", "DreamVectorEnv", "--episodes"), `name` the field. Bools are not numbers
here (True is not 1 episode), strings are not numbers (a config value "0.5" is a mistake, not a
float), and NaN or ±inf are never accepted where a finite number is meant.

This module imports no torch and nothing from dreamgym: configs and the CLI can call it cheaply.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

SEED_LIMIT = 2**64
"""Seeds are integers in [0, 2**64): what numpy's SeedSequence and torch's generators take."""


class InvalidValueError(ValueError):
    """A value that does not fit its field: wrong type, NaN/inf, out of range, or a bad path."""


def _label(name: str, where: str) -> str:
    return f"{where}: {name}" if where else name


def _fail(name: str, where: str, want: str, value: Any) -> InvalidValueError:
    return InvalidValueError(f"{_label(name, where)} must be {want}, got {value!r}")


def is_integer(value: Any) -> bool:
    """A true integer: int or numpy integer, not bool (a float 3.0 is not an integer here)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """An int or float (numpy ones too), not bool and not a string."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(
    value: Any,
    name: str,
    where: str = "",
    minimum: int | None = None,
    maximum: int | None = None,
    optional: bool = False,
) -> int | None:
    """`value` as an int within [minimum, maximum]; None only if `optional`."""
    if value is None and optional:
        return None
    want = "an integer"
    if minimum is not None and maximum is not None:
        want += f" in [{minimum}, {maximum}]"
    elif minimum is not None:
        want += f" ≥ {minimum}"
    elif maximum is not None:
        want += f" ≤ {maximum}"
    if optional:
        want += " (or null/None)"
    if not is_integer(value):
        raise _fail(name, where, want, value)
    number = int(value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise _fail(name, where, want, value)
    return number


def check_float(
    value: Any,
    name: str,
    where: str = "",
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> float | None:
    """`value` as a finite float within its bounds (`low_open`: low itself excluded)."""
    if value is None and optional:
        return None
    want = "a finite number"
    if low is not None:
        want += f" {'>' if low_open else '≥'} {low:g}"
    if high is not None:
        want += f"{' and' if low is not None else ''} {'<' if high_open else '≤'} {high:g}"
    if optional:
        want += " (or null/None)"
    if not is_real(value) or not math.isfinite(float(value)):
        raise _fail(name, where, want, value)
    number = float(value)
    too_low = low is not None and (number <= low if low_open else number < low)
    too_high = high is not None and (number >= high if high_open else number > high)
    if too_low or too_high:
        raise _fail(name, where, want, value)
    return number


def check_probability(value: Any, name: str, where: str = "") -> float:
    """A finite number in [0, 1]."""
    return check_float(value, name, where, low=0.0, high=1.0)  # type: ignore[return-value]


def check_positive(value: Any, name: str, where: str = "", optional: bool = False) -> float | None:
    """A finite number > 0."""
    return check_float(value, name, where, low=0.0, low_open=True, optional=optional)


def check_str(value: Any, name: str, where: str = "", choices: Sequence[str] | None = None) -> str:
    """A non-empty string, one of `choices` if given."""
    want = f"one of {tuple(choices)}" if choices is not None else "a non-empty string"
    if not isinstance(value, str) or not value or (choices is not None and value not in choices):
        raise _fail(name, where, want, value)
    return value


def check_bool(value: Any, name: str, where: str = "") -> bool:
    """A true bool (true/false in JSON), not 0/1 or "yes"."""
    if not isinstance(value, bool):
        raise _fail(name, where, "true or false", value)
    return value


def check_seed(
    value: Any, name: str = "seed", where: str = "", optional: bool = True
) -> int | None:
    """A seed: an integer in [0, 2**64) (None: draw one), never a float, bool or string."""
    if value is None and optional:
        return None
    if not is_integer(value) or not 0 <= int(value) < SEED_LIMIT:
        raise _fail(
            name, where, "an integer in [0, 2**64)" + (" or None" if optional else ""), value
        )
    return int(value)


def check_mapping(value: Any, name: str, where: str = "") -> dict[str, Any]:
    """A JSON object (dict)."""
    if not isinstance(value, dict):
        raise _fail(name, where, "a JSON object", value)
    return value


def check_relative_path(value: Any, name: str, where: str = "") -> str:
    """A path inside its folder: relative, no '..' part, no drive or root (posix or Windows)."""
    if not isinstance(value, str) or not value:
        raise _fail(name, where, "a relative path inside its folder", value)
    for flavour in (PurePosixPath, PureWindowsPath):
        p = flavour(value)
        if p.is_absolute() or p.anchor or ".." in p.parts:
            raise InvalidValueError(
                f"{_label(name, where)} {value!r} leaves its folder: only relative paths without "
                "'..' are allowed there"
            )
    return value


def resolve_inside(folder: str | os.PathLike[str], value: Any, name: str, where: str = "") -> Path:
    """`folder / value`, once `value` is a relative path that stays inside `folder` (symlinks too)."""
    check_relative_path(value, name, where)
    base = Path(folder).resolve()
    target = (base / value).resolve()
    if target != base and base not in target.parents:
        raise InvalidValueError(
            f"{_label(name, where)} {value!r} resolves outside {folder} (through a symlink); "
            "files it names must lie inside it"
        )
    return Path(folder) / value


DATASET_MARKER = "manifest.json"
"""A folder holding this file is a dataset (`dreamgym.data.manifest.MANIFEST_NAME`)."""
WORLD_MARKER = "config.json"
"""A folder holding this file is a world bundle (`dreamgym.world.CONFIG_FILE`)."""


def check_output_dir(
    out: str | os.PathLike[str],
    option: str = "--out",
    holds: str | None = None,
    inputs: Sequence[str | os.PathLike[str] | None] = (),
) -> Path:
    """`out` as a directory a job may write into: never a file, never one of its `inputs`, and a
    dataset or a world only when the job writes that kind (`holds`: "dataset" or "world").

    Outputs must not overwrite inputs: `train --data D --out D` would write the world among the
    shards, `collect --out WORLD` would mix shards into a bundle.
    """
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise InvalidValueError(f"{option} {out} is a file, not a directory; pass a directory")
    for given in inputs:
        if given is not None and Path(given).expanduser().resolve() == path.resolve():
            raise InvalidValueError(
                f"{option} {out} is also this job's input; write the output to another directory"
            )
    for kind, marker in (("dataset", DATASET_MARKER), ("world", WORLD_MARKER)):
        if holds != kind and (path / marker).is_file():
            raise InvalidValueError(
                f"{option} {out} holds a {kind} ({marker}); writing there would mix this "
                f"job's files into it — choose another directory"
            )
    return path


def check_real_run(
    episodes: Any,
    seed: Any,
    workers: Any = None,
    max_steps: Any = None,
    min_episodes: int = 1,
) -> tuple[int, int, int | None, int | None]:
    """The real-run options (episodes, seed, workers, max_steps), named as their CLI flags.

    The one validator of that option group: `collect`, `evaluate --real`, `gap` and `diagnose`
    refuse the same mistakes with the same words (episodes counted from `min_episodes`; a seed
    in [0, 2**64); workers ≥ 1 or None: the CPU count; max_steps ≥ 1 or None: the env's limit).
    """
    return (
        check_int(episodes, "--episodes", minimum=min_episodes),  # type: ignore[return-value]
        check_seed(seed, "--seed", optional=False),  # type: ignore[return-value]
        check_int(workers, "--workers", minimum=1, optional=True),
        check_int(max_steps, "--max-steps", minimum=1, optional=True),
    )
