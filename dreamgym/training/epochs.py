"""The epoch loop V and M share: resume, train the epochs left, validate, commit each one.

Each epoch ends with a checkpoint and an atomic rewrite of progress.json (the commit point), so a
run killed at any moment resumes after its last committed epoch. Each epoch's sampling is seeded
by (seed, stage, epoch) inside the stage's `train_epoch`, so a resumed run draws the same batches
as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from dreamgym.training.config import EpochCallback
from dreamgym.training.workspace import Workspace

TrainEpoch = Callable[[int, Any], dict[str, Any]]
"""`train_epoch(epoch, bar) -> record`: one pass over the training data (bar: a tqdm bar)."""
Validate = Callable[[dict[str, Any]], dict[str, str]]
"""`validate(record) -> postfix`: adds the held-out numbers to the record; returns the bar's text."""


def stage_bar(desc: str, total: int, initial: int, progress: bool) -> Any:
    """A tqdm bar over a stage's batches, all epochs together (disabled with --no-progress)."""
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="batch",
        disable=not progress,
        dynamic_ncols=True,
    )


def commit_epoch(
    ws: Workspace,
    progress: dict[str, Any],
    stage: str,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    record: dict[str, Any],
    on_epoch: EpochCallback | None,
) -> None:
    """Checkpoint, then record the epoch in progress.json (the commit point), then prune."""
    ckpt = ws.save_checkpoint(stage, epoch, model, optimizer)
    st = progress[stage]
    st.update(epochs_done=epoch, checkpoint=ckpt)
    st["history"].append(record)
    st["seconds"] += record["seconds"]
    ws.save_progress(progress)
    ws.prune(stage, ckpt["file"])
    if on_epoch is not None:
        on_epoch(stage, epoch, record)


def run_epochs(
    ws: Workspace,
    progress: dict[str, Any],
    stage: str,
    label: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    batches_per_epoch: int,
    train_epoch: TrainEpoch,
    validate: Validate,
    show_progress: bool,
    on_epoch: EpochCallback | None,
    invalidates: tuple[str, ...] = (),
) -> None:
    """Load `stage`'s last checkpoint, then train and commit its epochs up to `epochs`.

    `invalidates` names progress entries that each new epoch makes stale (M's epochs: the metrics
    and the bundle), cleared in the same commit.
    """
    st = progress[stage]
    if st["checkpoint"]:
        ws.load_checkpoint(st["checkpoint"], model, optimizer)
    if st["epochs_done"] >= epochs:
        return
    total, done = batches_per_epoch * epochs, batches_per_epoch * st["epochs_done"]
    bar = stage_bar(label, total, done, show_progress)
    try:
        for epoch in range(st["epochs_done"], epochs):
            bar.set_description(f"{label} epoch {epoch + 1}/{epochs}")
            record = train_epoch(epoch, bar)
            record["epoch"] = epoch + 1
            bar.set_postfix(**validate(record))
            progress.update(dict.fromkeys(invalidates))
            commit_epoch(ws, progress, stage, epoch + 1, model, optimizer, record, on_epoch)
    finally:
        bar.close()
