"""CMA-ES on the linear controller inside the batched dream (`dreamgym controller`).

Ha & Schmidhuber (2018, §3.2 and the appendix on evolution strategies) train the controller C
with CMA-ES on the mean return of 16 rollouts per candidate, 64 candidates per generation. Here a
generation is ONE batch: the whole population × rollouts (64 × 16 = 1,024 envs) steps together in
`DreamVectorEnv`, through its torch-level `reset_tensors`/`step_tensors`, with each candidate's
parameters applied to its own rows by one batched matrix product (`PopulationController`).

Selection (`keep`): the paper's code ships the CMA-ES *mean* that scores best when re-scored on
many rollouts, not the best candidate: a candidate's fitness is the maximum of P noisy 16-rollout
estimates, so the best one is mostly the luckiest. Every `eval_mean_every` generations the mean is
re-scored on `mean_rollouts` dream rollouts with the same seed every time (so successive means
meet the same dreams), and the best-scoring mean is the controller ("best-mean", default); the
best candidate ever ("best-candidate", the old choice) is kept too and both are in history.json.
Candidates of one generation share their dreams (common random numbers, `crn`, see
`dreamgym.agents.population`); `l2` subtracts λ‖θ‖² from each candidate's fitness.

A run directory holds the controller (`controller.safetensors` + `.json`, see
`dreamgym.policies.linear`), the CMA-ES state (`cma_state.safetensors`: no pickle, see
`dreamgym.agents.cmaes_state`) and `history.json`; re-running the same command resumes. Real-env checks during training
(`eval_real_every`) run through an injected `real_evaluator`, so that training never imports the
evaluation layer: the `dreamgym controller` command passes `dreamgym.evaluation.real_returns`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from dreamgym.agents.cmaes_alarm import ControllerAlarm
from dreamgym.agents.cmaes_search import Search
from dreamgym.agents.cmaes_state import (
    HISTORY_FILE,
    STATE_FILE,
    load_state,
    run_fingerprint,
)
from dreamgym.agents.population import EnsembleEvaluator
from dreamgym.envs.dream import resolve_device
from dreamgym.options import AlarmOptions, DreamOptions
from dreamgym.policies.linear import (
    ACTION_HEADS,
    CONTROLLER_OBS_MODES,
    CONTROLLER_WEIGHTS,
    DEFAULT_ACTION_HEAD,
    LinearController,
    world_fingerprint,
)
from dreamgym.utils.files import atomic_write_json
from dreamgym.utils.options import deprecated_aliases, option
from dreamgym.utils.threads import torch_threads
from dreamgym.utils.validate import check_output_dir
from dreamgym.world import World

__all__ = [
    "HISTORY_FILE",
    "KEEP_MODES",
    "STATE_FILE",
    "ControllerConfig",
    "ControllerResult",
    "RealEvaluator",
    "train_controller",
]

KEEP_MODES = ("best-mean", "best-candidate", "best-predicted")
"""Which parameters a run ships: the best re-scored CMA-ES mean, the best candidate ever, or the
mean with the best predicted real score (the exploitation alarm's, `--alarm-every`)."""
REAL_EVAL_DIR = "real_eval"
"""Where a real-env check during training writes the controller it runs (inside OUT)."""

RealEvaluator = Callable[[str, str, int, int, "int | None"], np.ndarray]
"""(world directory, controller path, episodes, seed, max_steps) → real returns (float64)."""


# --------------------------------------------------------------------------------------------
# CMA-ES


@deprecated_aliases
@dataclass(kw_only=True)
class ControllerConfig(AlarmOptions, DreamOptions):
    """Options of `dreamgym controller` (CMA-ES on a linear controller in the batched dream):
    the dream's, and these."""

    out: str = option(help="run directory: controller, CMA state and history (resumes)")
    generations: int = option(100, "CMA-ES generations to reach (a re-run resumes)")
    popsize: int = option(64, "candidates per generation (paper: 64)")
    rollouts: int = option(16, "dream rollouts averaged per candidate (paper: 16)")
    sigma0: float = option(0.1, "initial CMA-ES step size around zero parameters")
    obs_mode: str = option(
        "zh",
        "controller input: zh = [z, h] (paper), z, or zch = [z, c, h] (paper's Doom)",
        choices=CONTROLLER_OBS_MODES,
    )
    crn: bool = option(True, "common random numbers: a generation's candidates share their dreams")
    eval_mean_every: int = option(1, "every K generations re-score the CMA-ES mean (0: off)")
    mean_rollouts: int = option(
        64, "dream rollouts (fixed seeds) that re-score the mean (paper: ≥ 64)"
    )
    keep: str | None = option(
        None,
        "controller shipped: the best re-scored mean, the best candidate ever, or the mean with "
        "the best predicted real score (default: best-predicted with --alarm-every, else "
        "best-mean)",
        choices=KEEP_MODES,
    )
    l2: float = option(0.0, "L2 penalty λ: fitness = mean return − λ‖θ‖²")
    action_head: str = option(
        DEFAULT_ACTION_HEAD,
        "Box action map: paper = clip(tanh x, 0, 1) on [0, 1] dims, affine = (tanh x + 1)/2",
        choices=ACTION_HEADS,
    )
    ensemble: list[str] = field(
        default_factory=list,
        metadata={
            "help": "more worlds (same V, e.g. M trained with another --seed) whose dreams also "
            "score every candidate, ROLLOUTS each; the controller reads --world's h, tracked "
            "beside each member's dream (default: none)"
        },
    )
    seed: int = option(0, "seed of CMA-ES sampling and of the dream rollouts")
    eval_real_every: int = option(
        0, "every K generations run the best controller in the real env (0: off)"
    )
    eval_real_episodes: int = option(4, "real episodes per real evaluation")
    threads: int | None = field(
        default=None,
        metadata={
            "help": "torch CPU threads (default: torch's; 1 is often faster on a busy machine)"
        },
    )
    progress: bool = option(True, "show a progress bar")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.keep is None:  # resolved here: the run's fingerprint records the choice
            self.keep = "best-predicted" if self.alarm_every else "best-mean"


@dataclass
class ControllerResult:
    """What `train_controller` produced."""

    out: Path
    controller: Path
    generations: int
    best_fitness: float
    """The best candidate's fitness (mean return over `rollouts`, minus the L2 penalty)."""
    best_generation: int
    seconds_per_generation: float
    keep: str = "best-candidate"
    best_mean_return: float = -math.inf
    """The best re-scored mean's return over `mean_rollouts` fixed dreams (−inf: never scored)."""
    best_mean_generation: int = -1
    mean_eval_seconds: float = math.nan
    """Mean seconds of one re-scoring of the mean (the overhead per re-scored generation)."""


# --------------------------------------------------------------------------------------------
# The run: resume, generations, outputs


def train_controller(
    config: ControllerConfig, real_evaluator: RealEvaluator | None = None
) -> ControllerResult:
    """CMA-ES on the linear controller in the dream; resumable; writes OUT/controller.*.

    Fitness of a candidate = its mean dream return over `rollouts` rollouts (Ha & Schmidhuber
    2018, appendix on evolution strategies), minus `l2`·‖θ‖². The controller shipped is the best
    re-scored CMA-ES mean (`keep="best-mean"`, the paper's code) or the best candidate ever
    (`keep="best-candidate"`); the best candidate's fitness, the maximum of many noisy estimates,
    is optimistic: re-evaluate with `dreamgym evaluate --dream` (or `gap`) for an unbiased number.
    `real_evaluator` runs the real-env checks of `eval_real_every` (see `RealEvaluator`).
    """
    _check_config(config)
    if config.eval_real_every > 0 and real_evaluator is None:
        raise ValueError(
            "eval_real_every needs a real_evaluator, e.g. dreamgym.evaluation.real_returns "
            "(the `dreamgym controller` command passes it)"
        )
    with torch_threads(config.threads):
        return _train(config, real_evaluator)


def _check_config(config: ControllerConfig) -> None:
    if config.generations < 0 or config.popsize < 2 or config.rollouts < 1:
        raise ValueError("need generations ≥ 0, popsize ≥ 2 and rollouts ≥ 1")
    if config.keep not in KEEP_MODES:
        raise ValueError(f"--keep must be one of {KEEP_MODES}, got {config.keep!r}")
    if config.eval_mean_every < 0 or config.mean_rollouts < 1:
        raise ValueError("need --eval-mean-every ≥ 0 and --mean-rollouts ≥ 1")
    if config.keep == "best-predicted" and not config.alarm_every:
        raise ValueError(
            "--keep best-predicted needs the exploitation alarm: set --alarm-every K ≥ 1 (and "
            "--alarm-members or --members), or pass --keep best-mean"
        )
    if config.keep == "best-mean" and config.eval_mean_every == 0:
        raise ValueError(
            "--keep best-mean needs the mean re-scored: set --eval-mean-every K ≥ 1, or pass "
            "--keep best-candidate"
        )
    if not config.l2 >= 0 or not math.isfinite(config.l2):
        raise ValueError(f"--l2 must be a finite number ≥ 0, got {config.l2}")


def _dream_keywords(config: ControllerConfig, device: Any) -> dict[str, Any]:
    """The dream every evaluator of the run steps (τ, cap, termination, ...; its ensemble)."""
    return {
        "obs_mode": config.obs_mode,
        "temperature": config.temperature,
        "max_steps": config.max_steps,
        "device": device,
        "termination": config.termination,
        "done_threshold": config.done_threshold,
        "precision": config.precision,
        "action_head": config.action_head,
        **config.uncertainty_settings(),
    }


def _evaluators(
    config: ControllerConfig, world: World, members: list[World], common: dict[str, Any]
) -> tuple[EnsembleEvaluator, EnsembleEvaluator | None]:
    """The generation's evaluator (P × R per world) and the mean's (1 × mean_rollouts per
    world), if re-scoring; `members` are the ensemble's other worlds (none: the world alone)."""
    evaluator = EnsembleEvaluator(
        world, members, config.popsize, config.rollouts, crn=config.crn, **common
    )
    if config.eval_mean_every == 0:
        return evaluator, None
    return evaluator, EnsembleEvaluator(world, members, 1, config.mean_rollouts, **common)


def _train(config: ControllerConfig, real_evaluator: RealEvaluator | None) -> ControllerResult:
    out = check_output_dir(config.out, inputs=[config.world, *config.ensemble])
    device = resolve_device(config.device)
    world = World.load(config.world, device=device)
    members = [World.load(m, device=device) for m in config.ensemble]
    common = _dream_keywords(config, device)
    evaluator, mean_evaluator = _evaluators(config, world, members, common)
    alarm = ControllerAlarm(config, world, **common) if config.alarm_every else None
    n = LinearController(world, obs_mode=config.obs_mode).n_params
    fingerprint = run_fingerprint(
        config,
        world.fingerprint["mdnrnn_sha256"],
        world.env_id,
        evaluator.temperature,
        evaluator.max_steps,
        n,
        world.memory_config.done_logit_offset,
        [_member_fingerprint(m) for m in members],
    )
    state = load_state(out / STATE_FILE, fingerprint)
    search = Search.start(n, config.sigma0, config.popsize, config.seed, config.l2)
    if state is not None:
        search.replay(state, config.progress)
        if alarm is not None:
            alarm.restore(search.history, state["tensors"])
    out.mkdir(parents=True, exist_ok=True)
    write_outputs = functools.partial(
        _write_outputs, out, world, members, config, evaluator, fingerprint, search, alarm
    )
    if state is not None:
        write_outputs()  # heal a run interrupted between its state file and its views
    gen_seconds: list[float] = []
    mean_seconds: list[float] = []
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
            if mean_evaluator is not None and (g + 1) % config.eval_mean_every == 0:
                entry["mean_eval"] = search.score_mean(g, mean_evaluator)
                mean_seconds.append(entry["mean_eval"]["seconds"])
            if alarm is not None and (g + 1) % config.alarm_every == 0:
                entry["alarm"] = alarm.check(g, np.asarray(search.es.mean, dtype=np.float64))
            if config.eval_real_every > 0 and (g + 1) % config.eval_real_every == 0:
                assert real_evaluator is not None  # checked by train_controller
                params = _kept(config.keep, search, alarm)[0]
                entry["real"] = _eval_real(config, world, out, params, g, real_evaluator)
            search.history.append(entry)
            search.save_state(
                out / STATE_FILE, fingerprint, alarm.state_tensors() if alarm else None
            )
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
        seconds_per_generation=float(np.mean(gen_seconds)) if gen_seconds else math.nan,
        keep=config.keep,
        best_mean_return=search.best_mean_return,
        best_mean_generation=search.best_mean_generation,
        mean_eval_seconds=float(np.mean(mean_seconds)) if mean_seconds else math.nan,
    )


