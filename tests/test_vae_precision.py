"""V's precision choice: bf16 autocast only where the hardware computes it natively."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamgym.models.vae import ConvVAE, VAEConfig
from dreamgym.training import vae as vae_training
from dreamgym.training.vae import autocast_dtype, encode_frames, make_adam, train_vae_epoch

CPU = torch.device("cpu")


def test_autocast_dtype_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    assert autocast_dtype("float32", CPU) is None
    assert autocast_dtype("bfloat16", CPU) is torch.bfloat16
    monkeypatch.setattr(vae_training, "native_bf16", lambda device: False)
    assert autocast_dtype("auto", CPU) is None
    monkeypatch.setattr(vae_training, "native_bf16", lambda device: True)
    assert autocast_dtype("auto", CPU) is torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        autocast_dtype("fp8", CPU)


def test_native_bf16_reads_the_cpu_flags() -> None:
    with open("/proc/cpuinfo") as f:
        flags = next((line for line in f if line.startswith("flags")), "").split()
    assert vae_training.native_bf16(CPU) == any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def test_bf16_epoch_trains_and_encodes_close_to_float32() -> None:
    frames = np.random.default_rng(0).integers(0, 256, (24, 64, 64, 3), dtype=np.uint8)
    results = {}
    for precision in ("float32", "bfloat16"):
        torch.manual_seed(0)
        vae = ConvVAE(VAEConfig(latent_dim=8))
        before = vae.fc_mu.weight.detach().clone()
        opt = make_adam(vae.parameters(), 1e-3)
        record = train_vae_epoch(
            vae, opt, frames, np.arange(24), 12, 0, 0, CPU, precision=precision
        )
        assert np.isfinite(record["loss"])
        assert not torch.equal(before, vae.fc_mu.weight)
        results[precision] = record["loss"]
        mu, logvar = encode_frames(vae, frames, CPU, progress=False, precision=precision)
        assert mu.dtype == np.float32 and mu.shape == (24, 8) and np.isfinite(logvar).all()
    # the same first step from the same weights: bf16 rounding moves the loss by well under 5 %
    assert results["bfloat16"] == pytest.approx(results["float32"], rel=0.05)
