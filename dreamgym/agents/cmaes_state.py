"""The CMA-ES run's state file and fingerprint: what `dreamgym controller` needs to resume.

A run directory holds `cma_state.safetensors` (no pickle): the fitness of every candidate so far,
the best candidate's and the best re-scored mean's parameters, the last CMA-ES mean, the history
and the run's fingerprint (the options a resumed run must share with the saved one). The CMA-ES
object itself is never serialised: a resumed run replays ask/tell with the recorded fitness.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import cma
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save as numpy_to_bytes

from dreamgym.utils.files import atomic_write_bytes

STATE_FILE = "cma_state.safetensors"
"""CMA-ES run state in OUT: the fitness of every candidate so far + best parameters."""
HISTORY_FILE = "history.json"

LEGACY_RUN = {
    "termination": "sample",
    "done_threshold": None,
    "crn": False,
    "l2": 0.0,
    "action_head": "affine",
    "keep": "best-candidate",
    "eval_mean_every": 0,
    "mean_rollouts": None,
    "done_logit_offset": 0.0,
    "ensemble": [],
}
"""What a run saved before these options existed did: no CRN, no L2, the (tanh + 1)/2 head, the
best candidate kept, no mean re-scoring. A fingerprint without a key has the key's value here."""


def run_fingerprint(
    config: Any,
    world_mdnrnn_sha256: str | None,
    env_id: str,
    temperature: float,
    max_steps: int,
    n: int,
    done_logit_offset: float = 0.0,
    ensemble: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Options a resumed run must share with the saved one (`config` is a ControllerConfig).

    Settings that do nothing are normalised away (the threshold of sampled termination, the
    size of a mean re-scoring that never runs), so that they cannot block a resume.
    """
    rescoring = config.eval_mean_every > 0
    return {
        "world_mdnrnn_sha256": world_mdnrnn_sha256,
        "env_id": env_id,
        "obs_mode": config.obs_mode,
        "n_params": n,
        "popsize": config.popsize,
        "rollouts": config.rollouts,
        "sigma0": config.sigma0,
        "seed": config.seed,
        "temperature": temperature,
        "max_steps": max_steps,
        "termination": config.termination,
        "done_threshold": config.done_threshold if config.termination == "threshold" else None,
        "crn": config.crn,
        "l2": float(config.l2),
        "action_head": config.action_head,
        "keep": config.keep,
        "eval_mean_every": config.eval_mean_every,
        "mean_rollouts": config.mean_rollouts if rescoring else None,
        # The world's calibration (`dreamgym calibrate`) changes the dream without touching M's
        # weights, so it is part of what a resumed run must share.
        "done_logit_offset": float(done_logit_offset),
        # Other worlds whose dreams score the candidates (`--ensemble`): their M and calibration.
        "ensemble": list(ensemble or []),
        # The dream's arithmetic, recorded when chosen (runs from before it resume unchanged).
        **({"precision": config.precision} if config.precision != "auto" else {}),
        # An ensemble dream (--members): its worlds as given, λ and the halt.
        **(
            {
                "members": list(config.members),
                "uncertainty_penalty": float(config.uncertainty_penalty),
                "uncertainty_halt": config.uncertainty_halt,
            }
            if config.members
            else {}
        ),
        # The exploitation alarm (--alarm-every): its dreams, when on (runs without it unchanged).
        **(config.alarm_record() if hasattr(config, "alarm_record") else {}),
    }


def _flag(key: str, value: Any) -> str:
    """The command-line option that gives `key` the value `value`."""
    if isinstance(value, bool):
        return f"--{key.replace('_', '-')}" if value else f"--no-{key.replace('_', '-')}"
    if value is None and key == "mean_rollouts":
        return "--eval-mean-every 0"
    if value is None and key == "done_threshold":
        return "--termination sample"
    return f"--{key.replace('_', '-')} {value}"


def load_state(path: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The saved run in OUT (None if fresh); a run with other options is a clear error."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        run = {**LEGACY_RUN, **json.loads(meta["run"])}
        history = json.loads(meta["history"])
    except Exception as e:
        raise ValueError(
            f"{path} is not a readable CMA-ES state ({e}); delete it (and {HISTORY_FILE}) to "
            "start over, or pick a new --out"
        ) from e
    diff = {k: (run.get(k), v) for k, v in fingerprint.items() if run.get(k) != v}
    if diff:
        what = ", ".join(f"{k}={a!r} (now {b!r})" for k, (a, b) in diff.items())
        hint = " ".join(
            _flag(k, a)
            for k, (a, _) in diff.items()
            if k in LEGACY_RUN and k not in ("done_logit_offset", "ensemble")
        )
        raise ValueError(
            f"{path.parent} holds a controller run with other options: {what}; re-run with the "
            "same options to resume"
            + (f" (e.g. add {hint})" if hint else "")
            + (
                " (the world was calibrated since: `dreamgym calibrate` changed its done-logit "
                "offset; calibrate it back or use the world the run started in)"
                if "done_logit_offset" in diff
                else ""
            )
            + (
                " (its --ensemble worlds, or their calibration, differ: pass the worlds the run "
                "started with)"
                if "ensemble" in diff
                else ""
            )
            + ", or pick a new --out"
        )
    if meta.get("cma_version") != cma.__version__:
        warnings.warn(
            f"{path} was written with cma {meta.get('cma_version')}, this is cma {cma.__version__}: "
            "the resumed search distribution may differ slightly",
            stacklevel=4,
        )
    return {"tensors": tensors, "history": history, "meta": meta}


def save_state(
    path: Path,
    fingerprint: dict[str, Any],
    fitness: list[np.ndarray],
    params: dict[str, np.ndarray | None],
    history: list[dict[str, Any]],
) -> None:
    """One atomic file per generation: everything needed to resume (no pickle).

    `params`: "best_params" (best candidate), "mean" (the CMA-ES mean now), "best_mean_params"
    (the best re-scored mean, None before the first re-scoring). Sampling is seeded per
    generation, so replaying ask/tell reproduces the saved distribution (checked on "mean").
    """
    tensors = {"fitness": np.stack(fitness).astype(np.float64)}  # (G, P) fitness per candidate
    tensors.update({k: np.asarray(v, dtype=np.float64) for k, v in params.items() if v is not None})
    meta = {
        "run": json.dumps(fingerprint),
        "history": json.dumps(history),
        "cma_version": cma.__version__,
    }
    atomic_write_bytes(path, numpy_to_bytes(tensors, metadata=meta))