def _member_fingerprint(member: World) -> dict[str, Any]:
    """What a resumed run must share with an ensemble member: its M and its calibration."""
    return {
        "mdnrnn_sha256": member.fingerprint["mdnrnn_sha256"],
        "done_logit_offset": float(member.memory_config.done_logit_offset),
    }


def _postfix(entry: dict[str, Any]) -> dict[str, str]:
    """The progress bar's summary of one generation."""
    postfix = {
        "best": f"{entry['best']:.2f}",
        "mean": f"{entry['mean']:.2f}",
        "s/gen": f"{entry['seconds']:.1f}",
    }
    if "mean_eval" in entry:
        postfix["θ̄"] = f"{entry['mean_eval']['return']:.1f}"
    if "alarm" in entry:
        postfix["pred"] = f"{entry['alarm']['predicted_real']:.1f}"
        if entry["alarm"]["exploitation"]:
            postfix["alarm"] = "EXPLOITATION"
    if "real" in entry:
        postfix["real"] = f"{entry['real']['mean']:.1f}"
    return postfix


def _write_outputs(
    out: Path,
    world: World,
    members: list[World],
    config: ControllerConfig,
    evaluator: EnsembleEvaluator,
    fingerprint: dict[str, Any],
    search: Search,
    alarm: ControllerAlarm | None = None,
) -> None:
    """The views of the run: the kept controller so far (and the alarm's two) and history.json."""
    params, chosen = _kept(config.keep, search, alarm)
    save = functools.partial(
        _save_controller, world=world, members=members, config=config, evaluator=evaluator
    )
    save(out, params, chosen, trained_generations=len(search.fitness))
    if alarm is not None:
        for which, (path, best) in alarm.files(out).items():
            if best is not None:
                save(path, best, {"kept": f"alarm-best-{which}", **alarm.best(which)})
    summary = {k: chosen[k] for k in ("kept", "best_candidate", "best_mean")}
    if alarm is not None:
        summary["alarm"] = alarm.summary()
    atomic_write_json(
        out / HISTORY_FILE, {"run": fingerprint, **summary, "generations": search.history}
    )


