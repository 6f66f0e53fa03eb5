"""Where and in what precision a dream runs: "auto" resolved once, with clear errors.

`resolve_device` turns "auto" into CUDA where torch sees it, else the CPU, and refuses devices
the dream was never run on; `dream_precision` is what a report records of an "auto" precision.
"""

from __future__ import annotations

import torch

from dreamgym.utils.hardware import resolve_precision

DEVICE_TYPES = ("cpu", "cuda")
"""Devices the dream runs on (others lack ops it needs or were never tested)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" → CUDA when available, else CPU; "cuda" without CUDA is a clear error."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but this torch build sees no CUDA device; "
            'use device="cpu", or device="auto" to fall back to the CPU'
        )
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'") from e
    if resolved.type not in DEVICE_TYPES:
        raise ValueError(
            f"device={device!r} is not supported by the dream; use 'auto', 'cpu' or 'cuda'"
        )
    return resolved


def dream_precision(precision: str, device: str | torch.device = "auto") -> str:
    """What a dream made with `precision` and `device` computes in: "float32" or "bfloat16"
    (what reports record beside the asked-for "auto")."""
    return resolve_precision(precision, resolve_device(device))
