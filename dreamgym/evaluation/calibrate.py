"""`dreamgym calibrate`: fit M's done-logit offset so that dreams last as long as real episodes.

Why this exists: teacher-forced along real episodes, a done head can count deaths right (the
`diagnose` termination check) while free-running dreams still end too early. A dream drifts into
states M has seldom seen, M hedges there with a moderate p(done) at every step, and over a few
hundred steps those small hazards add up. In the TakeCover world shipped in round 3, 16 real
deaths were predicted as 20 teacher-forced, yet every fixed policy lived only 0.5-0.7× as long
in the dream as in reality.

The fix is one number. An offset b is added to the done logit (a Platt-style intercept, stored
as M's `done_logit_offset`: `MDNRNNConfig`'s or `RSSMConfig`'s, in config.json's section of the
world's memory family). It is chosen so that the policies that collected the
calibration datasets live as long in the dream as they did in reality, on average: the mean
over datasets of log(dream mean length / real mean length) is 0. Those policies are fixed ones
(`collect --policy constant:A --world W`) or `collect`'s built-in random ones, replayed in the
dream one seeded instance per dream. Only these datasets (a world's training data) are used;
`diagnose`, on its own seeds and with policies the fit did not see (uniform random,
alternating), is the check.

The fit is a bisection on b. Every evaluation reuses the same seed (common random numbers), and
each dream's first episode ends at the first step where its uniform draw falls below p(done).
A dream's length is therefore monotone in b, and the search cannot oscillate.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from dreamgym.data import load_manifest
from dreamgym.data.exploration import make_exploration_policy, recorded_policy_name
from dreamgym.data.manifest import DatasetMismatchError
from dreamgym.data.rollout import policy_seed
from dreamgym.envs.settings import DreamSettings
from dreamgym.evaluation.dream import dream_episodes
from dreamgym.options import DreamOptions, check_float, check_int
from dreamgym.policies import Policy
from dreamgym.policies.fixed import is_fixed_spec
from dreamgym.utils.options import deprecated_aliases, option
from dreamgym.world import CONFIG_FILE, World
from dreamgym.world_config import write_config

WORLD_SUFFIX = " (world "
"""A manifest records a policy that acts through a world as "SPEC (world PATH)"."""


@deprecated_aliases
@dataclass(kw_only=True)
class CalibrateConfig(DreamOptions):
    """Options of `dreamgym calibrate`: the dream's (each dream capped at its dataset's episode
    limit, so no `--max-steps`), and these."""

    world: str = option(help="world to calibrate: a bundled name or a bundle directory")
    data: list[str] = field(
        metadata={
            "help": "datasets collected with fixed policies, e.g. `dreamgym collect --policy "
            "constant:0 --world W` (one or more; the world's training data, not diagnose's seeds)"
        }
    )
    temperature: float | None = option(
        None, "τ to calibrate at; written as the world's default τ (default: the world's)"
    )
    max_steps: int | None = option(None, cli=False)
    dreams: int = option(256, "dream episodes per dataset and evaluation")
    seed: int = option(0, "seed of the dreams (the same for every evaluation)")
    bound: float = option(8.0, "search the offset in [-bound, bound] (logits)")
    tolerance: float = option(0.01, "stop when |mean log(dream / real length)| is below this")
    iterations: int = option(30, "most evaluations of the bisection")
    dry_run: bool = option(False, "fit and report, but leave the world unchanged")
    json: bool = option(False, "print the JSON report instead of the table")
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_steps is not None:
            raise ValueError(
                "calibrate caps each dream at its dataset's episode limit; drop max_steps"
            )
        self.dreams = check_int("dreams", self.dreams, 1)
        self.seed = check_int("seed", self.seed)
        self.bound = check_float("bound", self.bound, 0.0, above=True)
        self.tolerance = check_float("tolerance", self.tolerance, 0.0, above=True)
        self.iterations = check_int("iterations", self.iterations, 1)


@dataclass(frozen=True)
class LengthTarget:
    """What one calibration dataset says: its fixed policy and how long its episodes lasted."""

    data: str
    policy: str
    lengths: np.ndarray
    terminations: int
    max_steps: int

    @property
    def mean(self) -> float:
        return float(self.lengths.mean())


def length_targets(world: World, datasets: list[str]) -> list[LengthTarget]:
    """The fixed policy and episode lengths of each dataset; clear errors for unusable ones."""
    targets = []
    for data in datasets:
        manifest = load_manifest(data)
        if manifest["env_id"] != world.env_id:
            raise DatasetMismatchError(
                f"{data} was collected in {manifest['env_id']}, but world {world.name!r} "
                f"models {world.env_id}; pass datasets of {world.env_id}"
            )
        recorded = str(manifest.get("policy", ""))
        spec = recorded.split(WORLD_SUFFIX)[0]
        if not (is_fixed_spec(spec) or recorded_policy_name(spec)):
            raise ValueError(
                f"{data} was collected with the policy {recorded!r}; calibrate replays each "
                "dataset's policy in the dream, so it needs datasets of fixed policies or of "
                "collect's built-in random ones: collect them with e.g. `dreamgym collect --env "
                "ENV --policy constant:0 --world WORLD` or `--policy random`"
            )
        episodes = manifest["episodes"]
        if not episodes:
            raise ValueError(f"{data} holds no finished episode yet; collect some first")
        cap = manifest.get("max_steps") or manifest.get("max_episode_steps")
        cap = int(cap) if cap else world.max_episode_steps
        if cap is None:
            raise ValueError(
                f"neither {data} nor world {world.name!r} records an episode limit; dream "
                "episodes would never end"
            )
        targets.append(
            LengthTarget(
                data=str(data),
                policy=spec,
                lengths=np.array([int(e["steps"]) for e in episodes], dtype=np.int64),
                terminations=sum(bool(e["terminated"]) for e in episodes),
                max_steps=cap,
            )
        )
    if not any(t.terminations for t in targets):
        raise ValueError(
            "no episode of these datasets ended by termination (all were truncated): they say "
            "nothing about how often episodes end, so there is nothing to calibrate"
        )
    return targets


def dream_mean_lengths(
    world: World,
    targets: list[LengthTarget],
    offset: float,
    settings: DreamSettings,
    dreams: int,
    seed: int,
) -> list[float]:
    """Each target policy's mean dream length with the done-logit offset `offset`, dreamed with
    `settings` up to the target's own episode limit."""
    memory_config = world.memory_config
    saved = memory_config.done_logit_offset
    memory_config.done_logit_offset = float(offset)
    try:
        return [
            float(
                dream_episodes(
                    world,
                    dream_policy(world, t.policy, dreams, seed),
                    dreams,
                    seed,
                    settings=settings.replace(max_episode_steps=t.max_steps),
                ).lengths.mean()
            )
            for t in targets
        ]
    finally:
        memory_config.done_logit_offset = saved