def _kept(
    keep: str, search: Search, alarm: ControllerAlarm | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """The parameters a run ships under `keep` (the alarm's best-predicted mean too)."""
    params, chosen = search.kept("best-mean" if keep == "best-predicted" else keep)
    if keep != "best-predicted" or alarm is None:
        return params, chosen
    best = alarm.best("predicted")
    if alarm.params["predicted"] is not None:
        params = alarm.params["predicted"]
    return np.asarray(params, dtype=np.float64), {
        **chosen,
        "kept": keep,
        "fitness": best["predicted_real"],
        "generation": best["generation"],
    }


def _save_controller(
    path: Path,
    params: np.ndarray,
    chosen: dict[str, Any],
    *,
    world: World,
    members: list[World],
    config: ControllerConfig,
    evaluator: EnsembleEvaluator,
    **extra: Any,
) -> None:
    """One controller file of the run, its sidecar saying how it was trained and chosen."""
    kept = LinearController(
        world, obs_mode=config.obs_mode, params=params, action_head=config.action_head
    )
    kept.save(
        path,
        world=world,
        **chosen,
        **extra,
        temperature=evaluator.temperature,
        max_steps=evaluator.max_steps,
        rollouts=config.rollouts,
        mean_rollouts=config.mean_rollouts if config.eval_mean_every else None,
        termination=config.termination,
        done_threshold=config.done_threshold,
        crn=config.crn,
        l2=float(config.l2),
        trainer="cma-es",
        **({"ensemble": [world_fingerprint(m) for m in members]} if members else {}),
        **config.alarm_record(),
    )


def _eval_real(
    config: ControllerConfig,
    world: World,
    out: Path,
    params: np.ndarray,
    generation: int,
    real_evaluator: RealEvaluator,
) -> dict[str, Any]:
    """Real-env returns of the kept controller so far (written to OUT/real_eval/ first).

    The evaluator gets paths, not objects: its episodes may run in worker processes that load
    the world and the controller from disk.
    """
    probe = out / REAL_EVAL_DIR
    LinearController(
        world, obs_mode=config.obs_mode, params=params, action_head=config.action_head
    ).save(probe, world=world)
    returns = real_evaluator(
        str(world.path),
        str(probe),
        config.eval_real_episodes,
        10_000 * (generation + 1),
        config.max_steps,  # the dream's cap, if any, applies to reality too
    )
    return {"mean": float(returns.mean()), "std": float(returns.std()), "returns": returns.tolist()}
