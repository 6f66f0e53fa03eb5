"""Returns of a policy in the dream and in reality, and the gap between them.

- `load_policy(spec, world)`: "random", "bundled" (the controller a world ships), a controller
  file (`dreamgym controller`), or an SB3 agent (`dreamgym sb3`), checked against the world.
- `evaluate_dream`: N dream episodes as ONE batched `DreamVectorEnv` (each env's first episode is
  one sample).
- `evaluate_real`: N real episodes seen through V and M (`wrappers.WorldModelObservation`), in
  parallel worker processes that load the world and the policy themselves from their paths.
- `gap`: the same policy in both, with bootstrap confidence intervals, a table, CSV/JSON and a plot.
  A policy that scores much better in the dream than in reality has probably found a flaw of the
  model to exploit — Ha & Schmidhuber (2018, §4.5) saw exactly that in Doom, and countered it by
  training at a higher temperature τ.
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing as mp
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from dreamgym.policies import Policy, RandomPolicy
from dreamgym.world import World, atomic_write_bytes, atomic_write_json, resolve_world_path

MODES = ("dream", "real")
BOOTSTRAP_RESAMPLES = 10_000
GAP_FILES = ("gap.csv", "gap.json", "gap.png")
POLICY_SPECS_HELP = (
    "random | bundled | a controller (directory, .safetensors or .json) | an SB3 agent (.zip)"
)


# --------------------------------------------------------------------------------------------
# Policies


def load_policy(spec: str, world: World | str | os.PathLike, seed: int | None = None) -> Policy:
    """A `Policy` from a spec string, checked against `world` (clear errors on any mismatch).

    `spec`: "random" (uniform actions, seeded with `seed`), "bundled" (the controller shipped in
    the world bundle), a controller (its directory, `.safetensors` or `.json`), or an SB3 agent
    (`AGENT.zip`, `AGENT.json` or `AGENT`). The returned object carries `spec`, so worker
    processes can rebuild it.
    """
    from dreamgym.controllers import ControllerPolicy, LinearController, load_bundled_controller

    if not isinstance(world, World):
        world = World.load(world)
    policy: Any
    if spec == "random":
        policy = RandomPolicy(world.action_space, seed=seed, obs_mode="zh")
    elif spec == "bundled":
        policy = ControllerPolicy(load_bundled_controller(world))
    else:
        kind, path = _policy_file(spec)
        if kind == "controller":
            policy = ControllerPolicy(LinearController.load(path, world))
        else:
            from dreamgym.sb3 import load_sb3_policy

            policy = load_sb3_policy(path, world)
        check_policy_fits(policy, world, spec)
    policy.spec = spec
    return policy


class FramePolicyFactory:
    """Collect real data with a trained policy: `dreamgym collect --policy FILE --world W`.

    A picklable `factory(env_id, action_space) -> FramePolicy` for `data.collect` (the paper's
    iterative procedure, Ha & Schmidhuber 2018 §5: collect again with the current controller,
    retrain M). Each worker loads the world and the policy itself; the frame policy encodes every
    frame with V and tracks h with M (`wrappers.LatentTracker`), exactly as in the real-env
    evaluation. `world` defaults to the world the policy file records.
    """

    def __init__(self, spec: str, world: str | os.PathLike | None = None) -> None:
        self.spec = str(spec)
        self.world = str(world) if world is not None else _recorded_world(self.spec)
        self.name = f"{self.spec} (world {self.world})"
        load_policy(self.spec, self.world)  # fail now, in the parent, on any mismatch

    def __call__(self, env_id: str, action_space: gym.Space) -> _FramePolicy:
        if mp.parent_process() is not None:
            # A collection worker: one frame per step, so extra torch threads only spin-wait beside
            # the env. Measured with 2 workers on 2 cores: 16 steps/s per worker at torch's
            # default, ~200 at 1. In-process collection leaves the caller's setting alone.
            torch.set_num_threads(1)
        world = World.load(self.world)
        if world.env_id != env_id:
            raise ValueError(
                f"policy {self.spec!r} acts through world {self.world!r}, learned from "
                f"{world.env_id}, but the collection env is {env_id}; pass --world for {env_id}"
            )
        return _FramePolicy(load_policy(self.spec, world), world)


class _FramePolicy:
    """A `Policy` over [z, h] turned into a `data.FramePolicy` over preprocessed frames."""

    def __init__(self, policy: Policy, world: World) -> None:
        from dreamgym.wrappers import LatentTracker

        self.policy = policy
        self.tracker = LatentTracker(world)

    def reset(self, seed: int) -> None:
        self.tracker.reset(seed)
        if hasattr(self.policy, "rng"):
            self.policy.rng = np.random.default_rng(seed)

    def act(self, frame: np.ndarray) -> Any:
        self.tracker.see(frame)
        action = np.asarray(self.policy.act(self.tracker.observation(self.policy.obs_mode)[None]))[
            0
        ]
        self.tracker.advance(self.tracker.encode_action(action))
        return action


def _recorded_world(spec: str) -> str:
    """The world a policy file says it was trained in (its sidecar JSON), for --world's default."""
    kind, path = _policy_file(spec)
    sidecar = path.with_suffix(".json") if path.suffix in (".zip", ".safetensors") else path
    if path.is_dir():
        from dreamgym.controllers import controller_paths

        sidecar = controller_paths(path)[1]
    try:
        world = json.loads(sidecar.read_text()).get("world", {})
    except (OSError, json.JSONDecodeError):
        world = {}
    found = world.get("path") or world.get("name")
    if not found:
        raise ValueError(
            f"policy {spec!r} does not record its world ({sidecar}); pass --world DIR, the world "
            "whose V and M it acts through"
        )
    return str(found)


