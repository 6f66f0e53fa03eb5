"""`dreamgym demo`: the whole idea in a few minutes, on the bundled worlds.

For each bundled world: train a fresh CMA-ES controller inside the dream for a few generations,
evaluate it and the controller shipped with the world in the dream *and* in the real env, print
the dream-vs-real table, and write a side-by-side real | dream video and the gap plot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
from PIL import Image, ImageDraw

from dreamgym.agents.cmaes import ControllerConfig, train_controller
from dreamgym.envs.dream import DreamVectorEnv
from dreamgym.envs.settings import DreamSettings
from dreamgym.evaluation import (
    evaluate_dream,
    evaluate_real,
    gap_report,
    gap_table,
    write_gap_files,
)
from dreamgym.options import DreamRunOptions, RealRunOptions
from dreamgym.policies import load_bundled_controller, load_policy
from dreamgym.utils.files import atomic_write_bytes, atomic_write_json
from dreamgym.utils.options import deprecated_aliases, option
from dreamgym.utils.threads import torch_threads
from dreamgym.world import World, WorldLoadError
from dreamgym.wrappers import make_real

VIDEO_SCALE = 4
"""64×64 panels are written at 256×256."""


@deprecated_aliases
@dataclass(kw_only=True)
class DemoConfig(RealRunOptions, DreamRunOptions):
    """Options of `dreamgym demo`: the dream's (for every world) and the real runs', and these."""

    out: str = option("dreamgym-demo", "output folder (video, plots, tables)")
    worlds: str = field(
        default="carracing,doom_takecover",
        metadata={"help": "comma-separated bundled world names (or directories) to demo"},
    )
    generations: int = option(8, "CMA-ES generations of the fresh controller")
    popsize: int = option(32, "CMA-ES population size")
    rollouts: int = option(4, "dream rollouts per candidate")
    mean_rollouts: int = option(
        16, "dream rollouts that re-score the CMA-ES mean (fewer than `controller`'s 64: speed)"
    )
    eval_mean_every: int = option(4, "re-score the CMA-ES mean every K generations")
    episodes: int = option(4, "episodes per policy in the dream and in reality")
    video_steps: int = option(300, "steps in the real | dream video")
    seed: int = option(0, "seed of training and evaluation")


def _label(img: np.ndarray, text: str) -> np.ndarray:
    pil = Image.fromarray(img)
    ImageDraw.Draw(pil).text((4, 2), text, fill=(255, 255, 0))
    return np.asarray(pil)


def _upscale(frame: np.ndarray, scale: int = VIDEO_SCALE) -> np.ndarray:
    return np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)


def side_by_side_frames(
    world: Any, policy_spec: str, steps: int, seed: int, settings: DreamSettings | None = None
) -> list[np.ndarray]:
    """Real frames | what V sees | a dream episode of the same policy, one row per step; the
    dream with `settings` (on the CPU: one frame a step)."""
    policy = load_policy(policy_spec, world, seed=seed)
    settings = (settings or DreamSettings()).replace(obs_mode=policy.obs_mode, device="cpu")
    with torch_threads(1):  # one frame a step: threads only spin-wait (see evaluate_real)
        real = make_real(world, obs_mode=policy.obs_mode)
        dream = DreamVectorEnv(world, num_envs=1, settings=settings)
        try:
            return _side_by_side(real, dream, policy, steps, seed)
        finally:
            real.close()


def _side_by_side(
    real: Any, dream: DreamVectorEnv, policy: Any, steps: int, seed: int
) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    obs_r, _ = real.reset(seed=seed)
    obs_d, _ = dream.reset(seed=seed)
    real_done = False
    ret_r = ret_d = 0.0
    for t in range(steps):
        real_img = (
            real.last_frame if real.last_frame is not None else np.zeros((64, 64, 3), np.uint8)
        )
        recon = real.reconstruction()
        dream_img = dream.render_tensors()[0].cpu().numpy()
        row = np.concatenate(
            [
                _label(_upscale(real_img), f"real  t={t} R={ret_r:.0f}"),
                _label(_upscale(recon), "real as V sees it"),
                _label(_upscale(dream_img), f"dream R={ret_d:.0f}"),
            ],
            axis=1,
        )
        frames.append(row)
        if not real_done:
            a = policy.act(obs_r[None])[0]
            obs_r, r, term, trunc, _ = real.step(a)
            ret_r += float(r)
            real_done = term or trunc
        a_d = policy.act(obs_d)
        obs_d, r_d, term_d, trunc_d, _ = dream.step(a_d)
        ret_d += float(r_d[0])
        if real_done and (term_d[0] or trunc_d[0]):
            break
    return frames


def write_video(frames: list[np.ndarray], path: Path, fps: int = 25) -> Path:
    """mp4 when imageio-ffmpeg is installed, else an animated GIF next to it."""
    try:
        import imageio_ffmpeg  # noqa: F401

        target = path.with_suffix(".mp4")
        imageio.mimsave(target, frames, fps=fps, macro_block_size=1)
    except ImportError:
        target = path.with_suffix(".gif")
        imageio.mimsave(target, frames[::2], duration=2.0 / fps, loop=0)
    return target


def _quiet(message: str) -> None:
    """The default `log`: the library prints nothing (the `dreamgym demo` command prints)."""


def run_demo(config: DemoConfig, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train, evaluate, compare, and write the artifacts; returns the per-world reports.

    `log` receives the progress messages (by default nothing is printed); `summary_table`
    turns the returned reports into the final table.
    """
    log = log or _quiet
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    reports: dict[str, Any] = {}
    tables: list[str] = []
    for name in [w.strip() for w in config.worlds.split(",") if w.strip()]:
        try:
            world = World.load(name)
        except WorldLoadError as e:
            log(f"skipping {name}: {e}")
            continue
        reports[world.name] = _demo_world(world, config, out / world.name, tables, log)
    if not reports:
        raise ValueError(
            "no bundled world could be loaded; reinstall dreamgym or pass --worlds with a directory"
        )
    atomic_write_bytes(
        out / "summary.md",
        ("\n\n".join(tables) + "\n## Summary\n" + summary_table(reports) + "\n").encode(),
    )
    atomic_write_json(out / "summary.json", {"worlds": reports, "seconds": time.time() - started})
    return reports


