"""`--ray`: episodes as Ray tasks on one local Ray (2 CPUs, loopback only) shared by the module.

Skipped when Ray is not installed (pip install "dreamgym[ray]"). Ray is kept on 127.0.0.1:
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 and RAY_AUTH_MODE=disabled are set before it starts, and
a test checks that no Ray process listens on or connects to another address.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Before Ray is imported: it reads these once, and with them keeps every service on 127.0.0.1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

ray = pytest.importorskip("ray", reason='Ray is not installed: pip install "dreamgym[ray]"')
psutil = pytest.importorskip("psutil", reason="psutil (a dependency of ray[default]) is missing")

import dreamgym_test_envs as envs  # noqa: E402
import numpy as np  # noqa: E402

from dreamgym.cli import main  # noqa: E402
from dreamgym.data import collect, load_manifest  # noqa: E402
from dreamgym.evaluation import evaluate_real  # noqa: E402
from dreamgym.runners import WorkerSetupError  # noqa: E402

DOOM = "VizdoomTakeCover-v1"
SLOW = "dreamgym_test_envs:SlowImage-v0"
LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1", "::1")
TESTS = str(Path(__file__).parent)


@pytest.fixture(scope="module")
def ray_local() -> Iterator[str]:
    """One local Ray for the module, on loopback; yields its address (HOST:PORT)."""
    if ray.is_initialized():
        pytest.skip("this process already runs a Ray instance")
    if ray._private.ray_constants.ENABLE_RAY_CLUSTER:
        pytest.skip("Ray was imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 could be set")
    os.environ[envs.DRIVER_PID_VAR] = str(os.getpid())
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH",)}
    # workers import dreamgym_test_envs (module-prefixed ids) and this checkout of dreamgym
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [TESTS, str(Path(TESTS).parent), os.environ.get("PYTHONPATH", "")]
    )
    ray.init(
        address="local",
        _node_ip_address="127.0.0.1",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _shas(data: Path) -> dict[int, str]:
    entries = load_manifest(data)["episodes"]
    indices = [e["index"] for e in entries]
    assert len(indices) == len(set(indices)), f"an episode is listed twice: {indices}"
    return {e["index"]: e["sha256"] for e in entries}


def _ray_processes() -> list[Any]:
    """This test's Ray processes: gcs_server, raylet, workers, agents (children of this one).

    Children that exit or linger as zombies meanwhile (an env's process left by another test)
    are skipped, not an error of the thread that looks for workers.
    """
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            name = p.name()
            if "ray" in name.lower() or "gcs_server" in name or "ray::" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_ray_stays_on_loopback(ray_local: str) -> None:
    assert ray_local.startswith("127.0.0.1:")
    procs = _ray_processes()
    assert any("raylet" in p.name() for p in procs)
    pids = {p.pid for p in procs} | {os.getpid()}
    conns = [c for c in psutil.net_connections(kind="inet") if c.pid in pids]
    listening = [c for c in conns if c.status == psutil.CONN_LISTEN]
    assert listening, "Ray listens on no port?"
    off = [c for c in listening if c.laddr.ip not in LOOPBACK]
    off += [c for c in conns if c.raddr and c.raddr.ip not in LOOPBACK]
    assert not off, f"Ray uses non-loopback addresses: {off}"


def test_ray_collects_the_same_episodes_as_the_process_pool(ray_local: str, tmp_path: Path) -> None:
    pool = collect(DOOM, 4, tmp_path / "pool", workers=2, max_steps=30, progress=False)
    on_ray = collect(DOOM, 4, tmp_path / "ray", max_steps=30, progress=False, ray_address=ray_local)
    assert pool.episodes == on_ray.episodes == 4
    assert _shas(tmp_path / "pool") == _shas(tmp_path / "ray")
    ray_manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert {k: v for k, v in ray_manifest.items() if k != "episodes"} == {
        k: v for k, v in load_manifest(tmp_path / "pool").items() if k != "episodes"
    }


def _kill_first_busy_worker(killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first Ray worker seen running an episode task (mid-episode)."""
    while not stop.is_set() and not killed:
        for p in _ray_processes():
            try:
                if "_episode_task" in " ".join(p.cmdline()):
                    time.sleep(0.3)  # well inside its ~1 s episode
                    os.kill(p.pid, signal.SIGKILL)
                    killed.append(p.pid)
                    return
            except (psutil.Error, ProcessLookupError):
                continue
        time.sleep(0.05)


def test_killed_worker_has_its_episode_retried_once(ray_local: str, tmp_path: Path) -> None:
    reference = collect(SLOW, 4, tmp_path / "ref", workers=1, progress=False)
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_busy_worker, args=(killed, stop), daemon=True)
    killer.start()
    try:
        result = collect(SLOW, 4, tmp_path / "ray", progress=False, ray_address="local")
    finally:
        stop.set()
        killer.join(5)
    assert killed, "no Ray worker was seen running an episode"
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == "zombie"
    assert result.episodes == reference.episodes == 4
    assert _shas(tmp_path / "ray") == _shas(tmp_path / "ref")  # each episode once, the same


