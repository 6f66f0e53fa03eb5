"""Reuse the real side of an earlier `diagnose` report (`--real-from`).

Comparing candidate worlds of one env is the fidelity loop's everyday job, and the real episodes
are its slow half (CarRacing: ~10 s each, 8 policies × 16 episodes per report). A fixed policy
(`constant:`, `alternate:`) or `random` does not look at V or M, so on the same env, seeds,
episode count and cap its real returns are the same for every world: they are read back from
the earlier report instead of being played again. Policies that act through a world (`bundled`,
a controller, an SB3 agent) are always played.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dreamgym.policies import is_fixed_spec

REPORT_FILE = "diagnose.json"


def world_independent(spec: str) -> bool:
    """Whether a policy's real returns do not depend on the world (it never reads z or h)."""
    return spec == "random" or is_fixed_spec(spec)


def read_report(path: str | Path, file_name: str, command: str) -> tuple[Path, dict[str, Any]]:
    """The JSON report at `path` (the file, or `file_name` in that directory) for `--real-from`;
    one line naming the fix when it is missing or not JSON. `command` names its writer."""
    p = Path(path)
    if p.is_dir():
        p = p / file_name
    if not p.is_file():
        raise FileNotFoundError(
            f"--real-from {path}: no {file_name} there; give a report written by "
            f"`dreamgym {command}` (its --out directory or the file)"
        )
    try:
        report = json.loads(p.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"--real-from {p}: not a `dreamgym {command}` report ({err})") from err
    if not isinstance(report, dict):
        raise ValueError(f"--real-from {p}: not a `dreamgym {command}` report (not an object)")
    return p, report


def check_same_episodes(p: Path, theirs: dict[str, Any], ours: dict[str, Any], rerun: str) -> None:
    """Refuse an earlier report whose real episodes are not this run's (another env, seed,
    episode count or cap): its returns would be of other episodes. `rerun` says how to match."""
    wrong = [f"{k} {theirs[k]!r} (here {ours[k]!r})" for k in ours if theirs[k] != ours[k]]
    if wrong:
        raise ValueError(
            f"--real-from {p}: its real episodes are not this run's: {', '.join(wrong)}; "
            f"{rerun} with the same --seed, --episodes and --max-steps on the same env, or drop "
            "--real-from"
        )


def load_real_returns(
    path: str | Path, env_id: str, seed: int, episodes: int, max_steps: int | None
) -> dict[str, np.ndarray]:
    """Real returns per world-independent spec of the report at `path` (file or its directory).

    Refuses a report of another env, seed, episode count or step cap: its returns would be of
    other episodes, and the comparison would silently be of different things.
    """
    p, report = read_report(path, REPORT_FILE, "diagnose")
    try:
        rows = report["suite"]
        theirs = {
            "env": report["env_id"],
            "seed": report["seed"],
            "episodes": report["episodes"],
            "max steps": report["max_steps"],
        }
    except (KeyError, TypeError) as err:
        raise ValueError(f"--real-from {p}: not a `dreamgym diagnose` report ({err})") from err
    ours = {"env": env_id, "seed": seed, "episodes": episodes, "max steps": max_steps}
    check_same_episodes(p, theirs, ours, "run diagnose")
    return {
        row["spec"]: np.asarray(row["real"]["returns"], dtype=np.float64)
        for row in rows
        if world_independent(row["spec"]) and row.get("real") is not None  # not --dream-only's
    }
