"""dreamgym.data: collecting real rollouts, resuming after crashes, reading shards back."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from dreamgym.data import (
    MANIFEST_NAME,
    CollectConfig,
    CorruptShardError,
    CoveragePolicy,
    DatasetMismatchError,
    ExplorationPolicy,
    collect,
    collect_from_config,
    iter_episodes,
    load_episode,
    load_manifest,
    scan_dataset,
    select_episodes,
)
from dreamgym.data.collect import LOCK_NAME
from dreamgym.data.manifest import write_manifest
from dreamgym.data.rollout import policy_seed
from dreamgym.utils.locks import file_lock

CAR = "CarRacing-v3"
DOOM = "VizdoomTakeCover-v1"


def _check_dataset(data: Path, env_id: str, n: int, steps: int) -> dict:
    manifest = load_manifest(data)
    assert manifest["schema_version"] == 1
    assert manifest["env_id"] == env_id
    assert manifest["frame_shape"] == [64, 64, 3]
    assert [e["index"] for e in manifest["episodes"]] == list(range(n))
    assert [e["seed"] for e in manifest["episodes"]] == list(range(n))
    discrete = manifest["action_space"]["type"] == "Discrete"
    for entry, ep in iter_episodes(data):
        assert entry["steps"] == steps
        assert ep["frames"].shape == (steps + 1, 64, 64, 3) and ep["frames"].dtype == np.uint8
        if discrete:
            assert ep["actions"].shape == (steps,) and ep["actions"].dtype == np.int64
        else:
            assert ep["actions"].shape == (steps, 3) and ep["actions"].dtype == np.float32
        assert ep["rewards"].shape == (steps,) and ep["rewards"].dtype == np.float32
        assert ep["terminated"].dtype == bool and ep["truncated"].dtype == bool
        assert ep["truncated"][-1] and not ep["truncated"][:-1].any()
        assert entry["return"] == pytest.approx(float(ep["rewards"].sum()), rel=1e-5)
        assert int(ep["seed"]) == entry["seed"]
        assert ep["frames"].std() > 0  # real images, not blanks
    assert not list(data.glob("*.tmp"))
    return manifest


@pytest.fixture(scope="module")
def doom_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("doom")
    collect(DOOM, 2, data, workers=1, max_steps=20, progress=False)
    return data


@pytest.fixture
def doom_copy(doom_data: Path, tmp_path: Path) -> Path:
    data = tmp_path / "doom"
    shutil.copytree(doom_data, data)
    return data


def test_collect_carracing(tmp_path: Path) -> None:
    result = collect(CAR, 2, tmp_path / "car", workers=1, max_steps=30, progress=False)
    assert (result.episodes, result.steps, result.frames, result.total_episodes) == (2, 60, 62, 2)
    manifest = _check_dataset(tmp_path / "car", CAR, 2, 30)
    assert manifest["preprocessing"]["crop"] == [0, 84, 0, 96]
    assert manifest["policy"] == "random-correlated" and manifest["max_steps"] == 30


def test_collect_doom_workers_match_in_process(doom_data: Path, tmp_path: Path) -> None:
    """Two worker processes give exactly the episodes one process gives (same seed)."""
    _check_dataset(doom_data, DOOM, 2, 20)
    result = collect(DOOM, 2, tmp_path / "w2", workers=2, max_steps=20, progress=False)
    assert result.episodes == 2
    _check_dataset(tmp_path / "w2", DOOM, 2, 20)
    for (ea, a), (eb, b) in zip(
        iter_episodes(doom_data), iter_episodes(tmp_path / "w2"), strict=True
    ):
        assert ea["sha256"] == eb["sha256"]  # shards are byte-identical
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    other = collect(DOOM, 1, tmp_path / "s7", workers=1, max_steps=20, seed=7, progress=False)
    assert other.total_episodes == 1
    ep7 = load_episode(tmp_path / "s7", load_manifest(tmp_path / "s7")["episodes"][0])
    assert int(ep7["seed"]) == 7


def test_resume_adopts_unlisted_shard_and_removes_temp_files(doom_copy: Path) -> None:
    collect(DOOM, 3, doom_copy, workers=1, max_steps=20, progress=False)
    manifest_path = doom_copy / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    lost = manifest["episodes"].pop()  # crash between the shard's rename and the manifest write
    manifest_path.write_text(json.dumps(manifest))
    (doom_copy / "episode_000003.npz.tmp").write_bytes(b"half a shard")  # kill -9 mid-write
    (doom_copy / "manifest.json.tmp").write_text("{")
    (doom_copy / ".episode_000003.npz.k2x_9abc.tmp").write_bytes(b"half")  # atomic_write_bytes'
    (doom_copy / ".manifest.json.u7wq1e0z.tmp").write_text("{")
    (doom_copy / "notes.tmp").write_text("not ours")  # not a dataset file: left alone

    result = collect(DOOM, 4, doom_copy, workers=1, max_steps=20, progress=False)

    assert result.episodes == 1 and result.total_episodes == 4  # only episode 3 was computed
    assert [p.name for p in doom_copy.glob("*.tmp")] == ["notes.tmp"]
    (doom_copy / "notes.tmp").unlink()
    after = _check_dataset(doom_copy, DOOM, 4, 20)
    assert after["episodes"][2] == lost
    assert sorted(p.name for p in doom_copy.glob("episode_*")) == [
        f"episode_{i:06d}.npz" for i in range(4)
    ]
    again = collect(DOOM, 4, doom_copy, workers=1, max_steps=20, progress=False)
    assert again.episodes == 0 and load_manifest(doom_copy) == after


def test_kill_9_mid_collection_then_resume(tmp_path: Path) -> None:
    data = tmp_path / "car"
    code = (
        "from dreamgym.data import collect; "
        f"collect({CAR!r}, 6, {str(data)!r}, workers=2, max_steps=40, progress=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (data / MANIFEST_NAME).exists() and load_manifest(data)["episodes"]:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the collection ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)  # the parent only: its workers must notice and stop
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    before = len(load_manifest(data)["episodes"])
    assert 1 <= before < 6

    collect(CAR, 6, data, workers=1, max_steps=40, progress=False)

    _check_dataset(data, CAR, 6, 40)
    assert scan_dataset(data).ok and not scan_dataset(data).unlisted


def test_busy_folder_is_a_one_line_cli_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A second `dreamgym collect` into a folder another one is writing to: exit 2, what to do."""
    from dreamgym.cli import main

    data = tmp_path / "busy"
    with file_lock(data / LOCK_NAME, "held by the test"):
        code = main(["collect", "--env", DOOM, "--episodes", "1", "--out", str(data)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (
        f"dreamgym collect: error: another dreamgym collect is writing to {data}; "
        "wait for it or choose another --out"
    )
    assert not (data / MANIFEST_NAME).exists()


def test_truncated_and_foreign_shards_are_reported(doom_copy: Path) -> None:
    manifest = load_manifest(doom_copy)
    first, second = manifest["episodes"]
    path0, path1 = doom_copy / first["file"], doom_copy / second["file"]
    path0.write_bytes(path0.read_bytes()[: path0.stat().st_size // 2])
    np.savez(path1, x=np.zeros(3))
    for verify in (True, False):
        for entry, path in ((first, path0), (second, path1)):
            with pytest.raises(CorruptShardError, match=path.name) as err:
                load_episode(doom_copy, entry, verify=verify)
            assert "re-run dreamgym collect" in str(err.value)
    report = scan_dataset(doom_copy)
    assert not report.ok and len(report.problems) == 2
    with pytest.raises(CorruptShardError, match="2 bad shard"):
        report.raise_if_problems()
    # collect refuses to build on a corrupt shard, and deletes nothing
    with pytest.raises(CorruptShardError, match=first["file"]):
        collect(DOOM, 3, doom_copy, workers=1, max_steps=20, progress=False)
    assert path0.exists() and path1.exists() and len(load_manifest(doom_copy)["episodes"]) == 2


def test_mismatched_dataset_is_refused_untouched(doom_copy: Path) -> None:
    def snapshot() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in doom_copy.iterdir()}

    before = snapshot()
    with pytest.raises(DatasetMismatchError, match="--env") as err:
        collect(CAR, 3, doom_copy, workers=1, max_steps=20, progress=False)
    assert str(doom_copy) in str(err.value)
    with pytest.raises(DatasetMismatchError, match="--seed"):
        collect(DOOM, 3, doom_copy, workers=1, max_steps=20, seed=5, progress=False)
    assert snapshot() == before


def test_select_episodes_links_a_verified_subset_by_return(doom_copy: Path, tmp_path: Path) -> None:
    manifest = load_manifest(doom_copy)
    manifest["episodes"][0]["return"] = -5.0  # a "failure"; the shard itself is unchanged
    write_manifest(doom_copy, manifest)
    fail = select_episodes(doom_copy, tmp_path / "fail", max_return=0.0)
    assert (fail.episodes, fail.of, fail.mean_return) == (1, 2, -5.0)
    assert fail.steps == manifest["episodes"][0]["steps"]
    sub = load_manifest(tmp_path / "fail")
    assert sub["episodes"] == manifest["episodes"][:1] and sub["env_id"] == DOOM
    assert "return in" in sub["policy"] and scan_dataset(tmp_path / "fail").ok
    assert sorted(p.name for p in (tmp_path / "fail").iterdir()) == sorted(
        [MANIFEST_NAME, manifest["episodes"][0]["file"]]
    )
    ((entry, ep),) = iter_episodes(tmp_path / "fail")
    assert int(ep["seed"]) == entry["seed"] == manifest["episodes"][0]["seed"]
    rest = select_episodes(doom_copy, tmp_path / "rest", min_return=0.0)
    assert rest.episodes == 1 and load_manifest(tmp_path / "rest")["episodes"][0]["index"] == 1
    with pytest.raises(FileExistsError, match="pick a new directory"):
        select_episodes(doom_copy, tmp_path / "fail", max_return=0.0)
    with pytest.raises(ValueError, match="widen the range"):
        select_episodes(doom_copy, tmp_path / "none", max_return=-10.0)
    with pytest.raises(ValueError, match="must be below"):
        select_episodes(doom_copy, tmp_path / "bad", min_return=1.0, max_return=0.0)
    assert not (tmp_path / "none").exists() and not (tmp_path / "bad").exists()


def test_select_command_writes_the_subset_and_refuses_an_existing_out(
    doom_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dreamgym.cli import main

    out = tmp_path / "low"
    assert main(["select", "--data", str(doom_copy), "--out", str(out), "--max-return", "1e9"]) == 0
    assert "2 of 2 episodes" in capsys.readouterr().out and scan_dataset(out).ok
    assert main(["select", "--data", str(doom_copy), "--out", str(out)]) == 2
    assert "pick a new directory" in capsys.readouterr().err


def test_env_without_images_fails_before_collecting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="image"):
        collect("CartPole-v1", 1, tmp_path / "cp", workers=2, progress=False)
    assert not (tmp_path / "cp").exists()


def test_folder_without_manifest_is_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run dreamgym collect first"):
        load_manifest(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a dreamgym dataset"):
        scan_dataset(tmp_path)


def test_random_policy_is_correlated_and_in_bounds() -> None:
    space = gym.spaces.Box(np.array([-1, 0, 0], np.float32), np.array([1, 1, 1], np.float32))
    pol = ExplorationPolicy(CAR, space)
    frame = np.zeros((64, 64, 3), np.uint8)
    pol.reset(3)
    a = np.stack([pol.act(frame) for _ in range(2000)])
    assert a.dtype == np.float32 and all(space.contains(x) for x in a)
    steer = a[:, 0]
    assert np.corrcoef(steer[:-1], steer[1:])[0, 1] > 0.8  # i.i.d. would be ≈ 0
    assert steer.std() > 0.2 and (a[:, 1] > 0).mean() > 0.8 and (a[:, 2] > 0).mean() < 0.2
    pol.reset(3)
    np.testing.assert_array_equal(np.stack([pol.act(frame) for _ in range(2000)]), a)

    disc = ExplorationPolicy(DOOM, gym.spaces.Discrete(3))
    disc.reset(0)
    acts = np.array([disc.act(frame) for _ in range(3000)])
    assert set(acts.tolist()) == {0, 1, 2} and (acts[1:] == acts[:-1]).mean() > 0.6


def _longest_run(mask: np.ndarray) -> int:
    best = run = 0
    for m in mask:
        run = run + 1 if m else 0
        best = max(best, run)
    return best


def test_coverage_policy_stops_leaves_the_road_and_rushes() -> None:
    space = gym.spaces.Box(np.array([-1, 0, 0], np.float32), np.array([1, 1, 1], np.float32))
    pol = CoveragePolicy(CAR, space)
    frame = np.zeros((64, 64, 3), np.uint8)
    pol.reset(1)
    a = np.stack([pol.act(frame) for _ in range(6000)])
    assert a.dtype == np.float32 and all(space.contains(x) for x in a)
    assert _longest_run((a[:, 1] == 0) & (a[:, 2] == 0)) >= 30  # a stop: standing still
    steer_held = np.r_[False, (a[1:, 0] == a[:-1, 0]) & (np.abs(a[1:, 0]) >= 0.4)]
    assert _longest_run(steer_held) >= 15  # an excursion off the road
    assert _longest_run(a[:, 1] >= 0.6) >= 20  # heavy gas (the random policy's gas is ≤ 0.5)
    pol.reset(1)
    np.testing.assert_array_equal(np.stack([pol.act(frame) for _ in range(6000)]), a)
    # elsewhere it is the random policy, action for action
    cov, rnd = (
        CoveragePolicy(DOOM, gym.spaces.Discrete(3)),
        ExplorationPolicy(DOOM, gym.spaces.Discrete(3)),
    )
    cov.reset(4)
    rnd.reset(4)
    assert [cov.act(frame) for _ in range(500)] == [rnd.act(frame) for _ in range(500)]


def test_collect_coverage_records_its_name(tmp_path: Path) -> None:
    out = tmp_path / "cov"
    collect(DOOM, 1, out, workers=1, max_steps=5, policy="coverage", progress=False)
    assert load_manifest(out)["policy"] == "random-coverage"
    collect(DOOM, 2, out, workers=1, max_steps=5, policy="coverage", progress=False)  # resumes
    assert len(list(iter_episodes(out))) == 2
    with pytest.raises(DatasetMismatchError, match="--policy"):
        collect(DOOM, 2, out, workers=1, max_steps=5, policy="random", progress=False)
    with pytest.raises(ValueError, match="coverage"):
        collect(DOOM, 1, tmp_path / "x", workers=1, policy="bogus", progress=False)


class _AlwaysLeft:
    """A FramePolicy: the hook a trained controller plugs into."""

    def reset(self, seed: int) -> None:
        self.frames = 0

    def act(self, frame: np.ndarray) -> int:
        assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
        self.frames += 1
        return 1


def _always_left(env_id: str, action_space: gym.Space) -> _AlwaysLeft:
    return _AlwaysLeft()


def test_policy_factory_hook_and_config(tmp_path: Path) -> None:
    collect(DOOM, 1, tmp_path / "left", workers=1, max_steps=5, policy=_always_left, progress=False)
    (entry, ep), *_ = iter_episodes(tmp_path / "left")
    assert ep["actions"].tolist() == [1] * 5
    with pytest.raises(
        ValueError, match=r"neither a built-in policy \(random, coverage\) nor an existing file"
    ):
        collect(DOOM, 1, tmp_path / "x", policy=str(tmp_path / "nope"), progress=False)
    result = collect_from_config(
        CollectConfig(env=DOOM, episodes=1, out=str(tmp_path / "cfg"), workers=1, max_steps=5)
    )
    assert result.total_episodes == 1 and load_manifest(tmp_path / "cfg")["max_steps"] == 5


def test_collect_with_a_controller_file_tracks_z_and_h(tmp_path: Path) -> None:
    """`--policy FILE`: each frame is encoded by V, h follows M — replaying the frames agrees."""
    from conftest import build_tiny_world

    from dreamgym.controllers import ControllerPolicy, LinearController
    from dreamgym.wrappers import LatentTracker

    world = build_tiny_world(discrete=False)
    world.save(tmp_path / "world")
    ctrl = LinearController(world)
    ctrl.set_params(np.random.default_rng(0).normal(0, 1.0, ctrl.n_params).astype(np.float32))
    ctrl.save(tmp_path / "ctrl", world=world)
    collect_from_config(
        CollectConfig(
            env="CarRacing-v3",
            episodes=1,
            out=str(tmp_path / "data"),
            workers=1,
            max_steps=8,
            policy=str(tmp_path / "ctrl"),
            world=str(tmp_path / "world"),
            progress=False,
        )
    )
    manifest = load_manifest(tmp_path / "data")
    assert "ctrl" in manifest["policy"]
    (entry, ep), *_ = iter_episodes(tmp_path / "data")
    tracker, policy = LatentTracker(world), ControllerPolicy(ctrl)
    tracker.reset(policy_seed(0, entry["index"]))  # the frame policy's z samples are seeded so
    for frame, action in zip(ep["frames"][:-1], ep["actions"], strict=True):
        tracker.see(frame)
        expected = policy.act(tracker.observation("zh")[None])[0]
        np.testing.assert_allclose(action, expected, atol=1e-5)
        tracker.advance(tracker.encode_action(expected))


# --- worker errors and Ray, without Ray --------------------------------------------------------
def test_worker_that_cannot_make_the_env_raises_its_own_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import dreamgym_test_envs as envs

    from dreamgym.cli import main
    from dreamgym.runners import WorkerSetupError

    os.environ[envs.DRIVER_PID_VAR] = str(os.getpid())  # this process can make it, workers not
    env_id = "dreamgym_test_envs:DriverOnly-v0"
    with pytest.raises(WorkerSetupError, match="collect worker process dreamgym-collect-") as e:
        collect(env_id, 2, tmp_path / "d", workers=2, progress=False)
    assert envs.MISSING_MESSAGE in str(e.value) and "Traceback" not in str(e.value)
    args = ["collect", "--env", env_id, "--episodes", "2", "--out", str(tmp_path / "c")]
    assert main([*args, "--workers", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and envs.MISSING_MESSAGE in err[0], err


def test_base_install_never_imports_ray(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
        "import dreamgym, dreamgym.data, dreamgym.evaluation, dreamgym.cli\n"
        "dreamgym.cli.build_parser()\n"
        f"dreamgym.data.collect('{DOOM}', 1, {str(tmp_path / 'd')!r}, workers=1, max_steps=3,"
        " progress=False)\n"
        "from dreamgym.runners import RayNotInstalledError\n"
        "try:\n"
        f"    dreamgym.data.collect('{DOOM}', 2, {str(tmp_path / 'd')!r}, ray_address='local',"
        " max_steps=3, progress=False)\n"
        "except RayNotInstalledError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'pip install "dreamgym[ray]"' in out.stdout
    with pytest.raises(ValueError, match="not a Ray address"):
        collect(DOOM, 1, tmp_path / "x", ray_address="no address", progress=False)


def test_doom_work_folder_exists_before_the_game_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ViZDoom makes ./_vizdoom/ on its first start. Worker processes racing on that mkdir died
    ("Failed to create ./_vizdoom/ directory: File exists", then a segfault: `dreamgym demo` on
    a fresh clone). make_real_env makes the folder, race-free, before gym.make starts a game."""
    from dreamgym.envs import real

    monkeypatch.chdir(tmp_path)
    seen = []
    make = real.gym.make

    def spy(env_id: str, **kwargs: object) -> gym.Env:
        seen.append((Path("_vizdoom").is_dir(), env_id))
        return make(env_id, **kwargs)

    monkeypatch.setattr(real.gym, "make", spy)
    real.make_real_env("VizdoomTakeCover-v1").close()
    real.make_real_env("VizdoomTakeCover-v1").close()  # and again, with the folder there
    real.make_real_env("CarRacing-v3").close()
    assert seen == [
        (True, "VizdoomTakeCover-v1"),
        (True, "VizdoomTakeCover-v1"),
        (True, "CarRacing-v3"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_vizdoom"]
