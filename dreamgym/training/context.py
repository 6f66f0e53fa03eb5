"""`TrainingRun`: what every stage of `train_world` shares, and the provenance it records.

One object holds the options, OUT's workspace and progress record, the datasets and the episode
split, so each stage function takes the run and reads top to bottom.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dreamgym import __version__
from dreamgym.models.vae import VAEConfig
from dreamgym.spaces import action_input_dim, action_space_from_dict
from dreamgym.training.config import EpochCallback, TrainConfig, command_line, training_record
from dreamgym.training.episodes import EpisodeData
from dreamgym.training.mdn import auto_done_weight
from dreamgym.training.workspace import Workspace


@dataclass
class TrainingRun:
    """What every stage shares: the options, OUT's workspace and progress, the data and its split."""

    config: TrainConfig
    ws: Workspace
    progress: dict[str, Any]
    dirs: list[str]
    manifests: list[dict[str, Any]]
    data: EpisodeData
    train_eps: np.ndarray
    val_eps: np.ndarray
    device: torch.device
    on_epoch: EpochCallback | None
    wall_start: float
    manifest: dict[str, Any] = field(init=False)
    train_frames: np.ndarray = field(init=False)
    val_frames: np.ndarray = field(init=False)
    vae_config: VAEConfig = field(init=False)
    action_dim: int = field(init=False)
    """Width of M's action input (Box: its size; Discrete: n, one-hot)."""

    def __post_init__(self) -> None:
        self.manifest = self.manifests[0]
        self.train_frames = self.data.frame_indices(self.train_eps)
        self.val_frames = self.data.frame_indices(self.val_eps)
        self.vae_config = VAEConfig(
            latent_dim=self.config.latent, kl_tolerance=self.config.kl_tolerance
        )
        self.action_dim = action_input_dim(action_space_from_dict(self.manifest["action_space"]))

    def done_weight(self) -> float:
        """M's weight of done steps in its done loss (either family): `--done-weight`, or with 0
        the training steps' non-done/done ratio (`auto_done_weight`)."""
        if self.config.done_weight:
            return float(self.config.done_weight)
        return auto_done_weight(self.data.dones[self.data.step_indices(self.train_eps)])

    def provenance(
        self, metrics: dict[str, Any], initial_latents: int, wall: float
    ) -> dict[str, Any]:
        """Where the world came from: command, data (per dataset), split, stage times, machine."""
        config, data, dirs, progress = self.config, self.data, self.dirs, self.progress
        train_eps, val_eps = self.train_eps, self.val_eps
        # As the user named them (relative stays relative): a shipped world names no folder of
        # the machine it was trained on.
        given = [str(d) for d in dirs]
        policies = [m.get("policy") for m in self.manifests]
        seeds = [m.get("seed") for m in self.manifests]
        st, rs = progress["vae"], progress["rnn"]
        return {
            "kind": "trained",
            "command": command_line(config),
            "argv": shlex.join(sys.argv) if sys.argv and sys.argv[0] else None,
            "data": given[0] if len(given) == 1 else given,
            "data_policy": policies[0] if len(policies) == 1 else policies,
            "data_seed": seeds[0] if len(seeds) == 1 else seeds,
            "data_episodes": [sum(e.get("data_dir") == d for e in data.entries) for d in dirs],
            "vae_from": config.vae_from,
            "episodes": {
                "train": int(len(train_eps)),
                "val": int(len(val_eps)),
                "val_indices": [
                    int(data.entries[e]["index"])
                    if len(dirs) == 1
                    else [dirs.index(data.entries[e]["data_dir"]), int(data.entries[e]["index"])]
                    for e in val_eps
                ],
            },
            "real_steps": int(data.lengths.sum()),
            "train_steps": int(data.lengths[train_eps].sum()),
            "val_steps": int(data.lengths[val_eps].sum()),
            "frames": int(data.frames.shape[0]),
            "initial_latents": initial_latents,
            "stages": {
                "vae": {"epochs": st["epochs_done"], "seconds": st["seconds"]},
                "encode": {"epochs": 1, "seconds": progress["encode"]["seconds"]},
                "rnn": {"epochs": rs["epochs_done"], "seconds": rs["seconds"]},
                "metrics": {"seconds": metrics["seconds"]},
            },
            "wall_seconds": wall,
            "training": training_record(config),  # an RSSM's names its "memory"
            "machine": machine_info(self.device),
            "dreamgym_version": __version__,
        }


def machine_info(device: torch.device) -> dict[str, Any]:
    """The machine a world was trained on (recorded in its provenance and card)."""
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