def _policy_file(spec: str) -> tuple[str, Path]:
    """("controller" | "sb3", path) for a policy file spec."""
    from dreamgym.controllers import CONTROLLER_FORMAT, CONTROLLER_WEIGHTS

    p = Path(spec).expanduser()
    if p.suffix == ".zip":
        return "sb3", p
    if p.suffix == ".safetensors":
        return "controller", p
    if p.suffix == ".json" and p.is_file():
        try:
            fmt = json.loads(p.read_text()).get("format")
        except json.JSONDecodeError as e:
            raise ValueError(f"policy {spec!r}: {p} is not valid JSON ({e})") from e
        return ("controller", p) if fmt == CONTROLLER_FORMAT else ("sb3", p.with_suffix(".zip"))
    if p.is_dir() and (p / CONTROLLER_WEIGHTS).is_file():
        return "controller", p
    if p.with_name(p.name + ".zip").is_file():
        return "sb3", p.with_name(p.name + ".zip")
    raise FileNotFoundError(
        f"policy {spec!r} is not 'random' or 'bundled' and no policy file is there; pass "
        f"{POLICY_SPECS_HELP}"
    )


def check_policy_fits(policy: Policy, world: World, spec: str = "policy") -> None:
    """Run the policy on two blank observations of the world and check the actions it returns."""
    from dreamgym.envs.dream import OBS_MODES, observation_space_for

    if getattr(policy, "obs_mode", None) not in OBS_MODES:
        raise ValueError(
            f"{spec}: obs_mode {getattr(policy, 'obs_mode', None)!r} is not one of {OBS_MODES}"
        )
    space = observation_space_for(world, policy.obs_mode)
    obs = np.zeros((2, *space.shape), dtype=space.dtype)
    actions = np.asarray(policy.act(obs))
    action_space = world.action_space
    if actions.shape != (2, *action_space.shape) or not all(a in action_space for a in actions):
        raise ValueError(
            f"{spec}: on world {world.name!r} it returned actions {actions.dtype}"
            f"{tuple(actions.shape)} for 2 observations, which do not fit {action_space}"
        )


# --------------------------------------------------------------------------------------------
# Dream


