"""What the machine computes natively: the one place that decides when bfloat16 pays.

bfloat16 matmuls are 7–8× float32's rate where the hardware has them (AVX-512 BF16 or AMX on
x86 CPUs, CUDA GPUs with bf16), and ~10× SLOWER where torch emulates them (an AVX2-only CPU:
V trained at 13 instead of 171 img/s). So every "auto" precision in dreamgym (`--vae-precision`,
the dream's `precision`) asks `native_bf16` and picks bfloat16 only where it is native.

No torch at import: the CLI and configs read these names without loading it.
"""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "float32", "bfloat16")
"""Compute precisions a user can ask for: "auto" = bfloat16 where native, else float32."""
PRECISION_HELP = (
    "M's matmuls in the dream: auto (bfloat16 only where the hardware has it), float32 or bfloat16"
)
"""The CLI's help for every job's `--precision` (the dream's `DreamSettings.precision`)."""
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""x86 CPU flags (as /proc/cpuinfo spells them) of native bfloat16 matmuls."""


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or what `platform` knows."""
    line = _cpuinfo_line("model name")
    return line.split(":", 1)[1].strip() if line else (platform.processor() or "unknown")


def cpu_flags() -> list[str]:
    """The CPU's feature flags (/proc/cpuinfo "flags"; empty where not Linux)."""
    line = _cpuinfo_line("flags")
    return line.split(":", 1)[1].split() if line else []


def _cpuinfo_line(key: str) -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(key)), None)
    except OSError:  # not Linux: no cheap way to tell
        return None


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 natively (CUDA with bf16, or a CPU with AVX-512 BF16/AMX)."""
    if device.type == "cuda":
        import torch

        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    flags = cpu_flags()
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def check_precision(precision: str) -> str:
    """`precision` if it is one of PRECISIONS; otherwise a ValueError naming them."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def matmul_mode(precision: str, device: torch.device) -> str:
    """How a resolved precision's matmuls run on `device` (`dreamgym.models.mdnrnn.MATMUL_MODES`):
    "float32", "bfloat16", or "bfloat16-emulated" (bf16's numbers through float32 matmuls where
    the hardware has no bf16: the same results at float32's speed instead of torch's 1%)."""
    if resolve_precision(precision, device) == "float32":
        return "float32"
    return "bfloat16" if native_bf16(device) else "bfloat16-emulated"


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "float32" or "bfloat16": what `precision` means on `device` ("auto": bf16 if native)."""
    if check_precision(precision) == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    return precision