class DreamExplorationPolicy:
    """`collect`'s built-in exploration policy, one instance per dream env, as a batched `Policy`.

    Each instance is seeded the way `collect` seeds episode i. Discrete spaces never look at the
    frame, so they read z (V decodes nothing); Box policies pull towards the road seen in the
    frame, so they read V's decoding of z ("pixels"), the 64×64 frame `collect` hands them.
    """

    def __init__(
        self, name: str, env_id: str, action_space: gym.Space, num_envs: int, seed: int
    ) -> None:
        self.name = name
        self.action_space = action_space
        self.policies = [
            make_exploration_policy(name, env_id, action_space) for _ in range(num_envs)
        ]
        for i, policy in enumerate(self.policies):
            policy.reset(policy_seed(seed, i))
        self.obs_mode = "z" if isinstance(action_space, gym.spaces.Discrete) else "pixels"

    def act(self, obs: np.ndarray) -> np.ndarray:
        if len(obs) != len(self.policies):
            raise ValueError(
                f"{self.name} was built for {len(self.policies)} dreams but got {len(obs)} observations"
            )
        actions = [policy.act(o) for policy, o in zip(self.policies, obs, strict=True)]
        if isinstance(self.action_space, gym.spaces.Discrete):
            return np.asarray(actions, dtype=np.int64)
        return np.stack(actions).astype(np.float32)


def dream_policy(world: World, spec: str, dreams: int, seed: int) -> Policy | str:
    """What replays a dataset's policy in `dreams` dreams: a fixed spec as it is, a built-in
    exploration policy as one seeded instance per dream (fresh each call: the same draws)."""
    if recorded_policy_name(spec):
        return DreamExplorationPolicy(spec, world.env_id, world.action_space, dreams, seed)
    return spec


def mean_log_ratio(dream: list[float], targets: list[LengthTarget]) -> float:
    """The fit's objective: mean over datasets of log(dream mean length / real mean length)."""
    return float(np.mean([math.log(d / t.mean) for d, t in zip(dream, targets, strict=True)]))


