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


def load_real_returns(
    path: str | Path, env_id: str, seed: int, episodes: int, max_steps: int | None
) -> dict[str, np.ndarray]:
    """Real returns per world-independent spec of the report at `path` (file or its directory).

    Refuses a report of another env, seed, episode count or step cap: its returns would be of
    other episodes, and the comparison would silently be of different things.
    """
    p = Path(path)
    if p.is_dir():
        p = p / REPORT_FILE
    if not p.is_file():
        raise FileNotFoundError(
            f"--real-from {path}: no {REPORT_FILE} there; give a report written by "
            "`dreamgym diagnose` (its --out directory or the file)"
        )
    try:
        report: dict[str, Any] = json.loads(p.read_text())
        rows = report["suite"]
        theirs = {
            "env": report["env_id"],
            "seed": report["seed"],
            "episodes": report["episodes"],
            "max steps": report["max_steps"],
        }
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"--real-from {p}: not a `dreamgym diagnose` report ({err})") from err
    ours = {"env": env_id, "seed": seed, "episodes": episodes, "max steps": max_steps}
    wrong = [f"{k} {theirs[k]!r} (here {ours[k]!r})" for k in ours if theirs[k] != ours[k]]
    if wrong:
        raise ValueError(
            f"--real-from {p}: its real episodes are not this run's: {', '.join(wrong)}; "
            "run diagnose with the same --seed, --episodes and --max-steps on the same env, "
            "or drop --real-from"
        )
    return {
        row["spec"]: np.asarray(row["real"]["returns"], dtype=np.float64)
        for row in rows
        if world_independent(row["spec"]) and row.get("real") is not None  # not --dream-only's
    }
