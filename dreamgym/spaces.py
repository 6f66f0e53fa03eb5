"""Action spaces as JSON, and the map from an env action to M's input vector.

A world stores its real env's action space so the dream can offer exactly the same one, and so a
bundle can be checked against the env it is used with. M sees Box actions as they are and
Discrete actions one-hot (Ha & Schmidhuber 2018 feed the raw action into the RNN).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:  # torch is imported lazily: data collection workers do not need it
    import torch

SUPPORTED_ACTION_SPACES = "Box (1-d) or Discrete"


def action_space_to_dict(space: gym.Space) -> dict[str, Any]:
    """JSON-able description of a supported action space."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return {
            "type": "Box",
            "low": [float(x) for x in space.low],
            "high": [float(x) for x in space.high],
            "shape": [int(space.shape[0])],
        }
    raise ValueError(
        f"action space {space} is not supported; dreamgym handles {SUPPORTED_ACTION_SPACES} actions"
    )


def action_space_from_dict(d: dict[str, Any]) -> gym.Space:
    if d.get("type") == "Discrete":
        return gym.spaces.Discrete(int(d["n"]), start=int(d.get("start", 0)))
    if d.get("type") == "Box":
        return gym.spaces.Box(
            low=np.asarray(d["low"], dtype=np.float32),
            high=np.asarray(d["high"], dtype=np.float32),
            dtype=np.float32,
        )
    raise ValueError(f"unknown action space description {d!r}; expected type Box or Discrete")


def action_input_dim(space: gym.Space) -> int:
    """Width of the action vector M receives."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    return int(space.shape[0])


def encode_actions_np(actions: np.ndarray, space: gym.Space) -> np.ndarray:
    """(T,) ints or (T, A) floats → (T, action_input_dim) float32 for M (one-hot for Discrete)."""
    if isinstance(space, gym.spaces.Discrete):
        idx = np.asarray(actions, dtype=np.int64).reshape(-1) - int(space.start)
        out = np.zeros((idx.shape[0], int(space.n)), dtype=np.float32)
        out[np.arange(idx.shape[0]), idx] = 1.0
        return out
    return np.asarray(actions, dtype=np.float32).reshape(-1, int(space.shape[0]))


def encode_actions_tensor(
    actions: torch.Tensor,
    space: gym.Space,
    low: torch.Tensor | None = None,
    high: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B,) int or (B, A) float actions → (B, action_input_dim) float for M.

    Box actions are clipped to the bounds (`low`/`high`: the bounds as tensors on the actions'
    device, to avoid rebuilding them every step), Discrete ones are one-hot. The dream and the
    transfer wrapper both call this, so M sees the same input for the same action in both.
    """
    import torch

    if isinstance(space, gym.spaces.Discrete):
        idx = actions.long() - int(space.start)
        return torch.nn.functional.one_hot(idx, int(space.n)).float()
    if low is None:
        low = torch.as_tensor(np.asarray(space.low, dtype=np.float32), device=actions.device)
    if high is None:
        high = torch.as_tensor(np.asarray(space.high, dtype=np.float32), device=actions.device)
    return torch.maximum(torch.minimum(actions.float(), high), low)


def same_action_space(a: gym.Space, b: gym.Space) -> bool:
    """Equal as far as a world cares (type, size, bounds to float32 precision)."""
    try:
        da, db = action_space_to_dict(a), action_space_to_dict(b)
    except ValueError:
        return False
    if da["type"] != db["type"]:
        return False
    if da["type"] == "Discrete":
        return da["n"] == db["n"] and da["start"] == db["start"]
    return (
        da["shape"] == db["shape"]
        and np.allclose(da["low"], db["low"], atol=1e-6)
        and np.allclose(da["high"], db["high"], atol=1e-6)
    )
