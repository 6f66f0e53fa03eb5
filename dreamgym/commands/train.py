"""`dreamgym train`: train V, then M (an MDN-RNN or an RSSM), then write the bundle; print the
held-out metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dreamgym.training.config import TrainConfig
from dreamgym.training.pipeline import run_training
from dreamgym.training.report import REPORT_DIR
from dreamgym.training.workspace import WORK_DIR
from dreamgym.world import MODEL_CARD_FILE


def run(config: TrainConfig) -> int:
    """Run the job; print its summary; 0 on success."""
    result = run_training(config)
    if result.up_to_date:
        if config.progress:
            print(
                f"{result.path} is up to date (delete {result.path / WORK_DIR} and the bundle "
                "to train again)"
            )
    else:
        print_summary(result.path, result.world_config)
    return 0


def print_summary(out: Path, config: dict[str, Any]) -> None:
    """The bundle's path and weights, its held-out metrics beside their baselines, its reports."""
    m = config["metrics"]
    v, r = m["vae"], m.get("rnn") or m["rssm"]
    d = r["done"]
    print(f"wrote {out} ({config['weights_dtype']} weights); held-out metrics:")
    print(
        f"  V recon MSE/pixel   {v['recon_mse']:.5f}  (mean frame: {v['baseline_mean_frame_mse']:.5f})"
    )
    if "rssm" in m:
        print_openloop(r["openloop"])
    else:
        print(
            f"  M NLL/dim           {r['nll_per_dim']:.3f}  (previous z: "
            f"{r['baseline_previous_z_nll_per_dim']:.3f}, static: "
            f"{r['baseline_static_gaussian_nll_per_dim']:.3f})"
        )
    print(
        f"  reward MAE          {r['reward_mae']:.4f}  (mean: {r['reward_mae_baseline_mean']:.4f})"
    )
    prf = " / ".join(
        "n/a" if d[k] is None else f"{d[k]:.3f}" for k in ("precision", "recall", "f1")
    )
    print(f"  done P/R/F1 @0.5    {prf}  ({d['positives']} done events held out)")
    print(f"  reports: {out / REPORT_DIR}, card: {out / MODEL_CARD_FILE}")


def print_openloop(openloop: dict[str, Any]) -> None:
    """The RSSM's open-loop z RMSE per horizon k beside copy-last-z's (n/a: episodes too short)."""

    def cells(values: dict[str, float | None]) -> str:
        return ", ".join(
            f"k={k} " + ("n/a" if x is None else f"{x:.3f}") for k, x in values.items()
        )

    print(f"  RSSM z RMSE         {cells(openloop['rmse'])}  (copy last z: ", end="")
    print(f"{cells(openloop['copy_last'])})")
