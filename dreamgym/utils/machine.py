"""What machine a run is on: CPU model, its bf16 support, torch's version and threads.

Float32 kernels sum in another order on another CPU, and bf16 is native only on some, so test
logs and benchmark tables name the machine they ran on. Torch-free until `torch_line` is called.
"""

from __future__ import annotations

import platform
from pathlib import Path

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""/proc/cpuinfo flags of x86 CPUs that do bf16 matmuls natively (AVX-512 BF16, AMX)."""
_SHOWN_FLAGS = ("avx2", "avx512f", *BF16_CPU_FLAGS)


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) ..."), or the platform's word for it."""
    for line in _cpuinfo_lines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    for line in _cpuinfo_lines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively; elsewhere torch emulates it, slower than fp32."""
    return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)


def cpu_line() -> str:
    """One line: the CPU model, its core count and the flags that decide the kernels used."""
    import os

    flags = cpu_flags()
    shown = " ".join(f for f in _SHOWN_FLAGS if f in flags) or "none of " + "/".join(_SHOWN_FLAGS)
    return f"CPU: {cpu_model()}, {os.cpu_count()} cores, flags: {shown}"


def torch_line() -> str:
    """One line: torch's version, its intra-op threads and whether it sees CUDA."""
    import torch

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads, CUDA: {cuda}"


def _cpuinfo_lines() -> list[str]:
    path = Path("/proc/cpuinfo")
    try:
        return path.read_text().splitlines() if path.exists() else []
    except OSError:
        return []
