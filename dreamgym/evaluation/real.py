"""Returns of a policy in the real env, seen through V and M (`wrappers.WorldModelObservation`).

Episodes run in parallel worker processes that load the world and the policy themselves from
their paths (policies travel as spec strings, never pickled); episode i always uses seed + i, so
results do not depend on how episodes are spread over workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from dreamgym.policies import Policy, RandomPolicy, load_policy
from dreamgym.policies.fixed import is_fixed_spec
from dreamgym.utils.threads import set_worker_threads, torch_threads
from dreamgym.world import World, resolve_world_path
from dreamgym.wrappers import make_real

_WORKER: dict[str, Any] = {}


def _real_policy(spec: str, world: World, seed: int, index: int, cached: Policy | None) -> Policy:
    """The policy for real episode `index`: the random baseline is reseeded with seed + index."""
    if spec == "random":
        return RandomPolicy(world.action_space, seed=seed + index, obs_mode="zh")
    return cached if cached is not None else load_policy(spec, world, seed=seed)


def _run_real_episode(env: gym.Env, policy: Policy, seed: int) -> tuple[float, int]:
    obs, _ = env.reset(seed=seed)
    total, steps = 0.0, 0
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    while True:
        action = np.asarray(policy.act(obs[None]))[0]
        obs, reward, terminated, truncated, _ = env.step(int(action) if discrete else action)
        total += float(reward)
        steps += 1
        if terminated or truncated:
            return total, steps


def _init_real_worker(world_path: str, spec: str, seed: int, max_steps: int | None) -> None:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless box2d / pygame
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    set_worker_threads(1)
    world = World.load(world_path)
    policy = None if spec == "random" else load_policy(spec, world, seed=seed)
    obs_mode = "zh" if policy is None else policy.obs_mode
    kwargs = {} if max_steps is None else {"max_episode_steps": max_steps}
    _WORKER.update(
        world=world, spec=spec, seed=seed, policy=policy, env=make_real(world, obs_mode, **kwargs)
    )


def _real_worker_episode(index: int) -> tuple[int, float, int]:
    w = _WORKER
    policy = _real_policy(w["spec"], w["world"], w["seed"], index, w["policy"])
    ret, steps = _run_real_episode(w["env"], policy, w["seed"] + index)
    return index, ret, steps


def evaluate_real(
    world: World | str | os.PathLike,
    policy: Policy | str,
    episodes: int,
    seed: int,
    workers: int | None = None,
    max_steps: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Returns (float64, `episodes`) of the policy in the real env, seen through V and M.

    Episode i resets the real env with seed `seed + i` (and the random baseline's RNG with the
    same), so results do not depend on how episodes are spread over workers. `workers` processes
    (default: the CPU count) each load the world and the policy from their paths — policies
    travel as spec strings, never pickled; a policy object without a `spec` runs in this process.
    Workers read the world from its directory: changes made to a loaded `World` in memory and
    not saved are seen only with `workers=1`. `max_steps` caps episodes on top of the env's limit.
    """
    episodes = int(episodes)
    if episodes < 1:
        raise ValueError(f"episodes must be ≥ 1, got {episodes}")
    spec = policy if isinstance(policy, str) else getattr(policy, "spec", None)
    if isinstance(world, World):
        world_path = str(world.path) if world.path is not None else None
    else:
        world_path = str(resolve_world_path(world))
    workers = min(int(workers or os.cpu_count() or 1), episodes)
    if spec is None or world_path is None:
        workers = 1  # nothing to rebuild the policy or the world from in another process
    loaded_world = world if isinstance(world, World) else World.load(world_path)  # type: ignore[arg-type]
    if isinstance(policy, str):  # load here too: bad specs fail now, with a clear message
        policy = load_policy(policy, loaded_world, seed=seed)
    returns = np.zeros(episodes, dtype=np.float64)
    bar = tqdm(
        total=episodes, unit="ep", desc="real episodes", disable=not progress, dynamic_ncols=True
    )
    try:
        if workers == 1:
            kwargs = {} if max_steps is None else {"max_episode_steps": max_steps}
            env = make_real(loaded_world, policy.obs_mode, **kwargs)
            # One frame per step gains nothing from threads, and on a busy machine OpenMP
            # threads spin-wait: V's encode took 45 ms with 2 threads vs 4.4 ms with 1.
            try:
                with torch_threads(1):
                    for i in range(episodes):
                        p = _real_policy(spec, loaded_world, seed, i, policy) if spec else policy
                        returns[i] = _run_real_episode(env, p, seed + i)[0]
                        bar.update(1)
            finally:
                env.close()
        else:
            _real_in_workers(world_path, spec, episodes, seed, workers, max_steps, returns, bar)  # type: ignore[arg-type]
    finally:
        bar.close()
    return returns


def _real_in_workers(
    world_path: str,
    spec: str,
    episodes: int,
    seed: int,
    workers: int,
    max_steps: int | None,
    returns: np.ndarray,
    bar: Any,
) -> None:
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("spawn"),  # no forked torch / pygame state
        initializer=_init_real_worker,
        initargs=(str(Path(world_path).resolve()), _portable_spec(spec), seed, max_steps),
    ) as pool:
        futures = [pool.submit(_real_worker_episode, i) for i in range(episodes)]
        try:
            for fut in as_completed(futures):
                i, ret, _ = fut.result()
                returns[i] = ret
                bar.update(1)
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _portable_spec(spec: str) -> str:
    """Absolute path for file specs, so a worker with another cwd finds them."""
    if spec in ("random", "bundled") or is_fixed_spec(spec):
        return spec
    return str(Path(spec).expanduser().resolve())


def real_returns(
    world_path: str, spec: str, episodes: int, seed: int, max_steps: int | None
) -> np.ndarray:
    """`evaluate_real` without a progress bar: the real-env check of CMA-ES training
    (`dreamgym.training.cmaes.RealEvaluator`)."""
    return evaluate_real(world_path, spec, episodes, seed=seed, max_steps=max_steps, progress=False)
