"""CMA-ES itself for `dreamgym controller`: seeded ask/tell, and the search's record.

`Search` holds the CMA-ES object and what the run has found: the fitness of every generation
(what a resumed run replays), the best candidate ever and the best re-scored mean. Sampling is
seeded per generation from our own Generator (cma never touches numpy's global RNG), so a resumed
run replaying ask/tell with the recorded fitness rebuilds the search exactly.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cma
import numpy as np
from tqdm.auto import tqdm

from dreamgym.agents.cmaes_state import save_state
from dreamgym.agents.population import PopulationEvaluator
from dreamgym.utils.threads import single_threaded_blas

MEAN_SEED_KEY = 0x6D65616E
"""Spawn key of the mean re-scoring's fixed dream seed (generations use (generation,))."""


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


def _mean_seed(seed: int) -> int:
    """The dream seed of every re-scoring of the mean: one fixed set of dreams for the run."""
    ss = np.random.SeedSequence(seed, spawn_key=(MEAN_SEED_KEY, 0))
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


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


@dataclass
class Search:
    """CMA-ES and what it has found so far: everything a run's state file holds."""

    es: Any
    normal: _Normal
    seed: int
    l2: float
    best_params: np.ndarray
    fitness: list[np.ndarray] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_fitness: float = -math.inf
    best_generation: int = -1
    best_mean_params: np.ndarray | None = None
    best_mean_return: float = -math.inf
    best_mean_generation: int = -1

    @classmethod
    def start(cls, n: int, sigma0: float, popsize: int, seed: int, l2: float) -> Search:
        normal = _Normal()
        return cls(_new_es(n, sigma0, popsize, normal), normal, seed, float(l2), np.zeros(n))

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
        scored = [h for h in self.history if "mean_eval" in h]
        if scored and "best_mean_params" in state["tensors"]:
            top = max(scored, key=lambda h: h["mean_eval"]["return"])
            self.best_mean_params = state["tensors"]["best_mean_params"]
            self.best_mean_return = top["mean_eval"]["return"]
            self.best_mean_generation = top["generation"]
        if not np.allclose(self.es.mean, state["tensors"]["mean"], rtol=1e-6, atol=1e-9):
            warnings.warn(
                f"replaying {len(self.fitness)} saved generations did not reproduce the saved "
                "CMA-ES mean; the run continues from the replayed state",
                stacklevel=4,
            )

    def save_state(
        self,
        path: Path,
        fingerprint: dict[str, Any],
        extra: dict[str, np.ndarray | None] | None = None,
    ) -> None:
        """The state file; `extra`: more parameters to keep (the exploitation alarm's)."""
        params = {
            **(extra or {}),
            "best_params": self.best_params,
            "mean": self.es.mean,
            "best_mean_params": self.best_mean_params,
        }
        save_state(path, fingerprint, self.fitness, params, self.history)

    def generation(self, g: int, evaluator: PopulationEvaluator) -> dict[str, Any]:
        """Ask, evaluate in the dream, tell: one generation; returns its history entry.

        Fitness = mean return over the rollouts − l2 · ‖θ‖² (what CMA-ES ranks by).
        """
        t0 = time.perf_counter()
        solutions = _ask(self.es, self.normal, self.seed, g)
        returns = evaluator(solutions, seed=_generation_seeds(self.seed, g)[1]).mean(axis=1)
        f = returns - self.l2 * np.square(solutions).sum(axis=1) if self.l2 else returns
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
            "best_return": float(returns[i]),
            "mean": float(f.mean()),
            "std": float(f.std()),
            "best_ever": self.best_fitness,
            "sigma": float(self.es.sigma),
            "seconds": time.perf_counter() - t0,
        }

    def score_mean(self, g: int, evaluator: PopulationEvaluator) -> dict[str, Any]:
        """Re-score the CMA-ES mean (after generation g's tell) on the run's fixed dreams."""
        t0 = time.perf_counter()
        mean = np.asarray(self.es.mean, dtype=np.float64).copy()
        returns = evaluator(mean[None], seed=_mean_seed(self.seed))[0]
        score = float(returns.mean())
        if score > self.best_mean_return:
            self.best_mean_params, self.best_mean_return, self.best_mean_generation = mean, score, g
        return {
            "return": score,
            "std": float(returns.std()),
            "l2_norm_sq": float(np.square(mean).sum()),
            "best": self.best_mean_return,
            "seconds": time.perf_counter() - t0,
        }

    def kept(self, keep: str) -> tuple[np.ndarray, dict[str, Any]]:
        """The parameters a run ships under `keep`, and what the sidecar says about them."""
        candidate = {
            "fitness": _finite(self.best_fitness),
            "generation": self.best_generation,
        }
        mean = {"return": _finite(self.best_mean_return), "generation": self.best_mean_generation}
        if keep == "best-mean":
            params = self.best_mean_params if self.best_mean_params is not None else self.es.mean
            chosen = {"fitness": mean["return"], "generation": self.best_mean_generation}
        else:
            params, chosen = self.best_params, dict(candidate)
        return np.asarray(params, dtype=np.float64), {
            **chosen,
            "kept": keep,
            "best_candidate": candidate,
            "best_mean": mean,
        }


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
