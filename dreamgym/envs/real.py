"""Making the real environments a world is learned from, with optional dependencies checked.

Imports only gymnasium: `import dreamgym` reads the step limits below for its registrations.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
from gymnasium.error import DependencyNotInstalled

# The paper capped TakeCover episodes at 2,100 steps; the scenario itself has no limit.
DEFAULT_MAX_EPISODE_STEPS: dict[str, int] = {"VizdoomTakeCover-v1": 2100}
VIZDOOM_WORK_DIR = "_vizdoom"
"""ViZDoom writes its config into ./_vizdoom/ and creates the folder when it is missing. Two
worker processes starting at once in a fresh directory race on that mkdir, and the loser dies
("Failed to create ./_vizdoom/ directory: File exists", then a segfault). So the folder is made
first, race-free, before any game starts."""


def ensure_registered(env_id: str) -> None:
    """Import the package that registers `env_id` (ViZDoom's ids appear only on import)."""
    if env_id.startswith("Vizdoom"):
        try:
            import vizdoom.gymnasium_wrapper  # noqa: F401
        except ImportError as e:  # pragma: no cover - depends on the install
            raise DependencyNotInstalled(
                f"{env_id} needs ViZDoom: pip install 'dreamgym[doom]' (or pip install vizdoom)"
            ) from e


def make_real_env(env_id: str, max_episode_steps: int | None = None, **kwargs: Any) -> gym.Env:
    """gym.make with the env's package imported and the paper's step cap where the env has none."""
    if env_id.startswith("Vizdoom"):
        os.makedirs(VIZDOOM_WORK_DIR, exist_ok=True)
    if max_episode_steps is None:
        max_episode_steps = DEFAULT_MAX_EPISODE_STEPS.get(env_id)
    try:
        ensure_registered(env_id)
        return gym.make(env_id, max_episode_steps=max_episode_steps, **kwargs)
    except gym.error.UnregisteredEnv as e:
        raise UnknownEnvError(
            f"no real env {env_id!r}: {e} Is the package that registers it installed and "
            "imported? (e.g. gymnasium[box2d] for CarRacing-v3, vizdoom for VizdoomTakeCover-v1)"
        ) from None
    except ModuleNotFoundError as e:  # "module:Env-v0", the module missing
        raise UnknownEnvError(f"no real env {env_id!r}: {e}") from None
    except gym.error.DependencyNotInstalled as e:
        raise MissingEnvDependencyError(f"cannot make the real env {env_id!r}: {e}") from None


class UnknownEnvError(gym.error.NameNotFound, ValueError):
    """An env id Gymnasium does not know (a ValueError: one line from the command line)."""


class MissingEnvDependencyError(gym.error.DependencyNotInstalled, ValueError):
    """The env's package is not installed (a ValueError: one line from the command line)."""


def default_step_limit(env_id: str) -> int | None:
    """The step limit `make_real_env(env_id)` applies: the paper's cap where the env has none,
    else the one registered with Gymnasium (None when the id is not registered, e.g. ViZDoom's
    before its package is imported)."""
    if env_id in DEFAULT_MAX_EPISODE_STEPS:
        return DEFAULT_MAX_EPISODE_STEPS[env_id]
    spec = gym.envs.registry.get(env_id)
    return spec.max_episode_steps if spec is not None else None


def real_max_episode_steps(env: gym.Env) -> int | None:
    """The step limit the env enforces (from its spec), if any."""
    spec = getattr(env, "spec", None)
    return spec.max_episode_steps if spec is not None else None
