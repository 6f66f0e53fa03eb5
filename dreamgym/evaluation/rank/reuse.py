"""Reuse the real side of an earlier `dreamgym rank` report (`--real-from`).

Real episodes are the slow half of a panel. Re-ranking the same panel in another world (a new
M, another temperature or termination rule) need not play them again when they cannot have
changed: a fixed policy never reads z or h, so its real returns are the same in every world of
the env; a trained policy acts through V and M, so its returns carry over only when V's and M's
weights (`World.weights_sha256`) and the policy's own files are unchanged. Everything else is
played.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dreamgym.evaluation.diagnose.reuse import (
    check_same_episodes,
    read_report,
    world_independent,
)
from dreamgym.evaluation.rank.panel import PanelEntry

REPORT_FILE = "rank.json"


def _read_report(path: str | Path) -> tuple[Path, dict[str, Any]]:
    p, report = read_report(path, REPORT_FILE, "rank")
    if not isinstance(report.get("policies"), list):
        raise ValueError(f"--real-from {p}: not a `dreamgym rank` report (no policies)")
    return p, report


def load_real_returns(
    path: str | Path,
    panel: list[PanelEntry],
    env_id: str,
    world_sha256: str,
    seed: int,
    episodes: int,
    max_steps: int | None,
) -> dict[str, np.ndarray]:
    """Real returns per spec of `panel` that the report at `path` holds and that still hold.

    Refuses a report of another env, seed, episode count or step cap (its returns would be of
    other episodes); a trained policy is taken only with the same world weights and files.
    """
    p, report = _read_report(path)
    theirs = {k: report.get(k) for k in ("env_id", "seed", "episodes", "max_steps")}
    ours = {"env_id": env_id, "seed": seed, "episodes": episodes, "max_steps": max_steps}
    check_same_episodes(p, theirs, ours, "rank")
    same_world = report.get("world_sha256") == world_sha256
    rows = {row.get("spec"): row for row in report["policies"] if isinstance(row, dict)}
    found = {}
    for entry in panel:
        row = rows.get(entry.spec)
        if row is None:
            continue
        fixed = world_independent(entry.spec)
        if fixed or (same_world and entry.sha256 is not None and row.get("sha256") == entry.sha256):
            found[entry.spec] = np.asarray(row["real"]["returns"], dtype=np.float64)
    return found
