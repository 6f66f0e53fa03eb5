"""CMA-ES on the linear controller inside the batched dream (`dreamgym controller`).

Ha & Schmidhuber (2018, §3.2 and the appendix on evolution strategies) train the controller C
with CMA-ES on the mean return of 16 rollouts per candidate, 64 candidates per generation. Here a
generation is ONE batch: the whole population × rollouts (64 × 16 = 1,024 envs) steps together in
`DreamVectorEnv`, through its torch-level `reset_tensors`/`step_tensors`, with each candidate's
parameters applied to its own rows by one batched matrix product (`PopulationController`).

A run directory holds the controller (`controller.safetensors` + `.json`, see
`dreamgym.policies.linear`), the CMA-ES state (`cma_state.safetensors`: no pickle) and
`history.json`; re-running the same command resumes. Real-env checks during training
(`eval_real_every`) run through an injected `real_evaluator`, so that training never imports the
evaluation layer: the `dreamgym controller` command passes `dreamgym.evaluation.real_returns`.
"""

from __future__ import annotations

import functools
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cma
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save as numpy_to_bytes
from tqdm.auto import tqdm

from dreamgym.envs.dream import resolve_device
from dreamgym.policies.linear import (
    CONTROLLER_OBS_MODES,
    CONTROLLER_WEIGHTS,
    LinearController,
)
from dreamgym.training.population import PopulationEvaluator
from dreamgym.utils.files import atomic_write_bytes, atomic_write_json
from dreamgym.utils.threads import single_threaded_blas, torch_threads
from dreamgym.world import MDNRNN_FILE, World

STATE_FILE = "cma_state.safetensors"
"""CMA-ES run state in OUT: the fitness of every candidate so far + best-ever parameters."""
HISTORY_FILE = "history.json"
REAL_EVAL_DIR = "real_eval"
"""Where a real-env check during training writes the controller it runs (inside OUT)."""

RealEvaluator = Callable[[str, str, int, int, "int | None"], np.ndarray]
"""(world directory, controller path, episodes, seed, max_steps) → real returns (float64)."""


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
            stacklevel=4,
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
    atomic_write_bytes(path, numpy_to_bytes(tensors, metadata=meta))


# --------------------------------------------------------------------------------------------
# The run: resume, generations, outputs


@dataclass
class _Search:
    """CMA-ES and what it has found so far: everything a run's state file holds."""

    es: Any
    normal: _Normal
    seed: int
    best_params: np.ndarray
    fitness: list[np.ndarray] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_fitness: float = -math.inf
    best_generation: int = -1

    @classmethod
    def start(cls, n: int, config: ControllerConfig) -> _Search:
        normal = _Normal()
        es = _new_es(n, config.sigma0, config.popsize, normal)
        return cls(es, normal, config.seed, np.zeros(n))

    def replay(self, state: dict[str, Any], progress: bool) -> None:
        """Replay ask/tell with the recorded fitness: rebuilds the ES exactly, no pickle needed
        (≈0.1–0.2 s per generation for CarRacing's 867 parameters, no dream rollouts)."""
        saved = state["tensors"]["fitness"]
        replay = tqdm(
            saved, desc="resume: replaying CMA-ES", unit="gen", disable=not progress, leave=False
        )
        for g, f in enumerate(replay):
            _tell(self.es, _ask(self.es, self.normal, self.seed, g), f)
            self.fitness.append(np.asarray(f))
        self.history = state["history"][: len(self.fitness)]
        self.best_params = state["tensors"]["best_params"]
        self.best_fitness = max((h["best"] for h in self.history), default=-math.inf)
        self.best_generation = next(
            (h["generation"] for h in self.history if h["best"] == self.best_fitness), -1
        )
        if not np.allclose(self.es.mean, state["tensors"]["mean"], rtol=1e-6, atol=1e-9):
            warnings.warn(
                f"replaying {len(self.fitness)} saved generations did not reproduce the saved "
                "CMA-ES mean; the run continues from the replayed state",
                stacklevel=4,
            )

    def save_state(self, path: Path, fingerprint: dict[str, Any]) -> None:
        _save_state(path, fingerprint, self.fitness, self.best_params, self.es.mean, self.history)

    def generation(self, g: int, evaluator: PopulationEvaluator) -> dict[str, Any]:
        """Ask, evaluate in the dream, tell: one generation; returns its history entry."""
        t0 = time.perf_counter()
        solutions = _ask(self.es, self.normal, self.seed, g)
        returns = evaluator(solutions, seed=_generation_seeds(self.seed, g)[1])
        f = returns.mean(axis=1)
        _tell(self.es, solutions, f)
        self.fitness.append(f)
        i = int(np.argmax(f))
        if f[i] > self.best_fitness:
            self.best_fitness, self.best_params, self.best_generation = (
                float(f[i]),
                solutions[i].copy(),
                g,
            )
        return {
            "generation": g,
            "best": float(f[i]),
            "mean": float(f.mean()),
            "std": float(f.std()),
            "best_ever": self.best_fitness,
            "sigma": float(self.es.sigma),
            "seconds": time.perf_counter() - t0,
        }