def fit_offset(
    world: World,
    targets: list[LengthTarget],
    temperature: float,
    config: CalibrateConfig,
) -> tuple[float, list[dict[str, Any]]]:
    """Bisection for the offset whose objective is 0; returns it and every evaluation made.

    The objective falls as the offset grows: a larger done logit ends dreams sooner. The search
    starts from 0 (the head as trained), steps outwards by doubling until the sign flips, then
    halves the bracket.
    """
    evaluations: list[dict[str, Any]] = []
    bar = tqdm(
        total=int(config.iterations), desc="calibrate", unit="eval", disable=not config.progress
    )

    settings = config.dream_settings().replace(temperature=temperature)

    def objective(b: float) -> float:
        dream = dream_mean_lengths(world, targets, b, settings, config.dreams, config.seed)
        value = mean_log_ratio(dream, targets)
        evaluations.append({"offset": b, "objective": value, "dream_means": dream})
        bar.update(1)
        bar.set_postfix(offset=f"{b:+.3f}", log_ratio=f"{value:+.3f}")
        return value

    try:
        tol, bound = float(config.tolerance), float(config.bound)
        f0 = objective(0.0)
        if abs(f0) < tol:
            return 0.0, evaluations
        direction = 1.0 if f0 > 0 else -1.0  # dreams too long: raise the hazard
        inner, outer, step = 0.0, None, 1.0
        while outer is None and len(evaluations) < int(config.iterations):
            b = direction * min(step, bound)
            f = objective(b)
            if abs(f) < tol:
                return b, evaluations
            if (f > 0) == (f0 > 0):
                inner = b
                if abs(b) >= bound:
                    raise ValueError(
                        f"no offset in [-{bound:g}, {bound:g}] makes the dreams last as long as "
                        f"the data (mean log length ratio {f:+.3f} at {b:+g}); the world and "
                        "the datasets disagree beyond calibration, or pass a larger --bound"
                    )
                step *= 2.0
            else:
                outer = b
        if outer is None:
            raise ValueError(
                f"--iterations {config.iterations} ended before the offset was bracketed"
            )
        b = inner
        while len(evaluations) < int(config.iterations):
            b = 0.5 * (inner + outer)
            f = objective(b)
            if abs(f) < tol:
                break
            if (f > 0) == (f0 > 0):
                inner = b
            else:
                outer = b
        return b, evaluations
    finally:
        bar.close()


def calibrate(config: CalibrateConfig) -> dict[str, Any]:
    """Fit the offset and, unless `dry_run`, write it (and τ) into the world's config.json.

    Returns the report: the offset, τ, and per dataset its policy, real mean length and dream
    mean length before (the head as trained) and after.
    """
    world = World.load(config.world)
    if world.path is None:
        raise ValueError("calibrate needs a saved world bundle")
    dream = config.dream_record(world)
    temperature = dream["temperature"]
    targets = length_targets(world, list(config.data))
    previous = world.memory_config.done_logit_offset
    offset, evaluations = fit_offset(world, targets, temperature, config)
    before = evaluations[0]["dream_means"]
    after = next(e for e in reversed(evaluations) if e["offset"] == offset)["dream_means"]
    report: dict[str, Any] = {
        "world": str(world.path),
        "temperature": temperature,
        "termination": dream["termination"],
        "done_threshold": dream["done_threshold"],
        "offset": offset,
        "previous_offset": previous,
        "dreams": int(config.dreams),
        "seed": int(config.seed),
        "objective": mean_log_ratio(after, targets),
        "evaluations": len(evaluations),
        "targets": [
            {
                "data": t.data,
                "policy": t.policy,
                "episodes": len(t.lengths),
                "terminations": t.terminations,
                "real_mean": t.mean,
                "dream_mean_uncalibrated": b,
                "dream_mean": a,
            }
            for t, b, a in zip(targets, before, after, strict=True)
        ],
        "written": False,
    }
    if not config.dry_run:
        write_calibration(world, report, " ".join(sys.argv[1:]) or None)
        report["written"] = True
    return report


def write_calibration(world: World, report: dict[str, Any], argv: str | None) -> Path:
    """Store the offset and τ in the bundle's config.json (atomically) with what produced them."""
    assert world.path is not None
    config = world.config
    world.memory_config.done_logit_offset = float(report["offset"])
    # The section of M's family ("mdnrnn" or "rssm"); the MDN-RNN's rule: an offset of 0 is not
    # written, so an uncalibrated bundle keeps its bytes.
    config[world.memory_kind] = world.memory_config.to_dict()
    config["temperature"] = float(report["temperature"])
    record = {k: v for k, v in report.items() if k not in ("world", "written")}
    if argv:
        record["argv"] = argv
    config.setdefault("provenance", {})["calibration"] = record
    world.config = write_config(world.path, config)
    return world.path / CONFIG_FILE


def calibration_table(report: dict[str, Any]) -> str:
    """Markdown: per dataset the real mean length and the dream's before and after."""
    lines = [
        f"done-logit offset {report['offset']:+.3f} at τ={report['temperature']:g} "
        f"({report['dreams']} dreams per policy, {report['evaluations']} evaluations)",
        "",
        "| data | policy | real episodes | real mean length | dream, uncalibrated | dream, calibrated |",
        "|---|---|---|---|---|---|",
    ]
    for t in report["targets"]:
        lines.append(
            f"| {Path(t['data']).name} | {t['policy']} | {t['episodes']} | {t['real_mean']:.1f} "
            f"| {t['dream_mean_uncalibrated']:.1f} ({t['dream_mean_uncalibrated'] / t['real_mean']:.2f}×) "
            f"| {t['dream_mean']:.1f} ({t['dream_mean'] / t['real_mean']:.2f}×) |"
        )
    return "\n".join(lines)
