"""OUT/.train: progress.json (the commit record), per-epoch checkpoints and the latent cache.

Every epoch ends with a checkpoint (`<stage>_epochNNNN.safetensors`: model and optimizer
tensors) committed by an atomic rewrite of progress.json, which also holds the optimizer's
non-tensor state and the loss history. Re-running the same command after an interruption —
Ctrl-C or kill -9 — continues after the last committed epoch. Any change of the options that
decide what is trained (`FINGERPRINT_FIELDS`) or of the data is refused; a lock keeps a second
`dreamgym train` out of the folder while one runs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from dreamgym.training.config import (
    TrainConfig,
    TrainingStateError,
    loss_options,
    run_options,
    upgrade_stored_options,
)
from dreamgym.utils.files import atomic_save_safetensors, atomic_write_json, sha256_bytes
from dreamgym.utils.locks import FolderBusyError, file_lock
from dreamgym.world import CONFIG_FILE

WORK_DIR = ".train"
"""Checkpoints, the latent cache and progress.json live in OUT/.train (deletable when done)."""
PROGRESS_FILE = "progress.json"
ENCODED_LATENTS_FILE = "latents.safetensors"
"""V's (mu, logvar) of every training frame (not the bundle's reset bank, world.LATENTS_FILE)."""
LOCK_FILE = ".lock"
PROGRESS_SCHEMA = 1


class TrainingBusyError(TrainingStateError, FolderBusyError):
    """Another `dreamgym train` holds OUT's lock (a TrainingStateError and a FolderBusyError)."""


