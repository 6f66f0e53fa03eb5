"""The panel: which policies `dreamgym rank` scores, read from specs and folders.

A panel mixes policies that never look at the world (constant actions, random: "fixed") with
ones trained in it (controllers, SB3 agents: "trained"). The dream tends to flatter the trained
ones — they searched it for its mistakes — so agreement is reported over both and over the
trained alone. Every policy is loaded once here, so a bad spec fails before any episode runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from dreamgym.evaluation.diagnose.reuse import world_independent
from dreamgym.evaluation.diagnose.suite import fixed_suite
from dreamgym.policies import SB3Policy, controller_paths, load_policy
from dreamgym.policies.linear import CONTROLLER_WEIGHTS
from dreamgym.policies.sb3_agent import agent_paths
from dreamgym.world import World

KINDS = ("fixed", "controller", "sb3")
"""fixed: never reads z or h (constant, alternating, random); controller and sb3: trained."""
SB3_CHECKPOINT_SUFFIX = ".partial.zip"
"""`dreamgym sb3` checkpoints (not finished agents): left out of a folder's panel."""


@dataclass(frozen=True)
class PanelEntry:
    """One policy of the panel: a label for tables, the spec that loads it, and its kind."""

    label: str
    spec: str
    kind: str
    sha256: str | None = None
    """sha256 of the policy's files (None for fixed policies): `--real-from` reuses a trained
    policy's real returns only when its files are unchanged."""

    @property
    def trained(self) -> bool:
        return self.kind != "fixed"


def policies_in(folder: Path) -> list[Path]:
    """Controllers (directories or .safetensors + .json) and SB3 agents (.zip) under `folder`,
    in name order; a folder that is a controller is not searched further."""
    found: list[Path] = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            found += [p] if (p / CONTROLLER_WEIGHTS).is_file() else policies_in(p)
        elif p.suffix == ".zip" and not p.name.endswith(SB3_CHECKPOINT_SUFFIX):
            found.append(p)
        elif p.suffix == ".safetensors" and p.with_suffix(".json").is_file():
            found.append(p)
    return found


def _expand(spec: str, panel_dir: bool) -> list[tuple[str, str]]:
    """(label, spec) for one --policies entry or --panel-dir folder."""
    p = Path(spec).expanduser()
    is_folder = p.is_dir() and not (p / CONTROLLER_WEIGHTS).is_file()
    if not (panel_dir or is_folder):
        return [(spec, spec)]
    if not p.is_dir():
        raise FileNotFoundError(f"--panel-dir {spec}: no such folder")
    found = policies_in(p)
    if not found:
        raise ValueError(
            f"folder {spec} holds no policy: put controller directories (dreamgym controller "
            "--out), controller .safetensors + .json files or SB3 .zip agents in it"
        )
    names = [str(f.relative_to(p)).removesuffix(".zip").removesuffix(".safetensors") for f in found]
    return [(name, str(f)) for name, f in zip(names, found, strict=True)]


def _files_sha256(spec: str, kind: str, world: World) -> str | None:
    if kind == "fixed":
        return None
    if spec == "bundled":
        files = [Path(world.path or "") / "controller.safetensors"]
    elif kind == "controller":
        files = list(controller_paths(spec))
    else:
        files = list(agent_paths(spec))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + (f.read_bytes() if f.is_file() else b""))
    return h.hexdigest()


def build_panel(
    world: World,
    specs: list[str],
    panel_dirs: list[str],
    fixed: bool,
    alternate_every: int,
    seed: int,
) -> list[PanelEntry]:
    """The panel in order: `specs` (a folder among them expands), `panel_dirs`, then with
    `fixed` diagnose's fixed suite; a spec already in the panel is not added twice. Every
    policy is loaded against `world` now (a clear error for a bad spec)."""
    pairs = [pair for s in specs for pair in _expand(s, panel_dir=False)]
    pairs += [pair for d in panel_dirs for pair in _expand(d, panel_dir=True)]
    if fixed:
        pairs += fixed_suite(world, alternate_every)
    panel, seen = [], set()
    for label, spec in pairs:
        key = spec if world_independent(spec) or spec == "bundled" else str(Path(spec).resolve())
        if key in seen:
            continue
        seen.add(key)
        policy = load_policy(spec, world, seed=seed)  # a bad spec fails here, in one line
        kind = (
            "fixed"
            if world_independent(spec)
            else ("sb3" if isinstance(policy, SB3Policy) else "controller")
        )
        panel.append(PanelEntry(label, spec, kind, _files_sha256(spec, kind, world)))
    return panel
