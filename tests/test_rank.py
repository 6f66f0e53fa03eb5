"""`dreamgym rank`: rank and linear correlations, the dream → real line, the panel and the CLI.

The statistics are checked against numbers computed by hand (ties included). The job runs on
tiny worlds: end to end with real TakeCover episodes capped at a few steps (as
tests/test_diagnose.py does), and with the real side replaced by known returns where the test
is about what is done with them (agreement, `--real-from`).
"""

from __future__ import annotations

import csv
import doctest
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import build_tiny_world

import dreamgym.evaluation.rank.correlation as correlation_module
from dreamgym.cli import main as cli_main
from dreamgym.controllers import LinearController
from dreamgym.evaluation import evaluate_dream
from dreamgym.evaluation.rank import (
    RankConfig,
    agreement,
    average_ranks,
    build_panel,
    fit_dream_to_real,
    pearson,
    policies_in,
    predict_real,
    rank,
    ratio_ci,
    spearman,
)
from dreamgym.preprocessing import preprocessing_for
from dreamgym.world import World

STEPS = 8
"""Real and dream episodes of the end-to-end tests are capped at this many steps."""
FIXED = ["constant:0", "constant:1", "alternate:1,2@2"]


@pytest.fixture(scope="module")
def doom_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny TakeCover world that reads the real env's "screen" (saved; do not modify)."""
    world = build_tiny_world(discrete=True, name="tiny-doom")
    world.config["preprocessing"] = preprocessing_for("VizdoomTakeCover-v1", None).to_dict()
    return world.save(tmp_path_factory.mktemp("worlds") / "doom")


def _controller(world_dir: Path, out: Path, seed: int = 0) -> Path:
    world = World.load(world_dir)
    ctrl = LinearController(world)
    ctrl.set_params(np.random.default_rng(seed).normal(0.0, 0.5, ctrl.n_params))
    return ctrl.save(out, world=world)


