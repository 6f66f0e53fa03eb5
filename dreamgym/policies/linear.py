"""C: the linear controller of World Models, its action head, and its files.

Ha & Schmidhuber (2018, §2.3) keep the controller deliberately tiny: one linear map from the
observation [z_t, h_t] to the action, a_t = W [z_t h_t] + b (867 parameters for CarRacing: 32 + 256
inputs, 3 outputs). Their Doom controller also reads the LSTM's cell state: obs_mode "zch" is
[z_t, c_t, h_t] (the paper code's MODE_ZCH). `PopulationController` applies a whole CMA-ES population at once (one batched
matrix product per dream step; the training loop is `dreamgym.agents.cmaes`).

Action heads (`ACTION_HEADS`, recorded in the sidecar as "action_head"): raw outputs x are squashed
into a Box's bounds by
- "paper" (new controllers): the paper's CarRacing code, tanh for the steering in [-1, 1] and
  clip(tanh(x), 0, 1) for gas and brake: a = low + (high - low) · clip(tanh(x), 0, 1) on the dims
  whose low is 0, a = low + (high - low) · (tanh(x) + 1) / 2 on the others (tanh itself on
  [-1, 1]). Half of the raw range gives exactly 0, so "no brake" is easy to find;
- "affine" (every controller written before action heads were recorded, whose sidecar has no
  "action_head" key): a = low + (high - low) · (tanh(x) + 1) / 2 on every dim, so gas and brake
  are sigmoid(2x) and never exactly 0.
Unbounded Box dimensions pass x through. Discrete actions are the argmax over n outputs (both).

Files: a controller is `controller.safetensors` (tensors `W` (out, obs_dim) and `b` (out,)) plus a
`controller.json` sidecar (obs mode and size, action space, the world it was trained in, fitness,
generation, temperature, and the weights' sha256). A world bundle may ship one next to its
weights (`bundle_controller`, `load_bundled_controller`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from safetensors.torch import load_file

from dreamgym.spaces import action_space_from_dict, action_space_to_dict, same_action_space
from dreamgym.utils.files import atomic_save_safetensors, atomic_write_json, sha256_file
from dreamgym.utils.validate import InvalidValueError, check_int, check_str
from dreamgym.world import MDNRNN_FILE, World
from dreamgym.world_config import check_action_space_dict

CONTROLLER_WEIGHTS = "controller.safetensors"
CONTROLLER_META = "controller.json"
CONTROLLER_FORMAT = "dreamgym.linear_controller"
CONTROLLER_FORMAT_VERSION = 1
CONTROLLER_OBS_MODES = ("zh", "z", "zch")
"""The paper's controller reads [z, h]; "z" alone is the ablation of §3.3 (no memory); "zch" is
[z, c, h], the input of the paper's Doom controller (the LSTM's cell state c too)."""
ACTION_HEADS = ("paper", "affine")
"""How raw outputs become Box actions (see the module docstring)."""
LEGACY_ACTION_HEAD = "affine"
"""The head of a controller file whose sidecar has no "action_head" key (written before it)."""
DEFAULT_ACTION_HEAD = "paper"
"""The head of new controllers."""
_ACTION_MAPS = {
    "affine": "low + (high - low) * (tanh(x) + 1) / 2",
    "paper": "low + (high - low) * clip(tanh(x), 0, 1) where low == 0, else "
    "low + (high - low) * (tanh(x) + 1) / 2",
}


# --------------------------------------------------------------------------------------------
# The linear map and its action head


def controller_obs_dim(world: World, obs_mode: str = "zh") -> int:
    """Size of the controller's input in `world` for `obs_mode` (zh: z + the memory's features,
    z: z, zch: z + 2h, MDN-RNN worlds only)."""
    if obs_mode == "zh":
        return world.latent_dim + world.feature_dim
    if obs_mode == "z":
        return world.latent_dim
    if obs_mode == "zch":
        if world.memory_kind != "mdnrnn":
            raise ValueError(
                f"obs_mode 'zch' reads an LSTM's cell state; world {world.name!r} has an "
                f"{world.memory_kind.upper()} memory: use obs_mode 'zh' (z and its features [h, s])"
            )
        return world.latent_dim + 2 * world.hidden_dim
    raise ValueError(
        f"a linear controller reads obs_mode 'zh', 'z' or 'zch', got {obs_mode!r} (pixels need a "
        "CNN policy, e.g. dreamgym sb3)"
    )


def action_output_dim(space: gym.Space) -> int:
    """Raw outputs the linear map needs: a Box's size, or one score per Discrete action."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return int(space.shape[0])
    raise ValueError(f"a linear controller supports 1-d Box or Discrete actions, got {space}")


