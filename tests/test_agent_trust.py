"""SB3 agent files: only this machine's signed agents load without an opt-in; nothing is unpickled."""

from __future__ import annotations

import base64
import json
import os
import zipfile
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from dreamgym.agents.sb3 import SB3Config, train_agent
from dreamgym.cli import main as cli_main
from dreamgym.envs.sb3_vec import DreamVecEnv
from dreamgym.policies import load_policy
from dreamgym.policies.agent_trust import UntrustedAgentError
from dreamgym.policies.sb3_agent import agent_paths, load_sb3_policy, save_agent
from dreamgym.world import World


class _Payload:
    """What an attacker pickles: unpickling it runs a shell command (here: touch a file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def agent(tmp_path: Path, box_world_dir: Path) -> Path:
    """A PPO agent saved by dreamgym on this machine (signed)."""
    world = World.load(box_world_dir)
    env = DreamVecEnv(world, num_envs=2, device="cpu")
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=32, device="cpu")
    return save_agent(model, tmp_path / "agent", world, "zh")


def _evil_copy(agent: Path, out: Path, marker: Path, keep_signature: bool = False) -> Path:
    """The agent with its lr_schedule replaced by the payload, beside its genuine sidecar."""
    zip_path, json_path = agent_paths(out)
    with zipfile.ZipFile(agent) as src, zipfile.ZipFile(zip_path, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "data":
                d = json.loads(data)
                blob = base64.b64encode(cloudpickle.dumps(_Payload(marker))).decode()
                d["lr_schedule"][":serialized:"] = blob
                data = json.dumps(d).encode()
            dst.writestr(item, data)
    meta = json.loads(agent_paths(agent)[1].read_text())
    if not keep_signature:  # what an attacker can write: the public fields, no valid signature
        meta = {k: v for k, v in meta.items() if k not in ("signature", "zip_sha256")}
    json_path.write_text(json.dumps(meta))
    return zip_path


def test_payload_would_run_under_sb3s_own_loader(agent: Path, tmp_path: Path) -> None:
    """The test's payload is real: SB3's loader runs it (so the checks below mean something)."""
    marker = tmp_path / "ran"
    evil = _evil_copy(agent, tmp_path / "evil", marker)
    PPO.load(evil, device="cpu")
    assert marker.exists()


def test_untrusted_agent_is_refused_and_never_unpickled(
    agent: Path, tmp_path: Path, box_world_dir: Path
) -> None:
    marker = tmp_path / "ran"
    evil = _evil_copy(agent, tmp_path / "evil", marker)
    with pytest.raises(
        UntrustedAgentError, match="not written by dreamgym on this machine.*pickles.*--trust-agent"
    ):
        load_sb3_policy(evil, box_world_dir)
    with pytest.raises(UntrustedAgentError, match="no signature"):
        load_policy(str(evil), box_world_dir)
    # Opted in: it loads, and still nothing was unpickled (weights only).
    policy = load_sb3_policy(evil, box_world_dir, trust=True)
    assert policy.act(np.zeros((3, *policy.observation_space.shape), np.float32)).shape == (3, 3)
    assert not marker.exists()


@pytest.mark.parametrize("mode", ["--dream", "--real"])
def test_cli_refuses_an_untrusted_agent_in_one_line(
    agent: Path,
    tmp_path: Path,
    box_world_dir: Path,
    capsys: pytest.CaptureFixture[str],
    mode: str,
) -> None:
    marker = tmp_path / "ran"
    evil = _evil_copy(agent, tmp_path / "evil", marker)
    argv = ["evaluate", "--world", str(box_world_dir), "--policy", str(evil), mode]
    argv += ["--episodes", "1", "--max-steps", "3", "--workers", "1", "--no-progress"]
    if mode == "--real":
        pytest.importorskip("Box2D")
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--trust-agent" in err
    assert cli_main([*argv, "--trust-agent"]) == 0
    assert not marker.exists()


def test_collect_refuses_an_untrusted_agent_in_one_line(
    agent: Path, tmp_path: Path, box_world_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"
    evil = _evil_copy(agent, tmp_path / "evil", marker)
    argv = ["collect", "--env", "CarRacing-v3", "--episodes", "1", "--out", str(tmp_path / "d")]
    argv += ["--policy", str(evil), "--world", str(box_world_dir), "--no-progress"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--trust-agent" in err, err
    assert not marker.exists() and not (tmp_path / "d").exists()


def test_swapped_zip_is_refused_even_when_trusted(
    agent: Path, tmp_path: Path, box_world_dir: Path
) -> None:
    """A genuine, signed sidecar beside another zip: the content hash objects."""
    marker = tmp_path / "ran"
    evil = _evil_copy(agent, tmp_path / "evil", marker, keep_signature=True)
    for trust in (False, True):
        with pytest.raises(UntrustedAgentError, match="not the zip its sidecar describes"):
            load_sb3_policy(evil, box_world_dir, trust=trust)
    assert not marker.exists()


def test_edited_sidecar_or_other_machine_is_refused(
    agent: Path, box_world_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_sb3_policy(agent, box_world_dir).zip_sha256 is not None  # signed here: loads
    monkeypatch.setenv("DREAMGYM_CONFIG_DIR", str(tmp_path / "other-machine"))
    with pytest.raises(UntrustedAgentError, match="no dreamgym agent key"):
        load_sb3_policy(agent, box_world_dir)
    monkeypatch.undo()
    json_path = agent_paths(agent)[1]
    meta = json.loads(json_path.read_text())
    json_path.write_text(json.dumps({**meta, "num_timesteps": 10**6}))
    with pytest.raises(UntrustedAgentError, match="signature is not this machine's"):
        load_sb3_policy(agent, box_world_dir)


def test_a_pinned_worker_loads_only_the_checked_content(agent: Path, box_world_dir: Path) -> None:
    digest = load_sb3_policy(agent, box_world_dir).zip_sha256
    assert load_sb3_policy(agent, box_world_dir, trust=digest).zip_sha256 == digest
    with pytest.raises(UntrustedAgentError, match="changed since it was checked"):
        load_sb3_policy(agent, box_world_dir, trust="0" * 64)


def test_unsigned_checkpoint_is_not_resumed(tmp_path: Path, box_world_dir: Path) -> None:
    """Resuming unpickles the checkpoint with SB3's loader: only a signed one is resumed."""
    out = tmp_path / "a2c"
    config = SB3Config(
        world=str(box_world_dir), out=str(out), algo="a2c", steps=8, num_envs=2, progress=False
    )
    with pytest.raises(KeyboardInterrupt):
        train_agent(config, callback=_InterruptAt(4))
    partial_json = agent_paths(tmp_path / "a2c.partial")[1]
    meta = json.loads(partial_json.read_text())
    partial_json.write_text(json.dumps({k: v for k, v in meta.items() if k != "signature"}))
    with pytest.raises(FileExistsError, match="cannot resume.*--force"):
        train_agent(config)
    partial_json.write_text(json.dumps(meta))  # signed here: resumes
    assert train_agent(config) == agent_paths(out)[0]


class _InterruptAt(BaseCallback):
    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.steps:
            raise KeyboardInterrupt
        return True
