"""C: the linear controller of World Models, and its CMA-ES training inside the batched dream.

Ha & Schmidhuber (2018, §2.3) keep the controller deliberately tiny: one linear map from the
observation [z_t, h_t] to the action, a_t = W [z_t h_t] + b (867 parameters for CarRacing: 32 + 256
inputs, 3 outputs), and train it with CMA-ES on the mean return of 16 rollouts per candidate,
64 candidates per generation (§3.2 and the appendix on evolution strategies). Here a generation
is ONE batch: the whole population × rollouts (64 × 16 = 1,024 envs) steps together in
`DreamVectorEnv`, through its torch-level `reset_tensors`/`step_tensors`, with each candidate's
parameters applied to its own rows by one batched matrix product (`PopulationController`).

Action map (one formula for every Box): raw outputs x are squashed into the bounds as
    a = low + (high - low) · (tanh(x) + 1) / 2,
which is the paper's choice for CarRacing: tanh for the steering in [-1, 1], and
(tanh(x) + 1) / 2 = sigmoid(2x) for gas and brake in [0, 1]. Unbounded Box dimensions pass x
through. Discrete actions are the argmax over n outputs.

Files: a controller is `controller.safetensors` (tensors `W` (out, obs_dim) and `b` (out,)) plus a
`controller.json` sidecar (obs mode and size, action space, the world it was trained in, fitness,
generation, temperature, and the weights' sha256). A world bundle may ship one next to its
weights (`bundle_controller`, `load_bundled_controller`).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from safetensors import safe_open
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file

from dreamgym.spaces import action_space_from_dict, action_space_to_dict, same_action_space
from dreamgym.world import (
    CONFIG_FILE,
    MDNRNN_FILE,
    World,
    atomic_save_safetensors,
    atomic_write_json,
    sha256_file,
)

CONTROLLER_WEIGHTS = "controller.safetensors"
CONTROLLER_META = "controller.json"
CONTROLLER_FORMAT = "dreamgym.linear_controller"
CONTROLLER_FORMAT_VERSION = 1
CONTROLLER_OBS_MODES = ("zh", "z")
"""The paper's controller reads [z, h]; "z" alone is the ablation of §3.3 (no memory)."""

STATE_FILE = "cma_state.safetensors"
"""CMA-ES run state in OUT: the fitness of every candidate so far + best-ever parameters."""
HISTORY_FILE = "history.json"
ALL_DONE_CHECK_EVERY_GPU = 32
"""On CUDA, `alive.any()` is a host sync: look only every this many steps (CPU: every step)."""


# --------------------------------------------------------------------------------------------
# The linear map and its action head