def n_params(obs_dim: int, action_space: gym.Space) -> int:
    """W (out × obs_dim) plus b (out): 288 · 3 + 3 = 867 for CarRacing (z 32, h 256)."""
    out = action_output_dim(action_space)
    return obs_dim * out + out


class ActionHead:
    """Raw linear outputs (..., out) → actions in the space (see the module docstring's heads)."""

    def __init__(
        self,
        action_space: gym.Space,
        device: torch.device | str = "cpu",
        mapping: str = DEFAULT_ACTION_HEAD,
    ) -> None:
        if mapping not in ACTION_HEADS:
            raise ValueError(f"action head must be one of {ACTION_HEADS}, got {mapping!r}")
        self.mapping = mapping
        self.space = action_space
        self.out_dim = action_output_dim(action_space)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.to(device)

    def to(self, device: torch.device | str) -> ActionHead:
        self.device = torch.device(device)
        if self.discrete:
            self.start = int(self.space.start)
        else:
            low = np.asarray(self.space.low, dtype=np.float64)
            high = np.asarray(self.space.high, dtype=np.float64)
            bounded = np.isfinite(low) & np.isfinite(high)
            center = np.where(bounded, (low + high) / 2.0, 0.0)
            scale = np.where(bounded, (high - low) / 2.0, 1.0)
            # low + (high-low)(tanh x + 1)/2 == center + scale·tanh x; unbounded dims: x itself
            self.center = torch.as_tensor(center, dtype=torch.float32, device=self.device)
            self.scale = torch.as_tensor(scale, dtype=torch.float32, device=self.device)
            self.bounded = torch.as_tensor(bounded, device=self.device)
            self.all_bounded = bool(bounded.all())
            # "paper": dims whose low is 0 map clip(tanh x, 0, 1) onto [0, high]
            clip = bounded & (low == 0.0) if self.mapping == "paper" else np.zeros_like(bounded)
            self.clip = torch.as_tensor(clip, device=self.device) if clip.any() else None
            if self.clip is not None:  # a = clip_low + clip_scale · t, t = tanh x (clipped)
                f32 = {"dtype": torch.float32, "device": self.device}
                self.clip_low = torch.as_tensor(np.where(clip, low, center), **f32)
                self.clip_scale = torch.as_tensor(np.where(clip, high - low, scale), **f32)
        return self

    @property
    def action_map(self) -> str:
        """The formula, as the sidecar records it."""
        return "argmax" if self.discrete else _ACTION_MAPS[self.mapping]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return torch.argmax(x, dim=-1) + self.start
        if self.clip is not None:
            t = torch.tanh(x)
            t = torch.where(self.clip, t.clamp(min=0.0), t)
            squashed = torch.addcmul(self.clip_low, self.clip_scale, t)
        else:
            squashed = torch.addcmul(self.center, self.scale, torch.tanh(x))
        return squashed if self.all_bounded else torch.where(self.bounded, squashed, x)


