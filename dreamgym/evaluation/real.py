"""Returns of a policy in the real env, seen through V and M (`wrappers.WorldModelObservation`).

Episodes run in parallel worker processes that load the world and the policy themselves from
their paths (policies travel as spec strings, never pickled); episode i always uses seed + i, so
results do not depend on how episodes are spread over workers. A worker that cannot make the env
or load the policy raises a `WorkerSetupError`, which reaches the caller as it is.

With `ray_address` (`--ray [ADDRESS]`) each episode is a Ray task (`RealEvalJob`): the world's
bundle and the policy's files travel through Ray's object store, so nodes need no shared files.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from dreamgym.policies import Policy, RandomPolicy, load_policy
from dreamgym.policies.agent_trust import Trust
from dreamgym.policies.base import start_episode
from dreamgym.policies.fixed import is_fixed_spec
from dreamgym.policies.loading import worker_trust
from dreamgym.runners import WorkerSetupError, check_ray_address, run_on_ray, setup_error
from dreamgym.utils.files import atomic_write_bytes
from dreamgym.utils.threads import set_worker_threads, torch_threads
from dreamgym.utils.validate import check_real_run
from dreamgym.world import World, resolve_world_path
from dreamgym.wrappers import make_real

_WORKER: dict[str, Any] = {}


def _real_policy(spec: str, world: World, seed: int, index: int, cached: Policy | None) -> Policy:
    """The policy for real episode `index`: the random baseline is reseeded with seed + index."""
    if spec == "random":
        return RandomPolicy(world.action_space, seed=seed + index, obs_mode="zh")
    assert cached is not None, "workers load their policy once, in _real_worker_state"
    return cached


def _run_real_episode(env: gym.Env, policy: Policy, seed: int) -> tuple[float, int]:
    obs, _ = env.reset(seed=seed)
    start_episode(policy)
    total, steps = 0.0, 0
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    while True:
        action = np.asarray(policy.act(obs[None]))[0]
        obs, reward, terminated, truncated, _ = env.step(int(action) if discrete else action)
        total += float(reward)
        steps += 1
        if terminated or truncated:
            return total, steps


def _real_worker_state(
    world_path: str, spec: str, seed: int, max_steps: int | None, trust: Trust = False
) -> dict[str, Any]:
    """What a worker keeps between episodes: the world, the policy and the wrapped real env."""
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless box2d / pygame
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    set_worker_threads(1)
    world = World.load(world_path)
    policy = None if spec == "random" else load_policy(spec, world, seed=seed, trust=trust)
    obs_mode = "zh" if policy is None else policy.obs_mode
    kwargs = {} if max_steps is None else {"max_episode_steps": max_steps}
    env = make_real(world, obs_mode, **kwargs)
    return {"world": world, "spec": spec, "seed": seed, "policy": policy, "env": env}


def _state_episode(w: dict[str, Any], index: int) -> tuple[float, int]:
    policy = _real_policy(w["spec"], w["world"], w["seed"], index, w["policy"])
    return _run_real_episode(w["env"], policy, w["seed"] + index)


def _init_real_worker(
    world_path: str, spec: str, seed: int, max_steps: int | None, trust: Trust = False
) -> None:
    """Pool initializer: a failure is kept and raised by every episode, as one clear error
    (an initializer that raises would break the pool: `BrokenProcessPool`)."""
    try:
        _WORKER.update(_real_worker_state(world_path, spec, seed, max_steps, trust))
    except Exception as e:
        where = f"real-env worker process {mp.current_process().name}"
        _WORKER["error"] = setup_error(where, "make the real env or load the policy", e)


def _real_worker_episode(index: int) -> tuple[int, float, int]:
    if "error" in _WORKER:
        raise _WORKER["error"]
    ret, steps = _state_episode(_WORKER, index)
    return index, ret, steps


def evaluate_real(
    world: World | str | os.PathLike,
    policy: Policy | str,
    episodes: int,
    seed: int,
    workers: int | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    ray_address: str | None = None,
    trust: Trust = False,
) -> np.ndarray:
    """Returns (float64, `episodes`) of the policy in the real env, seen through V and M.

    Episode i resets the real env with seed `seed + i` (and the random baseline's RNG with the
    same), so results do not depend on how episodes are spread over workers. `workers` processes
    (default: the CPU count) each load the world and the policy from their paths — policies
    travel as spec strings, never pickled; a policy object without a `spec` runs in this process.
    Workers read the world from its directory: changes made to a loaded `World` in memory and
    not saved are seen only with `workers=1`. `max_steps` caps episodes on top of the env's limit.
    `ray_address` ("local", "auto", "HOST:PORT"): episodes run as Ray tasks, which get the world
    and the policy files through Ray; `workers` then caps the episodes in flight. `trust`: see
    `load_policy` (workers load exactly the SB3 zip checked here).
    """
    episodes, seed, _, max_steps = check_real_run(episodes, seed, workers, max_steps)
    check_ray_address(ray_address)
    spec = policy if isinstance(policy, str) else getattr(policy, "spec", None)
    if isinstance(world, World):
        world_path = str(world.path) if world.path is not None else None
    else:
        world_path = str(resolve_world_path(world))
    if ray_address is not None and (spec is None or world_path is None):
        raise ValueError(
            "--ray needs the world saved in a directory and the policy as a spec string "
            "(random, bundled or a file), so that Ray workers can load them"
        )
    in_flight = workers
    workers = min(int(workers or os.cpu_count() or 1), episodes)
    if spec is None or world_path is None:
        workers = 1  # nothing to rebuild the policy or the world from in another process
    loaded_world = world if isinstance(world, World) else World.load(world_path)  # type: ignore[arg-type]
    if isinstance(policy, str):  # load here too: bad specs fail now, with a clear message
        policy = load_policy(policy, loaded_world, seed=seed, trust=trust)
    trust = worker_trust(policy, trust)
    returns = np.zeros(episodes, dtype=np.float64)
    bar = tqdm(
        total=episodes, unit="ep", desc="real episodes", disable=not progress, dynamic_ncols=True
    )
    try:
        if ray_address is not None:
            job = RealEvalJob(world_path, spec, seed, max_steps, trust)  # type: ignore[arg-type]

            def landed(i: int, result: tuple[float, int]) -> None:
                returns[i] = result[0]
                bar.update(1)

            run_on_ray(ray_address, job, range(episodes), landed, workers=in_flight)
        elif workers == 1:
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
            run = (world_path, spec, seed, max_steps, trust)
            _real_in_workers(run, episodes, workers, returns, bar)  # type: ignore[arg-type]
    finally:
        bar.close()
    return returns


def _real_in_workers(
    run: tuple[str, str, int, int | None, Trust],
    episodes: int,
    workers: int,
    returns: np.ndarray,
    bar: Any,
) -> None:
    """`run` = (world path, spec, seed, max_steps, trust): what each worker loads."""
    world_path, spec, seed, max_steps, trust = run
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("spawn"),  # no forked torch / pygame state
        initializer=_init_real_worker,
        initargs=(str(Path(world_path).resolve()), _portable_spec(spec), seed, max_steps, trust),
    ) as pool:
        futures = [pool.submit(_real_worker_episode, i) for i in range(episodes)]
        try:
            for fut in as_completed(futures):
                i, ret, _ = fut.result()
                returns[i] = ret
                bar.update(1)
        except WorkerSetupError as e:  # the worker's one clear error, not the pool's traceback
            for f in futures:
                f.cancel()
            raise WorkerSetupError(str(e)) from None
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
    world_path: str,
    spec: str,
    episodes: int,
    seed: int,
    max_steps: int | None,
    ray_address: str | None = None,
) -> np.ndarray:
    """`evaluate_real` without a progress bar: the real-env check of CMA-ES training
    (`dreamgym.agents.cmaes.RealEvaluator`)."""
    return evaluate_real(
        world_path,
        spec,
        episodes,
        seed=seed,
        max_steps=max_steps,
        progress=False,
        ray_address=ray_address,
    )


def _bundle_files(path: Path) -> dict[str, bytes]:
    """The files a world directory or a policy spec is made of (by name), to ship to nodes."""
    if path.is_dir():
        return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.is_file()}
    stem = path.stem if path.suffix else path.name  # ctrl.json + ctrl.safetensors, a.zip + a.json
    return {
        p.name: p.read_bytes()
        for p in sorted(path.parent.iterdir())
        if p.is_file() and (p.stem == stem or p.name == path.name)
    }


def _unpack(files: dict[str, bytes], tag: str) -> Path:
    """`files` in a folder of this node's temp dir named after their content (written once)."""
    h = hashlib.sha256()
    for name, data in sorted(files.items()):
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    folder = Path(tempfile.gettempdir()) / f"dreamgym-ray-{tag}-{h.hexdigest()[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if not (folder / name).exists() or (folder / name).stat().st_size != len(data):
            atomic_write_bytes(folder / name, data)
    return folder