# --- statistics ----------------------------------------------------------------------------------
def test_average_ranks_share_ties() -> None:
    assert average_ranks([10.0, 20.0, 20.0, 5.0]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert average_ranks([3.0, 3.0, 3.0]).tolist() == [2.0, 2.0, 2.0]
    assert average_ranks([]).tolist() == []


def test_spearman_and_pearson_hand_numbers() -> None:
    # Ties: ranks x = (1, 2.5, 2.5, 4), y = (1, 3, 2, 4): Σdxdy = 4.5, Σdx² = 4.5, Σdy² = 5.
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    # Monotone but not linear: ρ = 1, r = 290 / √(2 · 54200).
    assert spearman([1, 2, 3], [10, 20, 300]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [10, 20, 300]) == pytest.approx(290 / math.sqrt(2 * 54200))
    assert spearman([1, 2, 3, 4], [9, 7, 5, 1]) == pytest.approx(-1.0)
    # Undefined: a constant side, or fewer than two points.
    assert pearson([1, 2, 3], [5, 5, 5]) is None and spearman([4, 4], [1, 2]) is None
    assert pearson([1], [2]) is None
    with pytest.raises(ValueError, match="one size"):
        spearman([1, 2], [1, 2, 3])


def test_fit_and_its_leave_one_out_error_hand_numbers() -> None:
    fit = fit_dream_to_real([0.0, 1.0, 2.0], [0.0, 1.0, 3.0])
    assert fit is not None
    assert fit["slope"] == pytest.approx(1.5) and fit["intercept"] == pytest.approx(-1 / 6)
    # Left out in turn: lines (2, −1), (1.5, 0), (1, 0) predict −1, 1.5, 2 for 0, 1, 3.
    assert fit["loo_rmse"] == pytest.approx(math.sqrt((1 + 0.25 + 1) / 3))
    assert fit["rmse"] == pytest.approx(math.sqrt(1 / 18)) and fit["n"] == 3
    assert predict_real(4.0, fit) == pytest.approx(6 - 1 / 6)
    assert predict_real(np.array([0.0, 2.0]), fit).tolist() == pytest.approx([-1 / 6, 17 / 6])
    # A fit read back from JSON predicts the same.
    assert predict_real(4.0, json.loads(json.dumps(fit))) == predict_real(4.0, fit)
    assert fit_dream_to_real([1.0, 2.0], [1.0, 2.0]) is None  # two points: no honest error
    assert fit_dream_to_real([5.0, 5.0, 5.0], [1.0, 2.0, 3.0]) is None  # no slope
    # Two of four dream scores equal: leaving out a third leaves a line; all LOO fits defined.
    assert fit_dream_to_real([1.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0])["loo_rmse"] is not None


def test_ratio_ci_and_agreement() -> None:
    assert ratio_ci(np.full(4, 6.0), np.full(3, 3.0), seed=0, resamples=50) == [2.0, 2.0]
    assert ratio_ci(np.ones(3), np.zeros(3), seed=0, resamples=50) is None
    rng = np.random.default_rng(0)
    dream = [rng.normal(m, 1.0, 16) for m in (1.0, 5.0, 9.0, 13.0)]
    real = [rng.normal(m, 1.0, 8) for m in (2.0, 4.0, 10.0, 11.0)]
    a = agreement(dream, real, seed=1, resamples=200)
    means_d, means_r = [d.mean() for d in dream], [r.mean() for r in real]
    assert a["n"] == 4 and a["spearman"] == spearman(means_d, means_r) == pytest.approx(1.0)
    assert a["pearson"] == pytest.approx(pearson(means_d, means_r))
    lo, hi = a["pearson_ci95"]
    assert -1 <= lo <= a["pearson"] <= hi <= 1
    assert agreement(dream, real, seed=1, resamples=0)["spearman_ci95"] is None
    none = agreement(dream[:1], real[:1], seed=1, resamples=20)
    assert none["spearman"] is None and none["pearson_ci95"] is None


def test_verdict_reads_the_ratio_by_the_sign_of_the_real_mean() -> None:
    from dreamgym.evaluation.rank import _verdict

    assert _verdict([1.2, 1.5], 0.05, real_mean=100.0) == "dream high"
    assert _verdict([0.5, 0.8], 0.05, real_mean=100.0) == "dream low"
    assert _verdict([0.97, 1.04], 0.05, real_mean=100.0) == "ok"  # excludes nothing beyond 5%
    # Real −35, dream −10: the ratio is 0.28, yet the dream pays more.
    assert _verdict([0.1, 0.6], 0.05, real_mean=-35.0) == "dream high"
    assert _verdict([1.2, 1.5], 0.05, real_mean=-35.0) == "dream low"
    assert _verdict(None, 0.05, real_mean=0.0) == "n/a"


def test_doctest_examples_run() -> None:
    result = doctest.testmod(correlation_module)
    assert result.attempted >= 2 and result.failed == 0


# --- the panel -------------------------------------------------------------------------------------
def test_policies_in_a_folder(tmp_path: Path) -> None:
    (tmp_path / "b-ctrl").mkdir()
    (tmp_path / "b-ctrl" / "controller.safetensors").write_bytes(b"")
    (tmp_path / "b-ctrl" / "real_eval").mkdir()  # inside a controller: not searched
    (tmp_path / "b-ctrl" / "real_eval" / "x.zip").write_bytes(b"")
    (tmp_path / "a.zip").write_bytes(b"")
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "a.partial.zip").write_bytes(b"")  # an SB3 checkpoint
    (tmp_path / "deep" / "c").mkdir(parents=True)
    (tmp_path / "deep" / "c" / "k.safetensors").write_bytes(b"")
    (tmp_path / "deep" / "c" / "k.json").write_text("{}")
    (tmp_path / "deep" / "vae.safetensors").write_bytes(b"")  # no sidecar: not a controller
    (tmp_path / ".hidden.zip").write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in policies_in(tmp_path)]
    assert found == ["a.zip", "b-ctrl", "deep/c/k.safetensors"]