def controller_obs_dim(world: World, obs_mode: str = "zh") -> int:
    """Size of the controller's input in `world` for `obs_mode` ("zh": z + h, "z": z)."""
    if obs_mode == "zh":
        return world.latent_dim + world.hidden_dim
    if obs_mode == "z":
        return world.latent_dim
    raise ValueError(
        f"a linear controller reads obs_mode 'zh' or 'z', got {obs_mode!r} (pixels need a CNN "
        "policy, e.g. dreamgym sb3)"
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
    """Raw linear outputs (..., out) → actions in the space (see the module docstring's map)."""

    def __init__(self, action_space: gym.Space, device: torch.device | str = "cpu") -> None:
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
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return torch.argmax(x, dim=-1) + self.start
        squashed = torch.addcmul(self.center, self.scale, torch.tanh(x))
        return squashed if self.all_bounded else torch.where(self.bounded, squashed, x)


class LinearController:
    """a = map(W obs + b): the paper's controller C (§2.3) for one parameter vector.

    `LinearController(world, obs_mode="zh")` sizes itself from a world;
    `LinearController(obs_dim, action_space)` from plain sizes. Parameters start at zero (the
    CMA-ES mean's starting point); the flat layout is W row-major (out × obs_dim), then b.
    """

    def __init__(
        self,
        world_or_obs_dim: World | int,
        action_space: gym.Space | None = None,
        obs_mode: str = "zh",
        params: np.ndarray | torch.Tensor | None = None,
        metadata: dict[str, Any] | None = None,
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
        self.head = ActionHead(action_space)
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
    def save(self, path: str | os.PathLike, world: World | None = None, **metadata: Any) -> Path:
        """Write `<dir>/controller.safetensors` + `.json` (or `x.safetensors` + `x.json`).

        `world` records which world it was trained in (env id, name, checksums); extra keyword
        arguments (fitness, generation, temperature, ...) go into the JSON sidecar. Atomic.
        """
        weights, meta_path = controller_paths(path, must_exist=False)
        atomic_save_safetensors({"W": self.W.float(), "b": self.b.float()}, weights)
        meta = {**self.metadata, **metadata}
        if world is not None:
            meta["world"] = world_fingerprint(world)
        meta.update(
            {
                "format": CONTROLLER_FORMAT,
                "format_version": CONTROLLER_FORMAT_VERSION,
                "kind": "linear",
                "obs_mode": self.obs_mode,
                "obs_dim": self.obs_dim,
                "action_space": action_space_to_dict(self.action_space),
                "action_map": "argmax"
                if self.head.discrete
                else "low + (high - low) * (tanh(x) + 1) / 2",
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
        ctrl = cls(obs_dim, space, obs_mode=meta["obs_mode"], metadata=meta)
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
                f"obs_mode {self.obs_mode!r} (latent {world.latent_dim}, hidden "
                f"{world.hidden_dim}); use a controller trained in this world"
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
    ) -> None:
        self.obs_dim = int(obs_dim)
        self.head = ActionHead(action_space, device)
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
        """How `evaluation.load_policy` can rebuild it (worker processes load by spec)."""

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
    """What a controller records about its world: ids and checksums, to warn on a mismatch."""
    config_sha = None
    if world.path is not None and (world.path / CONFIG_FILE).is_file():
        config_sha = sha256_file(world.path / CONFIG_FILE)
    return {
        "env_id": world.env_id,
        "name": world.name,
        "path": str(world.path) if world.path is not None else None,
        "config_sha256": config_sha,
        "mdnrnn_sha256": world.config.get("files", {}).get(MDNRNN_FILE),
    }


def load_controller(path: str | os.PathLike, world: World | None = None) -> LinearController:
    """`LinearController.load` as a function."""
    return LinearController.load(path, world)


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
    controller.save(world.path, world=world, **keep)
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


# --------------------------------------------------------------------------------------------
# Fitness: a whole population × rollouts in one batched dream


class PopulationEvaluator:
    """Dream returns of P candidates × R rollouts, stepped as one `DreamVectorEnv` of P·R envs.

    Each env's first episode is its sample: autoreset is off, and an `alive` mask stops counting
    reward after an env's first termination or truncation; the loop ends when every env is done.
    Candidates do not share random numbers (no common random numbers): each of the P·R envs
    draws its own reset and dream noise from the env's one generator, seeded per call.
    """

    def __init__(
        self,
        world: World,
        popsize: int,
        rollouts: int,
        obs_mode: str = "zh",
        temperature: float | None = None,
        max_steps: int | None = None,
        device: str | torch.device = "auto",
        termination: str = "sample",
    ) -> None:
        from dreamgym.envs.dream import DreamVectorEnv

        self.obs_dim = controller_obs_dim(world, obs_mode)
        max_steps = max_steps if max_steps is not None else world.max_episode_steps
        if max_steps is None:
            raise ValueError(
                f"world {world.name!r} has no max_episode_steps; pass max_steps (--max-steps) so "
                "that dream rollouts end"
            )
        self.popsize, self.rollouts, self.max_steps = int(popsize), int(rollouts), int(max_steps)
        self.env = DreamVectorEnv(
            world,
            num_envs=self.popsize * self.rollouts,
            obs_mode=obs_mode,
            temperature=temperature,
            device=device,
            max_episode_steps=self.max_steps,
            autoreset_mode=AutoresetMode.DISABLED,
            termination=termination,
        )
        self.action_space = self.env.single_action_space
        self.device = self.env.device
        self.check_every = 1 if self.device.type == "cpu" else ALL_DONE_CHECK_EVERY_GPU

    @property
    def temperature(self) -> float:
        return self.env.temperature

    @torch.inference_mode()
    def __call__(self, params: np.ndarray | torch.Tensor, seed: int) -> np.ndarray:
        """params (P, n_params) → returns (P, R) float64, one dream episode per (p, r)."""
        pop = PopulationController(self.obs_dim, self.action_space, params, self.device)
        if pop.popsize != self.popsize:
            raise ValueError(f"expected {self.popsize} candidates, got {pop.popsize}")
        env, P, R = self.env, self.popsize, self.rollouts
        n = P * R
        obs = env.reset_tensors(seed=seed)
        total = torch.zeros(n, dtype=torch.float64, device=self.device)
        alive = torch.ones(n, dtype=torch.bool, device=self.device)
        act_shape = (n, *self.action_space.shape)
        for t in range(self.max_steps):
            actions = pop.act(obs.view(P, R, -1)).reshape(act_shape)
            step = env.step_tensors(actions, validate=False)
            total += torch.where(alive, step.reward, 0.0)
            alive &= ~step.done
            obs = step.obs
            if (t + 1) % self.check_every == 0 and not bool(alive.any()):
                break
        return total.view(P, R).cpu().numpy()


# --------------------------------------------------------------------------------------------
# CMA-ES


@dataclass
class ControllerConfig:
    """Options of `dreamgym controller` (CMA-ES on a linear controller in the batched dream)."""

    world: str = field(metadata={"help": "world: a bundled name or a bundle directory"})
    out: str = field(
        metadata={"help": "run directory: controller, CMA state and history (resumes)"}
    )
    generations: int = field(
        default=100, metadata={"help": "CMA-ES generations to reach (a re-run resumes)"}
    )
    popsize: int = field(default=64, metadata={"help": "candidates per generation (paper: 64)"})
    rollouts: int = field(
        default=16, metadata={"help": "dream rollouts averaged per candidate (paper: 16)"}
    )
    sigma0: float = field(
        default=0.1, metadata={"help": "initial CMA-ES step size around zero parameters"}
    )
    temperature: float | None = field(
        default=None, metadata={"help": "dream temperature τ (default: the world's)"}
    )
    max_steps: int | None = field(
        default=None,
        metadata={"help": "dream episode cap (default: the world's max_episode_steps)"},
    )
    obs_mode: str = field(
        default="zh",
        metadata={
            "help": "controller input: zh = [z, h] (paper) or z",
            "choices": CONTROLLER_OBS_MODES,
        },
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    seed: int = field(
        default=0, metadata={"help": "seed of CMA-ES sampling and of the dream rollouts"}
    )
    eval_real_every: int = field(
        default=0,
        metadata={"help": "every K generations run the best controller in the real env (0: off)"},
    )
    eval_real_episodes: int = field(
        default=4, metadata={"help": "real episodes per real evaluation"}
    )
    threads: int | None = field(
        default=None,
        metadata={
            "help": "torch CPU threads (default: torch's; 1 is often faster on a busy machine)"
        },
    )
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


@dataclass
class ControllerResult:
    """What `train_controller` produced."""

    out: Path
    controller: Path
    generations: int
    best_fitness: float
    best_generation: int
    seconds_per_generation: float


class _Normal:
    """cma's `randn` option backed by our own Generator, reseeded every generation.

    cma's `seed` option would reseed numpy's *global* RNG; with a custom `randn` cma never
    touches it, and a per-generation seed makes a resumed run sample what the first one did.
    """

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def reseed(self, seed: np.random.SeedSequence) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape)


def _generation_seeds(seed: int, generation: int) -> tuple[np.random.SeedSequence, int]:
    """(CMA sampling seed, dream seed) of one generation, independent of any earlier run."""
    cma_ss, dream_ss = np.random.SeedSequence(seed, spawn_key=(generation,)).spawn(2)
    return cma_ss, int(dream_ss.generate_state(1, dtype=np.uint64)[0] >> 1)


def _new_es(n: int, sigma0: float, popsize: int, normal: _Normal) -> Any:
    import cma

    opts = {
        "popsize": popsize,
        "randn": normal,
        "seed": float("nan"),  # "do nothing": cma must not reseed numpy's global RNG
        "verbose": -9,
        "maxiter": float("inf"),
        "maxfevals": float("inf"),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cma.CMAEvolutionStrategy(np.zeros(n), sigma0, opts)


def _ask(es: Any, normal: _Normal, seed: int, generation: int) -> np.ndarray:
    normal.reseed(_generation_seeds(seed, generation)[0])
    with single_threaded_blas():
        return np.asarray(es.ask(), dtype=np.float64)


def _tell(es: Any, solutions: np.ndarray, fitness: np.ndarray) -> None:
    with warnings.catch_warnings(), single_threaded_blas():
        warnings.simplefilter("ignore")  # e.g. flat fitness in an untrained world
        es.tell(list(solutions), list(-np.asarray(fitness, dtype=np.float64)))  # cma minimises


_BLAS_THREADS: list[tuple[Any, Any]] | None = None
"""(get, set) thread-count functions of the OpenBLAS builds numpy loaded; found once."""


def _openblas_thread_controls() -> list[tuple[Any, Any]]:
    global _BLAS_THREADS
    if _BLAS_THREADS is None:
        import ctypes

        _BLAS_THREADS = []
        try:
            with open("/proc/self/maps") as f:
                libs = {line.split()[-1] for line in f if "openblas" in line.lower()}
        except OSError:  # not Linux: leave BLAS alone
            libs = set()
        for lib_path in sorted(libs):
            try:
                lib = ctypes.CDLL(lib_path)
            except OSError:
                continue
            for prefix, suffix in (
                ("scipy_openblas", "64_"),
                ("openblas", "64_"),
                ("openblas", ""),
            ):
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if getter is not None and setter is not None:
                    _BLAS_THREADS.append((getter, setter))
                    break
    return _BLAS_THREADS


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run numpy's OpenBLAS on one thread inside the block (CMA-ES's N×N algebra).

    cma's eigendecomposition and matrix-vector products of the 867 × 867 covariance were 5×
    slower with OpenBLAS's default threads on a busy 2-core machine (threads spin-waiting for
    each other) than on one thread. The previous count is restored; no-op where not found.
    """
    controls = _openblas_thread_controls()
    before = [get() for get, _ in controls]
    for _, set_threads in controls:
        set_threads(1)
    try:
        yield
    finally:
        for (_, set_threads), n in zip(controls, before, strict=True):
            set_threads(n)


def _run_fingerprint(
    config: ControllerConfig, world: World, temperature: float, max_steps: int, n: int
) -> dict[str, Any]:
    """Options a resumed run must share with the saved one."""
    return {
        "world_mdnrnn_sha256": world.config.get("files", {}).get(MDNRNN_FILE),
        "env_id": world.env_id,
        "obs_mode": config.obs_mode,
        "n_params": n,
        "popsize": config.popsize,
        "rollouts": config.rollouts,
        "sigma0": config.sigma0,
        "seed": config.seed,
        "temperature": temperature,
        "max_steps": max_steps,
    }


def _load_state(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The saved run in OUT (None if fresh); a run with other options is a clear error."""
    import cma

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        run = json.loads(meta["run"])
        history = json.loads(meta["history"])
    except Exception as e:
        raise ValueError(
            f"{path} is not a readable CMA-ES state ({e}); delete it (and {HISTORY_FILE}) to "
            "start over, or pick a new --out"
        ) from e
    diff = {k: (run.get(k), v) for k, v in fingerprint.items() if run.get(k) != v}
    if diff:
        what = ", ".join(f"{k}={a!r} (now {b!r})" for k, (a, b) in diff.items())
        raise ValueError(
            f"{path.parent} holds a controller run with other options: {what}; re-run with the "
            "same options to resume, or pick a new --out"
        )
    if meta.get("cma_version") != cma.__version__:
        warnings.warn(
            f"{path} was written with cma {meta.get('cma_version')}, this is cma {cma.__version__}: "
            "the resumed search distribution may differ slightly",
            stacklevel=3,
        )
    return {"tensors": tensors, "history": history, "meta": meta}


def _save_state(
    path: Path,
    fingerprint: dict[str, Any],
    fitness: list[np.ndarray],
    best_params: np.ndarray,
    mean: np.ndarray,
    history: list[dict[str, Any]],
) -> None:
    """One atomic file per generation: everything needed to resume (no pickle).

    The CMA-ES object is not serialised: a resumed run re-creates it and replays ask/tell with
    the recorded fitness values. Sampling is seeded per generation, so the replay reproduces
    the saved search distribution (checked against the stored mean).
    """
    import cma

    tmp = path.with_name(f".{path.name}.tmp")
    tensors = {
        "fitness": np.stack(fitness).astype(np.float64),  # (G, P) mean return per candidate
        "best_params": np.asarray(best_params, dtype=np.float64),
        "mean": np.asarray(mean, dtype=np.float64),
    }
    meta = {
        "run": json.dumps(fingerprint),
        "history": json.dumps(history),
        "cma_version": cma.__version__,
    }
    try:
        save_numpy(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


def train_controller(config: ControllerConfig) -> ControllerResult:
    """CMA-ES on the linear controller in the dream; resumable; writes OUT/controller.*.

    Fitness of a candidate = its mean dream return over `rollouts` rollouts (Ha & Schmidhuber
    2018, appendix on evolution strategies). The controller kept is the best-ever candidate by that averaged fitness, as in
    the paper. Being the maximum of many noisy estimates it is optimistic: re-evaluate it with
    `dreamgym evaluate --dream` (or `gap`) for an unbiased number.
    """
    from tqdm.auto import tqdm

    from dreamgym.envs.dream import resolve_device

    if config.generations < 0 or config.popsize < 2 or config.rollouts < 1:
        raise ValueError("need generations ≥ 0, popsize ≥ 2 and rollouts ≥ 1")
    if config.threads is not None:
        torch.set_num_threads(int(config.threads))
    out = Path(config.out)
    device = resolve_device(config.device)
    world = World.load(config.world, device=device)
    evaluator = PopulationEvaluator(
        world,
        config.popsize,
        config.rollouts,
        obs_mode=config.obs_mode,
        temperature=config.temperature,
        max_steps=config.max_steps,
        device=device,
    )
    template = LinearController(world, obs_mode=config.obs_mode)
    n = template.n_params
    fingerprint = _run_fingerprint(config, world, evaluator.temperature, evaluator.max_steps, n)
    state = _load_state(out / STATE_FILE, fingerprint)

    normal = _Normal()
    es = _new_es(n, config.sigma0, config.popsize, normal)
    fitness: list[np.ndarray] = []
    history: list[dict[str, Any]] = []
    best_params, best_fitness, best_generation = np.zeros(n), -math.inf, -1
    if state is not None:
        saved = state["tensors"]["fitness"]
        # Replay ask/tell with the recorded fitness: rebuilds the ES exactly, no pickle needed
        # (≈0.1–0.2 s per generation for CarRacing's 867 parameters, no dream rollouts).
        replay = tqdm(
            saved,
            desc="resume: replaying CMA-ES",
            unit="gen",
            disable=not config.progress,
            leave=False,
        )
        for g, f in enumerate(replay):
            _tell(es, _ask(es, normal, config.seed, g), f)
            fitness.append(np.asarray(f))
        history = state["history"][: len(fitness)]
        best_params = state["tensors"]["best_params"]
        best_fitness = max((h["best"] for h in history), default=-math.inf)
        best_generation = next((h["generation"] for h in history if h["best"] == best_fitness), -1)
        if not np.allclose(es.mean, state["tensors"]["mean"], rtol=1e-6, atol=1e-9):
            warnings.warn(
                f"replaying {len(fitness)} saved generations did not reproduce the saved CMA-ES "
                "mean; the run continues from the replayed state",
                stacklevel=2,
            )
    out.mkdir(parents=True, exist_ok=True)

    def write_outputs() -> None:
        best = LinearController(world, obs_mode=config.obs_mode, params=best_params)
        best.save(
            out,
            world=world,
            fitness=best_fitness if math.isfinite(best_fitness) else None,
            generation=best_generation,
            temperature=evaluator.temperature,
            max_steps=evaluator.max_steps,
            rollouts=config.rollouts,
            trained_generations=len(fitness),
            trainer="cma-es",
        )
        atomic_write_json(out / HISTORY_FILE, {"run": fingerprint, "generations": history})

    if state is not None:
        write_outputs()  # heal a run interrupted between its state file and its views
    start_generation = len(fitness)
    bar = tqdm(
        total=config.generations,
        initial=min(start_generation, config.generations),
        unit="gen",
        desc=f"cma-es {world.name}",
        disable=not config.progress,
        dynamic_ncols=True,
    )
    gen_seconds: list[float] = []
    try:
        for g in range(start_generation, config.generations):
            t0 = time.perf_counter()
            solutions = _ask(es, normal, config.seed, g)
            returns = evaluator(solutions, seed=_generation_seeds(config.seed, g)[1])
            f = returns.mean(axis=1)
            _tell(es, solutions, f)
            fitness.append(f)
            i = int(np.argmax(f))
            if f[i] > best_fitness:
                best_fitness, best_params, best_generation = float(f[i]), solutions[i].copy(), g
            entry: dict[str, Any] = {
                "generation": g,
                "best": float(f[i]),
                "mean": float(f.mean()),
                "std": float(f.std()),
                "best_ever": best_fitness,
                "sigma": float(es.sigma),
                "seconds": time.perf_counter() - t0,
            }
            if config.eval_real_every > 0 and (g + 1) % config.eval_real_every == 0:
                entry["real"] = _eval_real(config, world, out, best_params, g)
            history.append(entry)
            _save_state(out / STATE_FILE, fingerprint, fitness, best_params, es.mean, history)
            write_outputs()
            gen_seconds.append(entry["seconds"])
            postfix = {
                "best": f"{f[i]:.2f}",
                "mean": f"{f.mean():.2f}",
                "s/gen": f"{entry['seconds']:.1f}",
            }
            if "real" in entry:
                postfix["real"] = f"{entry['real']['mean']:.1f}"
            bar.set_postfix(postfix)
            bar.update(1)
    finally:
        bar.close()
    if not fitness:
        write_outputs()
    return ControllerResult(
        out=out,
        controller=out / CONTROLLER_WEIGHTS,
        generations=len(fitness),
        best_fitness=best_fitness,
        best_generation=best_generation,
        seconds_per_generation=float(np.mean(gen_seconds)) if gen_seconds else float("nan"),
    )


def _eval_real(
    config: ControllerConfig, world: World, out: Path, params: np.ndarray, generation: int
) -> dict[str, Any]:
    """Real-env returns of the best-so-far controller (written to OUT/real_eval/ first).

    Episodes run in worker processes that load the world and the controller from disk.
    """
    from dreamgym.evaluation import evaluate_real

    probe = out / "real_eval"
    LinearController(world, obs_mode=config.obs_mode, params=params).save(probe, world=world)
    returns = evaluate_real(
        str(world.path),
        str(probe),
        config.eval_real_episodes,
        seed=10_000 * (generation + 1),
        max_steps=config.max_steps,  # the dream's cap, if any, applies to reality too
        progress=False,
    )
    return {"mean": float(returns.mean()), "std": float(returns.std()), "returns": returns.tolist()}
