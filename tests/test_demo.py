"""`dreamgym demo` end to end, at a tiny budget, on a tiny world of the real VizdoomTakeCover-v1.

TakeCover episodes end within a few hundred cheap steps (CarRacing's run to 1,000 steps, and the
demo has no step cap), so the whole job — CMA-ES, dream and real evaluations of the fresh
controller and the random baseline, gap files, the real | dream video, the summary — runs in
seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamgym.cli import main as cli_main


@pytest.fixture(scope="module")
def doom_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_wrappers import DOOM, real_tiny_world

    return real_tiny_world(DOOM).save(tmp_path_factory.mktemp("worlds") / "doom")


def test_cli_demo(tmp_path: Path, doom_world_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    code = cli_main(
        ["demo", "--out", str(out), "--worlds", f"nowhere,{doom_world_dir}", "--generations", "1",
         "--popsize", "2", "--rollouts", "1", "--episodes", "1", "--video-steps", "3",
         "--workers", "1", "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "skipping nowhere" in printed and "ships no controller" in printed
    assert "## Dream vs real" in printed and "| doom | fresh (demo) |" in printed

    wdir = out / "doom"
    meta = json.loads((wdir / "fresh_controller" / "controller.json").read_text())
    assert meta["trained_generations"] == 1 and meta["trainer"] == "cma-es"
    summary = json.loads((out / "summary.json").read_text())["worlds"]["doom"]
    for label, folder in (("fresh (demo)", "fresh"), ("random", "random")):
        report = json.loads((wdir / folder / "gap.json").read_text())
        assert len(report["dream"]["returns"]) == len(report["real"]["returns"]) == 1
        assert summary[label] == {"dream": report["dream"]["mean"], "real": report["real"]["mean"]}
        assert (wdir / folder / "gap.png").read_bytes()[:4] == b"\x89PNG"
    video = Path(summary["video"])
    assert video.parent == wdir and video.stem == "real_vs_dream" and video.stat().st_size > 0
    table = (out / "summary.md").read_text()
    assert "## Summary" in table and "| doom | random |" in table