class Workspace:
    """OUT/.train: progress.json is the commit record; checkpoints are written before it."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.dir = out / WORK_DIR

    @property
    def progress_path(self) -> Path:
        return self.dir / PROGRESS_FILE

    def load_progress(self) -> dict[str, Any] | None:
        if not self.progress_path.is_file():
            return None
        try:
            return json.loads(self.progress_path.read_text())
        except json.JSONDecodeError as e:
            raise TrainingStateError(
                f"{self.progress_path} is not valid JSON ({e}); delete {self.dir} to start over"
            ) from e

    def save_progress(self, progress: dict[str, Any]) -> None:
        atomic_write_json(self.progress_path, progress)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Refuse a second `dreamgym train` writing to the same OUT at the same time."""
        self.dir.mkdir(parents=True, exist_ok=True)
        held = contextlib.ExitStack()
        try:
            held.enter_context(
                file_lock(
                    self.dir / LOCK_FILE,
                    f"another dreamgym train is writing to {self.out}; wait for it or choose "
                    "another --out",
                )
            )
        except FolderBusyError as e:
            raise TrainingBusyError(str(e)) from None
        with held:
            yield

    @property
    def latents_path(self) -> Path:
        return self.dir / ENCODED_LATENTS_FILE

    def save_latents(self, mu: np.ndarray, logvar: np.ndarray) -> None:
        """V's (mu, logvar) of every frame, cached for M (and for a resumed run)."""
        atomic_save_safetensors(
            {"mu": torch.from_numpy(mu), "logvar": torch.from_numpy(logvar)}, self.latents_path
        )

    def load_latents(self) -> tuple[np.ndarray, np.ndarray]:
        cached = load_file(str(self.latents_path))
        return cached["mu"].numpy(), cached["logvar"].numpy()

    def save_checkpoint(
        self, stage: str, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer
    ) -> dict[str, Any]:
        """Model + optimizer tensors in one safetensors file; returns the JSON half for progress."""
        tensors = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
        state = optimizer.state_dict()
        extra: dict[str, dict[str, Any]] = {}
        for pid, st in state["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"optim.{pid}.{k}"] = v.contiguous()
                else:
                    extra.setdefault(str(pid), {})[k] = v
        name = f"{stage}_epoch{epoch:04d}.safetensors"
        atomic_save_safetensors(tensors, self.dir / name)
        return {"file": name, "param_groups": state["param_groups"], "state_extra": extra}

    def load_checkpoint(
        self, checkpoint: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
    ) -> None:
        path = self.dir / checkpoint["file"]
        try:
            tensors = load_file(str(path))
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            state: dict[int, dict[str, Any]] = {}
            for k, v in tensors.items():
                if k.startswith("optim."):
                    _, pid, name = k.split(".", 2)
                    state.setdefault(int(pid), {})[name] = v
            for pid, st in checkpoint.get("state_extra", {}).items():
                state.setdefault(int(pid), {}).update(st)
            optimizer.load_state_dict({"state": state, "param_groups": checkpoint["param_groups"]})
            match_param_layouts(optimizer)
        except Exception as e:  # a missing or damaged file: name it and the fix
            raise TrainingStateError(
                f"cannot resume from checkpoint {path} ({e}); delete {self.dir} to start over"
            ) from e

    def prune(self, stage: str, keep: str | None) -> None:
        """Delete the stage's older checkpoints (after progress.json points past them)."""
        for p in self.dir.glob(f"{stage}_epoch*.safetensors"):
            if p.name != keep:
                p.unlink(missing_ok=True)


def match_param_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter state tensor its parameter's memory layout (strides).

    A checkpoint stores tensors contiguous; V trains with channels-last weights, and Adam's
    moments made during training are channels-last too. Fused Adam walks parameters and moments
    as flat memory, so a contiguous moment beside a channels-last weight pairs the wrong
    elements: a resumed run would drift from an uninterrupted one. Same layout, same pairing.
    """
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if (
                    torch.is_tensor(value)
                    and value.shape == param.shape
                    and value.stride() != param.stride()
                ):
                    state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def fingerprint(
    config: TrainConfig,
    manifest: dict[str, Any],
    selected: list[tuple[dict[str, Any], int]],
    vae_from_sha256: str | None = None,
) -> dict[str, Any]:
    """What progress.json records of the run: its training options and its exact data."""
    shards = "".join(f"{entry['file']}:{entry['sha256']}:{steps};" for entry, steps in selected)
    options = run_options(config)  # an RSSM run adds its memory and its own options
    if vae_from_sha256 is not None:  # only when set, so runs without it keep their fingerprint
        options["vae_from"] = vae_from_sha256
    # likewise: runs from before these options resume unchanged
    options.update(loss_options(config, only_set=True))
    if config.reward_events is not None:
        options["reward_events"] = config.reward_events
    return {
        "options": options,
        "data": {
            "env_id": manifest["env_id"],
            "episodes": len(selected),
            "steps": int(sum(s for _, s in selected)),
            "sha256": sha256_bytes(shards.encode()),
        },
    }


def check_fingerprint(ws: Workspace, old: dict[str, Any], new: dict[str, Any]) -> None:
    """TrainingStateError listing every option or data difference from the run in OUT.

    A run from before per-dim M and episode training is compared as what it trained with
    (`upgrade_stored_options`): the same command resumes it.
    """
    diffs = []
    stored = upgrade_stored_options(old["options"])
    memory = (stored.get("memory", "mdnrnn"), new["options"].get("memory", "mdnrnn"))
    if memory[0] != memory[1]:  # then its options differ too: name the family alone
        diffs.append(f"--memory {memory[0]} (this run: {memory[1]})")
    for k, v in new["options"].items():
        if stored.get(k) != v and memory[0] == memory[1]:
            diffs.append(f"--{k.replace('_', '-')} {stored.get(k)} (this run: {v})")
    od, nd = old["data"], new["data"]
    if od != nd:
        diffs.append(
            f"data {od['env_id']}, {od['episodes']} episodes, {od['steps']} steps "
            f"(this run: {nd['env_id']}, {nd['episodes']} episodes, {nd['steps']} steps"
            f"{', other shards' if od['episodes'] == nd['episodes'] else ''})"
        )
    if diffs:
        raise TrainingStateError(
            f"{ws.out} holds a training run with other settings: {'; '.join(diffs)}. Pass the "
            f"same options and data to resume it, choose another --out, or delete {ws.dir} to "
            "start over"
        )


def new_progress(fingerprint: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": PROGRESS_SCHEMA,
        "fingerprint": fingerprint,
        "vae": {"epochs_done": 0, "checkpoint": None, "history": [], "seconds": 0.0},
        "encode": None,
        "rnn": None,
        "metrics": None,
        "bundle": None,
    }


def check_can_resume(
    ws: Workspace, progress: dict[str, Any] | None, new: dict[str, Any], config: TrainConfig
) -> None:
    """Refuse an OUT this command cannot continue: a foreign bundle, other options, fewer epochs."""
    if progress is None:
        if (ws.out / CONFIG_FILE).exists():
            raise TrainingStateError(
                f"{ws.out} already holds a world bundle that this command did not train (no "
                f"{WORK_DIR}/{PROGRESS_FILE}); choose another --out"
            )
        return
    check_fingerprint(ws, progress["fingerprint"], new)
    if progress["vae"]["epochs_done"] > config.vae_epochs:
        raise TrainingStateError(
            f"{ws.out} holds V trained for {progress['vae']['epochs_done']} epochs, more than "
            f"--vae-epochs {config.vae_epochs}; pass --vae-epochs ≥ "
            f"{progress['vae']['epochs_done']}, or choose another --out"
        )
    rnn_done = (progress.get("rnn") or {}).get("epochs_done", 0)
    same_v = (progress.get("rnn") or {}).get("vae_epochs") == config.vae_epochs
    if same_v and rnn_done > config.rnn_epochs:
        raise TrainingStateError(
            f"{ws.out} holds M trained for {rnn_done} epochs, more than --rnn-epochs "
            f"{config.rnn_epochs}; pass --rnn-epochs ≥ {rnn_done}, or choose another --out"
        )