def _demo_world(
    world: World, config: DemoConfig, wdir: Path, tables: list[str], log: Callable[[str], None]
) -> dict[str, Any]:
    """One world: a fresh controller, the gap of each policy, and the real | dream video."""
    log(f"\n=== {world.name}: a world learned from {world.env_id} ===")
    log(f"training a fresh CMA-ES controller in the dream ({config.generations} generations)")
    result = train_controller(
        ControllerConfig(
            world=str(world.path),
            out=str(wdir / "fresh_controller"),
            generations=config.generations,
            popsize=config.popsize,
            rollouts=config.rollouts,
            mean_rollouts=config.mean_rollouts,
            eval_mean_every=config.eval_mean_every,
            seed=config.seed,
            **config.dream_values(),
        )
    )
    policies = {"fresh (demo)": str(result.controller)}
    try:
        load_bundled_controller(world)
        policies["shipped"] = "bundled"
    except (FileNotFoundError, ValueError):
        log(f"{world.name} ships no controller; comparing the fresh one with random")
    policies["random"] = "random"
    world_reports = {}
    for label, spec in policies.items():
        log(
            f"evaluating {label} in the dream and in {world.env_id} ({config.episodes} episodes each)"
        )
        dream = evaluate_dream(
            world, spec, config.episodes, config.seed, settings=config.dream_settings()
        )
        real = evaluate_real(
            world,
            spec,
            config.episodes,
            config.seed,
            max_steps=config.max_steps,
            workers=config.workers,
            ray_address=config.ray,
        )
        temperature = config.dream_record(world)["temperature"]
        rep = gap_report(world, spec, dream, real, seed=config.seed, temperature=temperature)
        write_gap_files(rep, wdir / label.split()[0])
        world_reports[label] = rep
        tables.append(f"{gap_table(rep)}\n")
    video_policy = policies.get("shipped", policies["fresh (demo)"])
    frames = side_by_side_frames(
        world, video_policy, config.video_steps, config.seed, config.dream_settings()
    )
    video = write_video(frames, wdir / "real_vs_dream")
    log(f"wrote {video}")
    report: dict[str, Any] = {
        k: {"dream": v["dream"]["mean"], "real": v["real"]["mean"]}
        for k, v in world_reports.items()
    }
    report["video"] = str(video)
    return report


def summary_table(reports: dict[str, Any]) -> str:
    """The per-world reports of `run_demo` as one Markdown table of dream and real means."""
    summary = ["| world | policy | dream mean | real mean |", "|---|---|---|---|"]
    for wname, rep in reports.items():
        for label, v in rep.items():
            if isinstance(v, dict):
                summary.append(f"| {wname} | {label} | {v['dream']:.1f} | {v['real']:.1f} |")
    return "\n".join(summary)