def test_driver_killed_with_kill_9_resumes(ray_local: str, tmp_path: Path) -> None:
    data = tmp_path / "d"
    cmd = [sys.executable, "-m", "dreamgym.cli", "collect", "--env", SLOW, "--episodes", "6"]
    cmd += ["--out", str(data), "--ray", ray_local, "--workers", "1", "--no-progress"]
    driver = subprocess.Popen(cmd, env=os.environ.copy(), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and driver.poll() is None:
            if (data / "manifest.json").exists() and load_manifest(data)["episodes"]:
                break
            time.sleep(0.1)
        assert driver.poll() is None, driver.stderr.read().decode()  # type: ignore[union-attr]
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait(10)
    before = len(load_manifest(data)["episodes"])
    assert 1 <= before < 6
    result = collect(SLOW, 6, data, progress=False, ray_address="local")
    assert result.episodes == 6 - before and result.total_episodes == 6
    reference = collect(SLOW, 6, tmp_path / "ref", workers=1, progress=False)
    assert reference.episodes == 6 and _shas(data) == _shas(tmp_path / "ref")


def test_node_that_cannot_make_the_env_gives_one_clear_error(
    ray_local: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    env_id = "dreamgym_test_envs:DriverOnly-v0"  # made here, but not on the Ray node's workers
    with pytest.raises(WorkerSetupError) as e:
        collect(env_id, 6, tmp_path / "d", progress=False, ray_address=ray_local)
    msg = str(e.value)
    assert msg.startswith("Ray node 127.0.0.1 (") and envs.MISSING_MESSAGE in msg
    assert "ray stop" in msg and "Traceback" not in msg and "\n" not in msg
    capsys.readouterr()
    args = ["collect", "--env", env_id, "--episodes", "6", "--out", str(tmp_path / "c")]
    assert main([*args, "--ray", "--no-progress"]) == 2  # `--ray` alone: this process's Ray
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dreamgym collect: error: Ray node 127.0.0.1")


def test_evaluate_real_on_ray_matches_workers(
    ray_local: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from test_evaluation import _module_prefixed_world, save_controller

    from dreamgym.world import World

    world_dir = _module_prefixed_world(tmp_path, "TestImage-v0")  # a module-prefixed env id
    ctrl = str(save_controller(World.load(world_dir), tmp_path / "ctrl.json"))
    kw: dict[str, Any] = dict(episodes=4, seed=3, progress=False)
    for policy in ("random", ctrl):
        alone = evaluate_real(str(world_dir), policy, workers=1, **kw)
        on_ray = evaluate_real(str(world_dir), policy, ray_address=ray_local, **kw)
        np.testing.assert_allclose(on_ray, alone)
    args = ["evaluate", "--world", str(world_dir), "--policy", ctrl, "--real", "--episodes", "4"]
    assert main([*args, "--seed", "3", "--ray", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(report["returns"], alone)