def train_controller(
    config: ControllerConfig, real_evaluator: RealEvaluator | None = None
) -> ControllerResult:
    """CMA-ES on the linear controller in the dream; resumable; writes OUT/controller.*.

    Fitness of a candidate = its mean dream return over `rollouts` rollouts (Ha & Schmidhuber
    2018, appendix on evolution strategies). The controller kept is the best-ever candidate by
    that averaged fitness, as in the paper. Being the maximum of many noisy estimates it is
    optimistic: re-evaluate it with `dreamgym evaluate --dream` (or `gap`) for an unbiased number.
    `real_evaluator` runs the real-env checks of `eval_real_every` (see `RealEvaluator`).
    """
    if config.generations < 0 or config.popsize < 2 or config.rollouts < 1:
        raise ValueError("need generations ≥ 0, popsize ≥ 2 and rollouts ≥ 1")
    if config.eval_real_every > 0 and real_evaluator is None:
        raise ValueError(
            "eval_real_every needs a real_evaluator, e.g. dreamgym.evaluation.real_returns "
            "(the `dreamgym controller` command passes it)"
        )
    with torch_threads(config.threads):
        return _train(config, real_evaluator)


def _train(config: ControllerConfig, real_evaluator: RealEvaluator | None) -> ControllerResult:
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
    n = LinearController(world, obs_mode=config.obs_mode).n_params
    fingerprint = _run_fingerprint(config, world, evaluator.temperature, evaluator.max_steps, n)
    state = _load_state(out / STATE_FILE, fingerprint)
    search = _Search.start(n, config)
    if state is not None:
        search.replay(state, config.progress)
    out.mkdir(parents=True, exist_ok=True)
    write_outputs = functools.partial(
        _write_outputs, out, world, config, evaluator, fingerprint, search
    )
    if state is not None:
        write_outputs()  # heal a run interrupted between its state file and its views
    gen_seconds: list[float] = []
    bar = tqdm(
        total=config.generations,
        initial=min(len(search.fitness), config.generations),
        unit="gen",
        desc=f"cma-es {world.name}",
        disable=not config.progress,
        dynamic_ncols=True,
    )
    try:
        for g in range(len(search.fitness), config.generations):
            entry = search.generation(g, evaluator)
            if config.eval_real_every > 0 and (g + 1) % config.eval_real_every == 0:
                assert real_evaluator is not None  # checked by train_controller
                entry["real"] = _eval_real(
                    config, world, out, search.best_params, g, real_evaluator
                )
            search.history.append(entry)
            search.save_state(out / STATE_FILE, fingerprint)
            write_outputs()
            gen_seconds.append(entry["seconds"])
            bar.set_postfix(_postfix(entry))
            bar.update(1)
    finally:
        bar.close()
    if not search.fitness:
        write_outputs()
    return ControllerResult(
        out=out,
        controller=out / CONTROLLER_WEIGHTS,
        generations=len(search.fitness),
        best_fitness=search.best_fitness,
        best_generation=search.best_generation,
        seconds_per_generation=float(np.mean(gen_seconds)) if gen_seconds else float("nan"),
    )


def _postfix(entry: dict[str, Any]) -> dict[str, str]:
    """The progress bar's summary of one generation."""
    postfix = {
        "best": f"{entry['best']:.2f}",
        "mean": f"{entry['mean']:.2f}",
        "s/gen": f"{entry['seconds']:.1f}",
    }
    if "real" in entry:
        postfix["real"] = f"{entry['real']['mean']:.1f}"
    return postfix


def _write_outputs(
    out: Path,
    world: World,
    config: ControllerConfig,
    evaluator: PopulationEvaluator,
    fingerprint: dict[str, Any],
    search: _Search,
) -> None:
    """The views of the run: the best controller so far and history.json."""
    best = LinearController(world, obs_mode=config.obs_mode, params=search.best_params)
    best.save(
        out,
        world=world,
        fitness=search.best_fitness if math.isfinite(search.best_fitness) else None,
        generation=search.best_generation,
        temperature=evaluator.temperature,
        max_steps=evaluator.max_steps,
        rollouts=config.rollouts,
        trained_generations=len(search.fitness),
        trainer="cma-es",
    )
    atomic_write_json(out / HISTORY_FILE, {"run": fingerprint, "generations": search.history})


def _eval_real(
    config: ControllerConfig,
    world: World,
    out: Path,
    params: np.ndarray,
    generation: int,
    real_evaluator: RealEvaluator,
) -> dict[str, Any]:
    """Real-env returns of the best-so-far controller (written to OUT/real_eval/ first).

    The evaluator gets paths, not objects: its episodes may run in worker processes that load
    the world and the controller from disk.
    """
    probe = out / REAL_EVAL_DIR
    LinearController(world, obs_mode=config.obs_mode, params=params).save(probe, world=world)
    returns = real_evaluator(
        str(world.path),
        str(probe),
        config.eval_real_episodes,
        10_000 * (generation + 1),
        config.max_steps,  # the dream's cap, if any, applies to reality too
    )
    return {"mean": float(returns.mean()), "std": float(returns.std()), "returns": returns.tolist()}