class LinearController:
    """a = map(W obs + b): the paper's controller C (§2.3) for one parameter vector.

    `LinearController(world, obs_mode="zh")` sizes itself from a world;
    `LinearController(obs_dim, action_space)` from plain sizes. Parameters start at zero (the
    CMA-ES mean's starting point); the flat layout is W row-major (out × obs_dim), then b.
    `action_head`: "paper" for new controllers; a loaded file keeps its own (see `ACTION_HEADS`).
    """

    def __init__(
        self,
        world_or_obs_dim: World | int,
        action_space: gym.Space | None = None,
        obs_mode: str = "zh",
        params: np.ndarray | torch.Tensor | None = None,
        metadata: dict[str, Any] | None = None,
        action_head: str = DEFAULT_ACTION_HEAD,
    ) -> None:
        if isinstance(world_or_obs_dim, World):
            world = world_or_obs_dim
            self.obs_dim = controller_obs_dim(world, obs_mode)
            action_space = action_space or world.action_space
        else:
            if obs_mode not in CONTROLLER_OBS_MODES:
                raise ValueError(
                    f"obs_mode must be one of {CONTROLLER_OBS_MODES}, got {obs_mode!r}"
                )
            if action_space is None:
                raise ValueError(
                    "pass the action space with an obs size: LinearController(288, space)"
                )
            self.obs_dim = int(world_or_obs_dim)
        self.obs_mode = obs_mode
        self.action_space = action_space
        self.head = ActionHead(action_space, mapping=action_head)
        self.out_dim = self.head.out_dim
        self.W = torch.zeros(self.out_dim, self.obs_dim)
        self.b = torch.zeros(self.out_dim)
        self.metadata: dict[str, Any] = dict(metadata or {})
        if params is not None:
            self.set_params(params)

    @property
    def n_params(self) -> int:
        return self.W.numel() + self.b.numel()

    def get_params(self) -> np.ndarray:
        """The flat float64 parameter vector (what CMA-ES searches over)."""
        return torch.cat([self.W.reshape(-1), self.b]).double().cpu().numpy()

    def set_params(self, params: np.ndarray | torch.Tensor) -> None:
        flat = torch.as_tensor(np.asarray(params, dtype=np.float32)).reshape(-1)
        if flat.numel() != self.n_params:
            raise ValueError(
                f"expected {self.n_params} parameters ({self.out_dim} × {self.obs_dim} + "
                f"{self.out_dim}), got {flat.numel()}"
            )
        k = self.out_dim * self.obs_dim
        self.W = flat[:k].reshape(self.out_dim, self.obs_dim).to(self.W.device)
        self.b = flat[k:].clone().to(self.b.device)

    def to(self, device: torch.device | str) -> LinearController:
        self.W, self.b = self.W.to(device), self.b.to(device)
        self.head.to(device)
        return self

    def act_tensor(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, obs_dim) float → (B, *action_shape) actions (long for Discrete)."""
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(
                f"controller expects observations of shape (B, {self.obs_dim}) "
                f"(obs_mode {self.obs_mode!r}), got {tuple(obs.shape)}"
            )
        return self.head(torch.addmm(self.b, obs.to(self.W.dtype), self.W.t()))

    # --- files ---------------------------------------------------------------------------------
    def save(
        self,
        path: str | os.PathLike,
        world: World | None = None,
        record_world_path: bool = True,
        **metadata: Any,
    ) -> Path:
        """Write `<dir>/controller.safetensors` + `.json` (or `x.safetensors` + `x.json`).

        `world` records which world it was trained in (env id, name, path, checksums; no path
        with `record_world_path=False`, for a controller shipped inside its world's folder);
        extra keyword arguments (fitness, generation, temperature, ...) go into the JSON sidecar.
        Atomic.
        """
        weights, meta_path = controller_paths(path, must_exist=False)
        atomic_save_safetensors({"W": self.W.float(), "b": self.b.float()}, weights)
        meta = {**self.metadata, **metadata}
        if world is not None:
            meta["world"] = world_fingerprint(world)
            if not record_world_path:
                meta["world"]["path"] = None
        meta.update(
            {
                "format": CONTROLLER_FORMAT,
                "format_version": CONTROLLER_FORMAT_VERSION,
                "kind": "linear",
                "obs_mode": self.obs_mode,
                "obs_dim": self.obs_dim,
                "action_space": action_space_to_dict(self.action_space),
                "action_head": self.head.mapping,
                "action_map": self.head.action_map,
                "n_params": self.n_params,
                "weights_file": weights.name,
                "weights_sha256": sha256_file(weights),
            }
        )
        atomic_write_json(meta_path, meta)
        self.metadata = meta
        return weights

    @classmethod
    def load(cls, path: str | os.PathLike, world: World | None = None) -> LinearController:
        """Read a controller (its directory, its .safetensors or its .json); check it fits `world`."""
        weights, meta_path = controller_paths(path)
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{meta_path} is not valid JSON ({e}); the controller is corrupt"
            ) from e
        if meta.get("format") != CONTROLLER_FORMAT:
            raise ValueError(
                f"{meta_path} is not a dreamgym linear controller (format {meta.get('format')!r}); "
                "write one with `dreamgym controller`"
            )
        if meta.get("format_version") != CONTROLLER_FORMAT_VERSION:
            raise ValueError(
                f"{meta_path} has format_version {meta.get('format_version')!r}; this dreamgym "
                f"reads {CONTROLLER_FORMAT_VERSION}"
            )
        validate_controller_meta(meta, meta_path)
        expected_sha = meta.get("weights_sha256")
        if expected_sha is not None and sha256_file(weights) != expected_sha:
            raise ValueError(
                f"{weights} does not match the sha256 recorded in {meta_path.name}: the weights "
                "were replaced or are corrupt; restore both files together"
            )
        try:
            tensors = load_file(str(weights))
        except Exception as e:  # safetensors raises its own error types for a cut-off file
            raise ValueError(f"{weights} is not a readable safetensors file ({e})") from e
        space = action_space_from_dict(meta["action_space"])
        obs_dim, out = int(meta["obs_dim"]), action_output_dim(space)
        W, b = tensors.get("W"), tensors.get("b")
        if W is None or b is None or tuple(W.shape) != (out, obs_dim) or tuple(b.shape) != (out,):
            raise ValueError(
                f"{weights}: expected tensors W {(out, obs_dim)} and b {(out,)} as {meta_path.name} "
                f"describes, got W {None if W is None else tuple(W.shape)} and b "
                f"{None if b is None else tuple(b.shape)}"
            )
        if not (W.is_floating_point() and b.is_floating_point()) or not bool(
            torch.isfinite(W).all() and torch.isfinite(b).all()
        ):
            raise ValueError(
                f"{weights}: W and b must be finite floats; the controller is damaged (a "
                "diverged search?) — retrain it or restore the file"
            )
        head = meta.get("action_head", LEGACY_ACTION_HEAD)
        if head not in ACTION_HEADS:
            raise ValueError(
                f"{meta_path} has action_head {head!r}; this dreamgym knows {ACTION_HEADS}"
            )
        ctrl = cls(obs_dim, space, obs_mode=meta["obs_mode"], metadata=meta, action_head=head)
        ctrl.W, ctrl.b = W.float().contiguous(), b.float().contiguous()
        ctrl.path = weights
        if world is not None:
            ctrl.check_world(world)
        return ctrl

    def check_world(self, world: World) -> None:
        """Clear errors when this controller cannot run in `world` (sizes, action space)."""
        name = world.name
        try:
            dim = controller_obs_dim(world, self.obs_mode)
        except ValueError as e:
            raise ValueError(f"controller: {e}") from e
        if dim != self.obs_dim:
            raise ValueError(
                f"controller expects obs of size {self.obs_dim} but world {name!r} gives {dim} in "
                f"obs_mode {self.obs_mode!r} (latent {world.latent_dim}, {world.memory_kind} "
                f"features {world.feature_dim}); use a controller trained in this world"
            )
        if not same_action_space(self.action_space, world.action_space):
            raise ValueError(
                f"controller acts in {self.action_space} but world {name!r} ({world.env_id}) has "
                f"{world.action_space}; use a controller trained for {world.env_id}"
            )
        trained_in = self.metadata.get("world", {})
        want = trained_in.get("mdnrnn_sha256")
        have = world.config.get("files", {}).get(MDNRNN_FILE)
        if want and have and want != have:
            warnings.warn(
                f"controller was trained in world {trained_in.get('name')!r}, whose M differs "
                f"from the M of {name!r}: it runs, but its returns may differ",
                stacklevel=3,
            )


def validate_controller_meta(meta: dict[str, Any], meta_path: Path) -> None:
    """The controller JSON's fields the loader relies on: one line naming the file and field."""
    where = str(meta_path)
    check_int(meta.get("obs_dim"), "obs_dim", where, minimum=1)
    check_str(meta.get("obs_mode"), "obs_mode", where, choices=CONTROLLER_OBS_MODES)
    check_action_space_dict(meta.get("action_space"), where)
    sha = meta.get("weights_sha256")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
        raise InvalidValueError(f"{where}: weights_sha256 must be a sha256 hex digest, got {sha!r}")


class PopulationController:
    """P linear controllers applied at once: params (P, n) to obs (P, R, obs_dim) by one bmm.

    Row p of the population acts on its own R rollouts, so a whole CMA-ES generation is a single
    batched matrix product per dream step.
    """

    def __init__(
        self,
        obs_dim: int,
        action_space: gym.Space,
        params: np.ndarray | torch.Tensor,
        device: torch.device | str = "cpu",
        action_head: str = DEFAULT_ACTION_HEAD,
    ) -> None:
        self.obs_dim = int(obs_dim)
        self.head = ActionHead(action_space, device, mapping=action_head)
        self.out_dim = self.head.out_dim
        p = torch.as_tensor(np.asarray(params, dtype=np.float32), device=device)
        if p.ndim != 2 or p.shape[1] != n_params(self.obs_dim, action_space):
            raise ValueError(
                f"population params must be (P, {n_params(self.obs_dim, action_space)}), "
                f"got {tuple(p.shape)}"
            )
        k = self.out_dim * self.obs_dim
        self.popsize = p.shape[0]
        # (P, obs_dim, out) so that obs (P, R, obs_dim) @ Wt → (P, R, out)
        self.Wt = (
            p[:, :k].reshape(self.popsize, self.out_dim, self.obs_dim).transpose(1, 2).contiguous()
        )
        self.b = p[:, k:].unsqueeze(1).contiguous()  # (P, 1, out)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """(P, R, obs_dim) → (P, R, *action_shape)."""
        return self.head(torch.baddbmm(self.b, obs, self.Wt))


class ControllerPolicy:
    """A `LinearController` as a `dreamgym.policies.Policy`: numpy in, numpy out."""

    def __init__(self, controller: LinearController, spec: str | None = None) -> None:
        self.controller = controller
        self.obs_mode = controller.obs_mode
        self.action_space = controller.action_space
        self.spec = spec
        """How `dreamgym.policies.load_policy` can rebuild it (worker processes load by spec)."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        with torch.inference_mode():
            a = self.controller.act_tensor(x.to(self.controller.W.device)).cpu().numpy()
        return a.astype(np.int64) if self.controller.head.discrete else a.astype(np.float32)


def controller_paths(path: str | os.PathLike, must_exist: bool = True) -> tuple[Path, Path]:
    """(weights, sidecar) for a controller directory, `.safetensors` file or `.json` file."""
    p = Path(path).expanduser()
    if p.suffix == ".safetensors":
        weights, meta = p, p.with_suffix(".json")
    elif p.suffix == ".json":
        weights, meta = p.with_suffix(".safetensors"), p
    else:
        weights, meta = p / CONTROLLER_WEIGHTS, p / CONTROLLER_META
    if must_exist:
        for f in (weights, meta):
            if not f.is_file():
                raise FileNotFoundError(
                    f"no controller at {path}: {f} is missing (a controller is "
                    f"{CONTROLLER_WEIGHTS} + {CONTROLLER_META}, written by `dreamgym controller`)"
                )
    return weights, meta


def world_fingerprint(world: World) -> dict[str, Any]:
    """What a controller records about its world: `World.fingerprint` (ids and checksums, to
    warn on a mismatch)."""
    return world.fingerprint


_DERIVED_META = ("world", "weights_file", "weights_sha256")
"""Sidecar keys `save` rewrites itself."""


def bundle_controller(world: World, controller: LinearController | str | os.PathLike) -> Path:
    """Ship `controller` inside the saved `world` (registered in config["files"] with checksums)."""
    if world.path is None:
        raise ValueError("save the world (world.save(DIR)) before bundling a controller in it")
    if not isinstance(controller, LinearController):
        controller = LinearController.load(controller, world)
    controller.check_world(world)
    keep = {k: v for k, v in controller.metadata.items() if k not in _DERIVED_META}
    # It lives in its world's folder, so it records no path: a shipped bundle names no folder of
    # the machine it was made on.
    controller.save(world.path, world=world, record_world_path=False, **keep)
    world.register_file(CONTROLLER_WEIGHTS)
    world.register_file(CONTROLLER_META)
    return world.path / CONTROLLER_WEIGHTS


def load_bundled_controller(world: World) -> LinearController:
    """The controller a world bundle ships (`controller.safetensors` + `.json` in its directory)."""
    if world.path is None or not (world.path / CONTROLLER_WEIGHTS).is_file():
        where = world.path or "memory (an unsaved world)"
        raise FileNotFoundError(
            f"world {world.name!r} ships no controller (no {CONTROLLER_WEIGHTS} in {where}); "
            f"train one with `dreamgym controller --world WORLD --out CTRL` and pass that directory"
        )
    return LinearController.load(world.path, world)