def evaluate_dream(
    world: World | str | os.PathLike,
    policy: Policy | str,
    episodes: int,
    seed: int,
    temperature: float | None = None,
    max_steps: int | None = None,
    device: str | torch.device = "auto",
) -> np.ndarray:
    """Returns (float64, `episodes`) of the policy in the dream, all episodes in one batch.

    Every env's first episode is one sample (autoreset off; reward stops counting at an env's
    first termination or truncation). The same seed gives the same returns (on CPU).
    """
    from dreamgym.envs.dream import DreamVectorEnv

    if int(episodes) < 1:
        raise ValueError(f"episodes must be ≥ 1, got {episodes}")
    if isinstance(policy, str):
        policy = load_policy(policy, world, seed=seed)
    env = DreamVectorEnv(
        world,
        num_envs=int(episodes),
        obs_mode=policy.obs_mode,
        temperature=temperature,
        device=device,
        max_episode_steps=max_steps,
        autoreset_mode=AutoresetMode.DISABLED,
    )
    if env.max_episode_steps is None:
        raise ValueError(
            f"world {env.world.name!r} has no max_episode_steps; pass max_steps so that dream "
            "episodes end"
        )
    obs = env.reset_tensors(seed=seed)
    total = torch.zeros(env.num_envs, dtype=torch.float64, device=env.device)
    alive = torch.ones(env.num_envs, dtype=torch.bool, device=env.device)
    for _ in range(env.max_episode_steps):
        actions = np.asarray(policy.act(obs.cpu().numpy()))
        step = env.step_tensors(torch.as_tensor(actions, device=env.device))
        total += torch.where(alive, step.reward, 0.0)
        alive &= ~step.done
        if not bool(alive.any()):
            break
        obs = step.obs
    return total.cpu().numpy()


# --------------------------------------------------------------------------------------------
# Reality

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
    torch.set_num_threads(1)
    from dreamgym.wrappers import make_real

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
    from tqdm.auto import tqdm

    from dreamgym.wrappers import make_real

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
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                for i in range(episodes):
                    p = _real_policy(spec, loaded_world, seed, i, policy) if spec else policy
                    returns[i] = _run_real_episode(env, p, seed + i)[0]
                    bar.update(1)
            finally:
                torch.set_num_threads(threads)
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
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

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
    if spec in ("random", "bundled"):
        return spec
    return str(Path(spec).expanduser().resolve())


# --------------------------------------------------------------------------------------------
# Statistics


