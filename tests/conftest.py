"""Shared fixtures: tiny worlds built in temporary directories, so every test is fast and hermetic.

A tiny world has the real action space of its env (CarRacing's Box or TakeCover's Discrete(3)) but
a small M (latent 6, hidden 24, K 3), so hundreds of envs step in microseconds. V keeps its fixed
paper architecture (its size does not depend on the latent).

Fixtures and helpers others can reuse:
- `box_world_dir`, `discrete_world_dir`: bundles built once per test run (read-only: copy first);
- `make_tiny_world(tmp_path, discrete, **kw) -> Path`: a fresh bundle with options (fixture);
- `build_tiny_world(...)` / `set_done_logit(world_or_env, logit)`: the same as plain functions;
- `make_member(world_dir, tmp_path, spread, seed)`: an ensemble member of a saved world.
"""

from __future__ import annotations

import os

# Headless pygame for render_mode="human" (check_env makes one); set before pygame is imported.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import dreamgym  # noqa: E402, F401  (registers the ids)
from dreamgym.models.mdnrnn import MDNRNNConfig  # noqa: E402
from dreamgym.models.rssm import RSSMConfig  # noqa: E402
from dreamgym.models.vae import VAEConfig  # noqa: E402
from dreamgym.preprocessing import FramePreprocessing  # noqa: E402
from dreamgym.world import World  # noqa: E402

# One thread: the test box has 2 loaded cores, and one thread keeps float results reproducible.
torch.set_num_threads(1)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Name the machine first (shown even with -q): float digits and bf16 speed depend on it."""
    from dreamgym.utils.machine import cpu_line, torch_line

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"{cpu_line()}; {torch_line()}")


TINY_LATENT = 6
TINY_HIDDEN = 24
TINY_MIXTURES = 3
TINY_MAX_STEPS = 50
TINY_INITIAL = 4
"""Number of initial latents (random frames encoded by V) in a tiny world's bank."""

BOX_ACTIONS = gym.spaces.Box(
    np.array([-1.0, 0.0, 0.0], dtype=np.float32), np.array([1.0, 1.0, 1.0], dtype=np.float32)
)
"""CarRacing-v3's action space: steer, gas, brake."""
DISCRETE_ACTIONS = gym.spaces.Discrete(3)
"""VizdoomTakeCover-v1's action space: noop, left, right."""


def set_done_logit(target: World | Any, logit: float) -> None:
    """Make M's done head output `logit` for every state (its weights zeroed, its bias = logit).

    `target` is a `World` or anything with a `.world` (DreamEnv, DreamVectorEnv) or
    `.unwrapped.world`. The head's last output unit is the done logit (the one before: reward),
    so e.g. +30 ends every episode at its first step and -30 never ends one.
    """
    world = target if isinstance(target, World) else getattr(target, "world", None)
    if world is None:
        world = target.unwrapped.world
    head = world.mdnrnn.head
    with torch.no_grad():
        head.weight[-1].zero_()
        head.bias[-1] = float(logit)


def build_tiny_world(
    discrete: bool,
    latent: int = TINY_LATENT,
    hidden: int = TINY_HIDDEN,
    mixtures: int = TINY_MIXTURES,
    max_episode_steps: int | None = TINY_MAX_STEPS,
    n_initial: int = TINY_INITIAL,
    done_logit: float | None = None,
    initial_logvar: float | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    name: str | None = None,
    mixture: str = "per_dim",
    rssm: str | None = None,
) -> World:
    """A tiny untrained world in memory (see `make_tiny_world` for the options); `rssm` (a
    stochastic-state kind, "gaussian" or "categorical") makes its M a tiny RSSM instead."""
    space = DISCRETE_ACTIONS if discrete else BOX_ACTIONS
    env_id = "VizdoomTakeCover-v1" if discrete else "CarRacing-v3"
    action_dim = 3
    frames = np.random.default_rng(seed).integers(0, 256, (n_initial, 64, 64, 3), dtype=np.uint8)
    world = World.build(
        env_id,
        space,
        FramePreprocessing(),
        vae_config=VAEConfig(latent_dim=latent),
        rnn_config=(
            MDNRNNConfig(
                latent_dim=latent,
                action_dim=action_dim,
                hidden_dim=hidden,
                n_mixtures=mixtures,
                mixture=mixture,
            )
            if rssm is None
            else RSSMConfig(
                latent_dim=latent,
                action_dim=action_dim,
                deter_dim=hidden,
                hidden_dim=hidden,
                stoch=rssm,
                stoch_dim=4,
                groups=3,
                classes=4,
            )  # fmt: skip
        ),
        max_episode_steps=max_episode_steps,
        temperature=temperature,
        initial_frames=frames,
        seed=seed,
        name=name or ("tiny-discrete" if discrete else "tiny-box"),
    )
    if done_logit is not None:
        set_done_logit(world, done_logit)
    if initial_logvar is not None:
        world.initial_logvar = torch.full_like(world.initial_logvar, float(initial_logvar))
    return world


def make_member(world_dir: Path, tmp_path: Path, spread: float = 0.2, seed: int = 1) -> Path:
    """An ensemble member of a saved world: a copy whose M's weights are moved by
    `spread` × N(0, 1) noise (seeded), with the same V."""
    world = World.load(world_dir)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in world.mdnrnn.parameters():
            p.add_(spread * torch.randn(p.shape, generator=gen))
    return world.save(Path(tmp_path) / f"member-{spread}-{seed}")


def _make_tiny_world(tmp_path: Path, discrete: bool, **kw: Any) -> Path:
    """Build a tiny world and save it under `tmp_path`; returns the bundle directory.

    Options: latent, hidden, mixtures, max_episode_steps, n_initial, done_logit (constant done
    logit, see `set_done_logit`), initial_logvar (e.g. -60: resets land exactly on the bank's
    means), temperature, seed, name, mixture ("per_dim" or "shared"), subdir (folder name under tmp_path), dtype ("float16").
    """
    subdir = kw.pop("subdir", None)
    dtype = kw.pop("dtype", "float32")
    world = build_tiny_world(discrete, **kw)
    out = Path(tmp_path) / (subdir or ("discrete_world" if discrete else "box_world"))
    return world.save(out, dtype=dtype)


@pytest.fixture(scope="session", autouse=True)
def agent_key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dreamgym's config folder (the agent-signing key) in a temp dir: tests never touch $HOME.

    Set in the environment, so worker processes and local Ray workers see the same key.
    """
    folder = tmp_path_factory.mktemp("config") / "dreamgym"
    os.environ["DREAMGYM_CONFIG_DIR"] = str(folder)
    return folder


@pytest.fixture
def make_tiny_world() -> Callable[..., Path]:
    """`make_tiny_world(tmp_path, discrete, **kw) -> Path`: a fresh tiny bundle on disk."""
    return _make_tiny_world


@pytest.fixture(scope="session")
def box_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Box-action (CarRacing-like) world, shared by the whole run: do not modify it."""
    return _make_tiny_world(tmp_path_factory.mktemp("worlds"), discrete=False)


@pytest.fixture(scope="session")
def discrete_world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Discrete(3)-action (TakeCover-like) world, shared by the whole run: do not modify it."""
    return _make_tiny_world(tmp_path_factory.mktemp("worlds"), discrete=True)


@pytest.fixture(params=["box", "discrete"])
def world_dir(
    request: pytest.FixtureRequest, box_world_dir: Path, discrete_world_dir: Path
) -> Path:
    """Both tiny worlds, one per test parameter."""
    return box_world_dir if request.param == "box" else discrete_world_dir
