"""The fixed-policy suite: simple policies in the dream and in reality, on the same seeds.

A faithful world gives a policy that does nothing, one that always steers, a random one... the
return it gets in reality. No controller has to be trained to find out, and a policy that is
off points at what M gets wrong (it never saw the car stand still, it does not know that
hugging the wall kills you, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from dreamgym.evaluation.jobs import returns_in
from dreamgym.evaluation.stats import spread_check, summarize
from dreamgym.options import threshold_note
from dreamgym.world import World

if TYPE_CHECKING:
    from dreamgym.evaluation.diagnose.config import DiagnoseConfig

ACTION_NAMES: dict[str, tuple[str, ...]] = {"VizdoomTakeCover-v1": ("noop", "left", "right")}
"""Names of Discrete actions per env id, for the suite's labels."""


def _num(x: float) -> str:
    return f"{float(x):g}"


def _box_spec(kind: str, *actions: np.ndarray | list[float], every: int | None = None) -> str:
    body = "/".join(",".join(_num(v) for v in a) for a in actions)
    return f"{kind}:{body}" + (f"@{every}" if every is not None else "")


def fixed_suite(world: World, alternate_every: int = 10) -> list[tuple[str, str]]:
    """(label, policy spec) of the suite for the world's action space.

    Discrete(n): each constant action, uniform random, and alternating between two actions
    every `alternate_every` steps. CarRacing's Box (steer, gas, brake): no action, straight gas,
    half gas, gas with steering left / right, full brake, random, and steering left and right
    in turns with gas. Any other Box: low, middle and high constant, random, low/high in turns.
    """
    space, k = world.action_space, int(alternate_every)
    if isinstance(space, gym.spaces.Discrete):
        start, n = int(space.start), int(space.n)
        names = ACTION_NAMES.get(world.env_id, ())
        name = {
            start + i: (names[i] if i < len(names) else f"action {start + i}") for i in range(n)
        }
        suite = [(f"constant {name[start + i]}", f"constant:{start + i}") for i in range(n)]
        a, b = (start + 1, start + 2) if n >= 3 else (start, start + 1)
        suite.append(("random", "random"))
        if n >= 2:
            suite.append((f"{name[a]}/{name[b]} every {k}", f"alternate:{a},{b}@{k}"))
        return suite
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"diagnose supports Discrete and Box action spaces, not {space}")
    if world.env_id.startswith("CarRacing") and space.shape == (3,):
        left, right = [-1.0, 1.0, 0.0], [1.0, 1.0, 0.0]
        return [
            ("no action (stands still)", _box_spec("constant", [0, 0, 0])),
            ("straight gas", _box_spec("constant", [0, 1, 0])),
            ("half gas", _box_spec("constant", [0, 0.5, 0])),
            ("gas + steer left", _box_spec("constant", left)),
            ("gas + steer right", _box_spec("constant", right)),
            ("full brake", _box_spec("constant", [0, 0, 1])),
            ("random", "random"),
            (f"steer left/right every {k}, gas", _box_spec("alternate", left, right, every=k)),
        ]
    low = np.where(np.isfinite(space.low), space.low, -1.0)
    high = np.where(np.isfinite(space.high), space.high, 1.0)
    return [
        ("constant low", _box_spec("constant", low)),
        ("constant middle", _box_spec("constant", (low + high) / 2)),
        ("constant high", _box_spec("constant", high)),
        ("random", "random"),
        (f"low/high every {k}", _box_spec("alternate", low, high, every=k)),
    ]


def fidelity_check(
    dream_mean: float, real_mean: float, rel_tol: float, abs_tol: float
) -> dict[str, Any]:
    """Is the dream mean faithful to the real one? Ratio, difference and a flag.

    OK when |dream − real| ≤ max(rel_tol · |real|, abs_tol): within ±rel_tol of real, or within
    ±abs_tol, which is what matters for returns near zero (where any ratio explodes).
    """
    diff = float(dream_mean) - float(real_mean)
    ok = abs(diff) <= max(rel_tol * abs(float(real_mean)), abs_tol)
    return {
        "ratio": float(dream_mean) / float(real_mean) if real_mean != 0 else None,
        "difference": diff,
        "ok": bool(ok),
        "flag": "ok" if ok else ("dream high" if diff > 0 else "dream low"),
    }