def bootstrap_ci(
    values: np.ndarray, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (seeded, so reports reproduce)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // x.size)
    for s in range(0, resamples, chunk):
        k = min(chunk, resamples - s)
        means[s : s + k] = x[rng.integers(0, x.size, (k, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def summarize(
    returns: np.ndarray, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES
) -> dict[str, Any]:
    r = np.asarray(returns, dtype=np.float64)
    return {
        "mean": float(r.mean()),
        "std": float(r.std()),
        "ci95": list(bootstrap_ci(r, seed, resamples)),
        "returns": r.tolist(),
    }


# --------------------------------------------------------------------------------------------
# `dreamgym evaluate`


@dataclass
class EvaluateConfig:
    """Options of `dreamgym evaluate`."""

    world: str = field(metadata={"help": "world: a bundled name or a bundle directory"})
    policy: str = field(metadata={"help": POLICY_SPECS_HELP})
    mode: str = field(
        default="dream",
        metadata={
            "help": "where to run the episodes (also --dream / --real)",
            "choices": MODES,
            "choice_flags": True,
        },
    )
    episodes: int = field(default=16, metadata={"help": "episodes to run"})
    seed: int = field(default=0, metadata={"help": "seed (real: episode i uses seed + i)"})
    json: bool = field(default=False, metadata={"help": "print the result as JSON"})
    temperature: float | None = field(
        default=None, metadata={"help": "dream temperature τ (default: the world's)"}
    )
    max_steps: int | None = field(
        default=None, metadata={"help": "episode cap (default: the world's / the env's limit)"}
    )
    workers: int | None = field(
        default=None, metadata={"help": "real-env worker processes (default: CPU count)"}
    )
    device: str = field(default="auto", metadata={"help": "device of the dream: auto, cpu or cuda"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar (real episodes)"})


def evaluate_from_config(config: EvaluateConfig) -> dict[str, Any]:
    """Run `dreamgym evaluate`; prints a summary (or JSON) and returns it as a dict."""
    if config.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {config.mode!r}")
    world = World.load(config.world)
    if config.mode == "dream":
        returns = evaluate_dream(
            world,
            load_policy(config.policy, world, seed=config.seed),
            config.episodes,
            config.seed,
            temperature=config.temperature,
            max_steps=config.max_steps,
            device=config.device,
        )
    else:
        returns = evaluate_real(
            world,
            config.policy,
            config.episodes,
            config.seed,
            workers=config.workers,
            max_steps=config.max_steps,
            progress=config.progress and not config.json,
        )
    result = {
        "world": world.name,
        "policy": config.policy,
        "mode": config.mode,
        "episodes": config.episodes,
        "seed": config.seed,
        **summarize(returns, config.seed),
    }
    if config.json:
        from dreamgym.cli import print_json

        print_json(result)
    else:
        lo, hi = result["ci95"]
        print(
            f"{config.policy} in the {config.mode} of {world.name}: {result['mean']:.2f} ± "
            f"{result['std']:.2f} over {config.episodes} episodes (95% CI [{lo:.2f}, {hi:.2f}])"
        )
    return result


# --------------------------------------------------------------------------------------------
# `dreamgym gap`


@dataclass
class GapConfig:
    """Options of `dreamgym gap`."""

    world: str = field(metadata={"help": "world: a bundled name or a bundle directory"})
    policy: str = field(metadata={"help": POLICY_SPECS_HELP})
    episodes: int = field(
        default=16, metadata={"help": "episodes in the dream and in reality each"}
    )
    temperature: float | None = field(
        default=None, metadata={"help": "dream temperature τ (default: the world's)"}
    )
    out: str | None = field(
        default=None, metadata={"help": "directory for gap.csv, gap.json and gap.png"}
    )
    seed: int = field(default=0, metadata={"help": "seed of both evaluations and the bootstrap"})
    margin: float = field(
        default=0.2,
        metadata={"help": "warn when dream mean − real mean exceeds this fraction of |real mean|"},
    )
    max_steps: int | None = field(
        default=None, metadata={"help": "episode cap in both (default: the world's / env's limit)"}
    )
    workers: int | None = field(
        default=None, metadata={"help": "real-env worker processes (default: CPU count)"}
    )
    device: str = field(default="auto", metadata={"help": "device of the dream: auto, cpu or cuda"})
    resamples: int = field(default=BOOTSTRAP_RESAMPLES, metadata={"help": "bootstrap resamples"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar (real episodes)"})


def gap(config: GapConfig) -> dict[str, Any]:
    """The same policy in the dream and in reality: table, warning, and optional files.

    Returns the report dict (also written as gap.json with --out). `exploit_warning` is set when
    the dream mean exceeds the real mean by more than `margin` × |real mean|.
    """
    world = World.load(config.world)
    policy = load_policy(config.policy, world, seed=config.seed)
    dream = evaluate_dream(
        world,
        policy,
        config.episodes,
        config.seed,
        temperature=config.temperature,
        max_steps=config.max_steps,
        device=config.device,
    )
    real = evaluate_real(
        world,
        config.policy,
        config.episodes,
        config.seed,
        workers=config.workers,
        max_steps=config.max_steps,
        progress=config.progress,
    )
    report = gap_report(
        world,
        config.policy,
        dream,
        real,
        seed=config.seed,
        temperature=config.temperature if config.temperature is not None else world.temperature,
        margin=config.margin,
        resamples=config.resamples,
    )
    print(gap_table(report))
    if report["exploit_warning"]:
        print(report["warning"], file=sys.stderr)
    if config.out is not None:
        write_gap_files(report, Path(config.out))
        print(f"wrote {', '.join(GAP_FILES)} to {config.out}")
    return report


def gap_report(
    world: World,
    policy: str,
    dream: np.ndarray,
    real: np.ndarray,
    seed: int = 0,
    temperature: float | None = None,
    margin: float = 0.2,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> dict[str, Any]:
    """Statistics of dream vs real returns (means, std, bootstrap CIs, difference, ratio)."""
    d, r = summarize(dream, seed, resamples), summarize(real, seed + 1, resamples)
    rng = np.random.default_rng(seed + 2)
    dream_a, real_a = np.asarray(dream, np.float64), np.asarray(real, np.float64)
    k = min(resamples, 2000)  # resampled difference of means (the two samples are independent)
    diffs = dream_a[rng.integers(0, dream_a.size, (k, dream_a.size))].mean(axis=1) - real_a[
        rng.integers(0, real_a.size, (k, real_a.size))
    ].mean(axis=1)
    diff = d["mean"] - r["mean"]
    ratio = d["mean"] / r["mean"] if r["mean"] != 0 else None
    exploit = diff > margin * abs(r["mean"])
    report: dict[str, Any] = {
        "world": world.name,
        "env_id": world.env_id,
        "policy": policy,
        "episodes": int(dream_a.size),
        "seed": seed,
        "temperature": temperature,
        "dream": d,
        "real": r,
        "difference": {
            "dream_minus_real": diff,
            "ci95": [float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))],
        },
        "ratio": ratio,
        "margin": margin,
        "exploit_warning": bool(exploit),
    }
    if exploit:
        report["warning"] = (
            f"WARNING: the dream return ({d['mean']:.2f}) exceeds the real one ({r['mean']:.2f}) "
            f"by more than {margin:.0%} of |real|: the agent may be exploiting the model "
            "(Ha & Schmidhuber 2018, §4.5 saw this in Doom). Train at a higher temperature τ, or "
            "collect data with this policy and retrain M."
        )
    return report


def gap_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    d, r = report["dream"], report["real"]
    tau = report.get("temperature")
    ratio = "n/a (real mean is 0)" if report["ratio"] is None else f"{report['ratio']:.3f}"
    diff = report["difference"]
    lines = [
        f"### `{report['policy']}` in world `{report['world']}` ({report['env_id']})",
        "",
        f"| | dream (τ={tau}) | real |",
        "|---|---|---|",
        f"| episodes | {len(d['returns'])} | {len(r['returns'])} |",
        f"| mean ± std | {d['mean']:.2f} ± {d['std']:.2f} | {r['mean']:.2f} ± {r['std']:.2f} |",
        f"| 95% CI (bootstrap) | [{d['ci95'][0]:.2f}, {d['ci95'][1]:.2f}] | "
        f"[{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] |",
        "",
        f"dream − real: {diff['dream_minus_real']:.2f} (95% CI [{diff['ci95'][0]:.2f}, "
        f"{diff['ci95'][1]:.2f}]); dream / real: {ratio}",
    ]
    return "\n".join(lines)


def write_gap_files(report: dict[str, Any], out: Path) -> None:
    """gap.csv (per episode), gap.json (the report) and gap.png (both distributions), atomically."""
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["episode", "dream_return", "real_return"])
    for i, (d, r) in enumerate(
        zip(report["dream"]["returns"], report["real"]["returns"], strict=True)
    ):
        writer.writerow([i, repr(d), repr(r)])
    atomic_write_bytes(out / "gap.csv", buf.getvalue().encode())
    atomic_write_json(out / "gap.json", report)
    atomic_write_bytes(out / "gap.png", _gap_png(report))


def _gap_png(report: dict[str, Any]) -> bytes:
    """Both return distributions (jittered points, box plots, means): PNG bytes, no GUI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    data = [report["dream"]["returns"], report["real"]["returns"]]
    labels = [f"dream (τ={report.get('temperature')})", "real"]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks([1, 2], labels)
    for k, (values, color) in enumerate(zip(data, ("tab:purple", "tab:green"), strict=True)):
        x = k + 1 + rng.uniform(-0.12, 0.12, len(values))
        ax.scatter(x, values, s=14, alpha=0.7, color=color)
        ax.hlines(np.mean(values), k + 0.75, k + 1.25, colors=color, linestyles="--")
    ax.set_ylabel("episode return")
    title = f"{report['policy']} in {report['world']}: dream vs real"
    if report["exploit_warning"]:
        title += "\n(dream ≫ real: model exploitation?)"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