class RealEvalJob:
    """Real episodes of one evaluation as Ray tasks (`runners.EpisodeJob`): returns (return,
    steps). The world bundle and the policy's files travel with the job, so no node needs them."""

    def __init__(
        self, world_path: str, spec: str, seed: int, max_steps: int | None, trust: Trust = False
    ) -> None:
        world_dir = Path(world_path).resolve()
        self.world_files = _bundle_files(world_dir)
        self.spec = _portable_spec(spec)
        self.policy_files = (
            None
            if spec in ("random", "bundled") or is_fixed_spec(spec)
            else _bundle_files(Path(self.spec))
        )
        self.policy_is_dir = Path(self.spec).is_dir()
        self.seed, self.max_steps, self.trust = seed, max_steps, trust
        self.what = f"make the real env of world {world_dir.name} or load the policy {spec!r}"

    def setup(self) -> dict[str, Any]:
        world = _unpack(self.world_files, "world")
        spec = self.spec
        if self.policy_files is not None:
            folder = _unpack(self.policy_files, "policy")
            spec = str(folder if self.policy_is_dir else folder / Path(self.spec).name)
        return _real_worker_state(str(world), spec, self.seed, self.max_steps, self.trust)

    def episode(self, state: dict[str, Any], index: int) -> tuple[float, int]:
        return _state_episode(state, index)

    def close(self, state: dict[str, Any]) -> None:
        state["env"].close()