def suite_row(
    label: str,
    spec: str,
    dream: np.ndarray,
    real: np.ndarray | None,
    seed: int,
    rel_tol: float,
    abs_tol: float,
    resamples: int,
) -> dict[str, Any]:
    """One row of the suite's table: both summaries (mean, std, 95% CI, returns), the check of
    the means and the spread's (`spread_check`: std ratio, KS, W₁);
    without `real` (`--dream-only`, nothing known) the dream's alone, unjudged (`ok` None)."""
    d = summarize(dream, seed, resamples)
    if real is None:
        unjudged = {"ratio": None, "difference": None, "ok": None, "flag": "no real"}
        return {"policy": label, "spec": spec, "dream": d, "real": None, **unjudged}
    r = summarize(real, seed + 1, resamples)
    return {
        "policy": label,
        "spec": spec,
        "dream": d,
        "real": r,
        **fidelity_check(d["mean"], r["mean"], rel_tol, abs_tol),
        "spread": spread_check(dream, real),
    }


def run_suite(
    world: World,
    policies: list[tuple[str, str]],
    config: DiagnoseConfig,
    progress: bool,
    known_real: dict[str, np.ndarray] | None = None,
    dream_only: bool = False,
) -> list[dict[str, Any]]:
    """Every (label, spec) in the dream (one batch) and in reality (worker processes); the real
    returns of a spec in `known_real` (an earlier report's, `reuse`) are taken from there, and
    with `dream_only` no other is played."""
    rows, known = [], known_real or {}
    for label, spec in policies:
        dream = returns_in(
            "dream",
            world,
            spec,
            config,
            progress=progress,
            episodes=config.dream_episodes,
            seed=config.dream_seed,
        )
        if spec in known:
            real = known[spec]
        elif dream_only:
            real = None
        else:
            real = returns_in("real", world, spec, config, progress=progress)
        rows.append(
            suite_row(
                label,
                spec,
                dream,
                real,
                config.seed,
                config.rel_tol,
                config.abs_tol,
                config.resamples,
            )
        )
    return rows


def suite_table(
    rows: list[dict[str, Any]],
    temperature: float | None = None,
    dream_settings: dict[str, Any] | None = None,
) -> str:
    """The suite as a Markdown table."""
    tau = "" if temperature is None else f" (τ={temperature:g}{threshold_note(dream_settings)})"

    def side(s: dict[str, Any] | None) -> str:
        if s is None:
            return "—"
        lo, hi = s["ci95"]
        return f"{s['mean']:.1f} ± {s['std']:.1f} [{lo:.1f}, {hi:.1f}]"

    def spread(r: dict[str, Any]) -> str:
        s = r.get("spread")  # reports written before the spread check have none
        if not s or s["ks"] is None:
            return "— | — | —"
        sd = "n/a" if s["sd_ratio"] is None else f"{s['sd_ratio']:.2f}"
        return f"{sd} | {s['ks']:.2f} | {s['wasserstein']:.1f}"

    lines = [
        f"| policy | spec | dream{tau} mean ± std [95% CI] | real mean ± std [95% CI] | "
        "dream/real | fidelity | sd dream/real | KS | W₁ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        flag = "ok" if r["ok"] else f"**{r['flag'].upper()}**"
        if r["ok"] is None:
            ratio, flag = "—", "no real"
        lines.append(
            f"| {r['policy']} | `{r['spec']}` | {side(r['dream'])} | {side(r['real'])} | "
            f"{ratio} | {flag} | {spread(r)} |"
        )
    return "\n".join(lines)
