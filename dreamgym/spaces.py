"""Action spaces as JSON, and the map from an env action to M's input vector.

A world stores its real env's action space so the dream can offer exactly the same one, and so a
bundle can be checked against the env it is used with. M sees Box actions as they are and
Discrete actions one-hot (Ha & Schmidhuber 2018 feed the raw action into the RNN).
"""

from __future__ import annotations

import sys
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


def check_actions(space: gym.Space, actions: Any, num_envs: int | None = None) -> Any:
    """Check actions against `space`; a clear ValueError for a wrong shape, dtype, NaN/inf or
    out-of-range Discrete index. The one action validator: the dream, its views and the
    transfer wrapper all accept and refuse the same actions.

    `num_envs=None`: ONE action (a Discrete int, scalar or shape (1,); a Box float array of
    `space.shape`), returned as a numpy batch of one (int64 (1,) or float32 (1, A)).
    `num_envs=n`: a batch of n. numpy/list input comes back as a numpy array (int64 or float32);
    a torch tensor comes back as it is (checked on its own device, not moved or cast).
    """
    if num_envs is None:
        return _check_one_action(space, actions)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(actions, torch.Tensor):
        _check_action_tensor(space, actions, int(num_envs))
        return actions
    n = int(num_envs)
    arr = np.asarray(actions)
    if isinstance(space, gym.spaces.Discrete):
        if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(
                f"expected {n} integer Discrete actions of shape ({n},), got dtype "
                f"{arr.dtype} and shape {arr.shape}"
            )
        lo, hi = _discrete_bounds(space)
        outside = (arr < lo) | (arr >= hi)  # before the cast: a uint64 2**64-1 is not -1
        if outside.any():
            raise ValueError(
                f"Discrete actions must lie in [{lo}, {hi}), got {arr[outside][:5].tolist()}"
            )
        return arr.astype(np.int64)
    shape = (n, *space.shape)
    if arr.shape != shape or not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"expected float actions of shape {shape} (num_envs × action size), got dtype "
            f"{arr.dtype} and shape {arr.shape}"
        )
    out = arr.astype(np.float32)
    if not np.isfinite(out).all():
        raise ValueError("actions contain NaN or inf; check the policy's output")
    return out


def _discrete_bounds(space: gym.spaces.Discrete) -> tuple[int, int]:
    return int(space.start), int(space.start) + int(space.n)


def _check_one_action(space: gym.Space, action: Any) -> np.ndarray:
    arr = np.asarray(action)
    if isinstance(space, gym.spaces.Discrete):
        if arr.shape not in ((), (1,)) or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(
                f"expected one integer action for {space}, got {action!r} "
                f"(dtype {arr.dtype}, shape {arr.shape})"
            )
        lo, hi = _discrete_bounds(space)
        if not lo <= int(arr.reshape(-1)[0]) < hi:  # before the cast: uint64 stays unsigned
            raise ValueError(
                f"Discrete action must lie in [{lo}, {hi}), got {int(arr.reshape(-1)[0])}"
            )
        return arr.astype(np.int64).reshape(1)
    if arr.shape != space.shape or not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"expected a float action of shape {space.shape}, got dtype {arr.dtype} and "
            f"shape {arr.shape}"
        )
    out = arr.astype(np.float32).reshape(1, -1)
    if not np.isfinite(out).all():
        raise ValueError(f"action contains NaN or inf ({arr}); check the policy's output")
    return out


def _check_action_tensor(space: gym.Space, actions: torch.Tensor, n: int) -> None:
    import torch

    if isinstance(space, gym.spaces.Discrete):
        if actions.shape != (n,) or actions.dtype.is_floating_point or actions.dtype == torch.bool:
            raise ValueError(
                f"expected {n} integer Discrete actions of shape ({n},), got dtype "
                f"{actions.dtype} and shape {tuple(actions.shape)}"
            )
        lo, hi = _discrete_bounds(space)
        outside = (actions < lo) | (actions >= hi)
        if bool(outside.any()):
            raise ValueError(
                f"Discrete actions must lie in [{lo}, {hi}), got {actions[outside][:5].tolist()}"
            )
        return
    shape = (n, *space.shape)
    if tuple(actions.shape) != shape or not actions.dtype.is_floating_point:
        raise ValueError(
            f"expected float actions of shape {shape} (num_envs × action size), got dtype "
            f"{actions.dtype} and shape {tuple(actions.shape)}"
        )
    if not bool(torch.isfinite(actions).all()):
        raise ValueError("actions contain NaN or inf; check the policy's output")


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
