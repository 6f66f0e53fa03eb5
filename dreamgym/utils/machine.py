"""One line each on the machine a run is on, for test logs and benchmark tables.

Float32 kernels sum in another order on another CPU and bf16 is native only on some
(`dreamgym.utils.hardware`), so a log that shows a number names the machine it came from.
Torch-free until `torch_line` is called.
"""

from __future__ import annotations

import os

from dreamgym.utils.hardware import BF16_CPU_FLAGS, cpu_flags, cpu_model

_SHOWN_FLAGS = ("avx2", "avx512f", *BF16_CPU_FLAGS)


def cpu_line() -> str:
    """The CPU model, its core count and the flags that decide the kernels torch runs."""
    flags = set(cpu_flags())
    shown = " ".join(f for f in _SHOWN_FLAGS if f in flags) or "none of " + "/".join(_SHOWN_FLAGS)
    return f"CPU: {cpu_model()}, {os.cpu_count()} cores, flags: {shown}"


def torch_line() -> str:
    """Torch's version, its intra-op threads and the CUDA device it sees, if any."""
    import torch

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads, CUDA: {cuda}"