def test_build_panel_kinds_labels_and_clear_errors(
    tmp_path: Path, discrete_world_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = World.load(discrete_world_dir)
    folder = tmp_path / "panel"
    for s in (1, 0):
        _controller(discrete_world_dir, folder / f"cma-s{s}", seed=s)
    panel = build_panel(world, ["random", str(folder)], [str(folder)], True, 10, seed=0)
    assert [(e.label, e.kind) for e in panel] == [
        ("random", "fixed"),
        ("cma-s0", "controller"),
        ("cma-s1", "controller"),
        ("constant noop", "fixed"),
        ("constant left", "fixed"),
        ("constant right", "fixed"),
        ("left/right every 10", "fixed"),
    ]  # the folder twice and random twice: each policy once
    assert [e.trained for e in panel] == [False, True, True, False, False, False, False]
    assert panel[1].sha256 is not None and panel[1].sha256 != panel[2].sha256
    assert panel[0].sha256 is None

    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["rank", "--world", str(discrete_world_dir), "--out", str(tmp_path / "r")]
    for extra, message in [
        (["--policies", "constant:0", "nothing-here"], "policy 'nothing-here' is not 'random'"),
        (["--policies", "constant:0", "--panel-dir", str(empty)], f"folder {empty} holds no"),
        (["--policies", "constant:0", str(empty)], f"folder {empty} holds no policy"),
        (["--policies", "constant:7", "random"], "is not an action of Discrete(3)"),
        (["--policies", "constant:0"], "a panel ranks at least 2 policies, got 1"),
        ([], "no panel: pass --policies"),
    ]:
        assert cli_main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err  # one line: the problem and the fix


# --- the job ---------------------------------------------------------------------------------------
def test_rank_cli_end_to_end_with_real_episodes(
    tmp_path: Path, doom_world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rank"
    argv = ["rank", "--world", str(doom_world), "--policies", *FIXED, "--episodes", "2"]
    argv += ["--dream-episodes", "3", "--max-steps", str(STEPS), "--workers", "1"]
    argv += ["--resamples", "200", "--correlation-resamples", "50", "--out", str(out)]
    assert cli_main([*argv, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "rank.json").read_text())
    assert report["files"] == ["rank.json", "rank.csv", "rank.png"]
    assert (out / "rank.png").stat().st_size > 0
    keys = {"world", "env_id", "world_sha256", "episodes", "dream_episodes", "seed"}
    keys |= {"temperature", "termination", "policies", "agreement", "fit", "fit_trained"}
    keys |= {"warnings", "ratio_tolerance", "real_reused", "out", "seconds"}
    assert keys <= set(report)
    assert [r["spec"] for r in report["policies"]] == FIXED
    for row in report["policies"]:
        assert row["kind"] == "fixed" and not row["trained"] and not row["real_reused"]
        assert len(row["dream"]["returns"]) == 3 and len(row["real"]["returns"]) == 2
        assert row["ratio"] == pytest.approx(row["dream"]["mean"] / row["real"]["mean"])
        assert row["verdict"] in ("ok", "dream high", "dream low")
        assert f"| {row['label']} | fixed |" in printed
    # Same seeds as `dreamgym evaluate --dream`.
    dream = evaluate_dream(doom_world, "constant:1", episodes=3, seed=0, max_steps=STEPS)
    assert report["policies"][1]["dream"]["returns"] == dream.tolist()
    # Nobody dies in 8 real steps: every real mean is 8, so ρ and r are undefined (said so).
    assert report["agreement"]["all"]["spearman"] is None and "undefined" in printed
    assert report["agreement"]["trained"]["n"] == 0 and report["fit_trained"] is None
    assert set(report["fit"]) == {"slope", "intercept", "loo_rmse", "rmse", "n"}
    assert report["fit"]["slope"] == pytest.approx(0.0, abs=1e-9)
    rows = list(csv.DictReader((out / "rank.csv").open()))
    assert [r["spec"] for r in rows] == FIXED and float(rows[0]["real_mean"]) == STEPS
    assert float(rows[0]["predicted_real"]) == pytest.approx(STEPS)

    assert cli_main([*argv, "--no-progress", "--json", "--no-figures"]) == 0
    printed_json = json.loads(capsys.readouterr().out)
    assert printed_json["policies"][0]["real"] == report["policies"][0]["real"]
    assert printed_json["files"] == ["rank.json", "rank.csv"]


def _known_real(monkeypatch: pytest.MonkeyPatch, played: list[str]) -> None:
    """Replace real episodes with returns that depend on the spec only (and count them)."""
    values = {"constant:0": 10.0, "constant:1": 30.0, "constant:2": 20.0}

    def fake(world: object, spec: str, episodes: int, seed: int, **kwargs: object) -> np.ndarray:
        played.append(spec)
        base = values.get(spec, 40.0 + len(spec) % 7)
        return base + np.arange(episodes, dtype=np.float64) + seed

    monkeypatch.setattr("dreamgym.evaluation.jobs.evaluate_real", fake)


def test_agreement_fit_and_warnings_follow_the_returns(
    tmp_path: Path, discrete_world_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    played: list[str] = []
    _known_real(monkeypatch, played)
    ctrl = _controller(discrete_world_dir, tmp_path / "ctrl")
    config = RankConfig(
        world=str(discrete_world_dir),
        policies=["constant:0", "constant:1", "constant:2", str(ctrl)],
        episodes=3,
        dream_episodes=4,
        max_steps=STEPS,
        resamples=100,
        correlation_resamples=30,
        out=str(tmp_path / "r"),
        figures=False,
        progress=False,
    )
    report = rank(config)
    rows = report["policies"]
    dream = [r["dream"]["mean"] for r in rows]
    real = [r["real"]["mean"] for r in rows]
    assert real[:3] == [11.0, 31.0, 21.0]
    a = report["agreement"]["all"]
    assert a["n"] == 4 and a["spearman"] == spearman(dream, real)
    assert a["pearson"] == pytest.approx(pearson(dream, real))
    assert report["agreement"]["trained"]["n"] == 1
    assert report["agreement"]["trained"]["spearman"] is None
    assert report["fit"] == pytest.approx(fit_dream_to_real(dream, real))
    assert [r["kind"] for r in rows] == ["fixed"] * 3 + ["controller"]
    # A tiny untrained world pays ~0 a step: the dream undersells every policy, and says so.
    assert all(r["verdict"] == "dream low" for r in rows)
    assert len(report["warnings"]) == 4 and "undersells" in report["warnings"][0]


@pytest.mark.filterwarnings("ignore:controller was trained in world")  # the other world, on purpose
def test_real_from_reuses_what_cannot_have_changed(
    tmp_path: Path, discrete_world_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    played: list[str] = []
    _known_real(monkeypatch, played)
    ctrl = _controller(discrete_world_dir, tmp_path / "ctrl")
    base = ["rank", "--world", str(discrete_world_dir), "--policies", "constant:0", "random"]
    base += [str(ctrl), "--episodes", "2", "--dream-episodes", "2", "--max-steps", str(STEPS)]
    base += ["--resamples", "50", "--correlation-resamples", "0", "--no-figures", "--no-progress"]
    first = tmp_path / "first"
    assert cli_main([*base, "--out", str(first)]) == 0
    assert played == ["constant:0", "random", str(ctrl)]

    # Another temperature, same V and M: nothing is played again.
    played.clear()
    second = tmp_path / "second"
    again = [*base, "--out", str(second), "--real-from", str(first), "--temperature", "1.5"]
    assert cli_main(again) == 0
    report = json.loads((second / "rank.json").read_text())
    assert played == [] and all(r["real_reused"] for r in report["policies"])
    assert report["real_reused"]["specs"] == sorted(["constant:0", "random", str(ctrl)])

    # Another world (other weights): the controller reads other z and h, so it is played.
    other = build_tiny_world(discrete=True, seed=7).save(tmp_path / "other")
    argv = [*base, "--out", str(tmp_path / "third"), "--real-from", str(first / "rank.json")]
    argv[2] = str(other)
    assert cli_main(argv) == 0 and played == [str(ctrl)]

    # A retrained controller (same path, other files) is played too.
    played.clear()
    _controller(discrete_world_dir, ctrl, seed=5)
    assert cli_main([*base, "--out", str(tmp_path / "fourth"), "--real-from", str(first)]) == 0
    assert played == [str(ctrl)]

    # Other episodes (here another seed) are refused, naming both.
    with pytest.raises(ValueError, match=r"seed 0 \(here 3\)"):
        rank(
            RankConfig(
                world=str(discrete_world_dir),
                policies=["constant:0", "random"],
                seed=3,
                episodes=2,
                max_steps=STEPS,
                real_from=str(first),
            )
        )
    with pytest.raises(FileNotFoundError, match="no rank.json there"):
        rank(RankConfig(world=str(discrete_world_dir), fixed=True, real_from=str(tmp_path)))
