"""The held-out k-step open-loop z error, where it used to live (`dreamgym.training.openloop`).

The measure moved down to `training/` so that `dreamgym train` can score a trained memory with
it (training may not import evaluation); this module keeps the old import path working.
"""

from dreamgym.training.openloop import (
    OPENLOOP_HORIZONS,
    MDNRNNOpenLoop,
    OpenLoopConfig,
    OpenLoopMemory,
    OpenLoopReport,
    RSSMOpenLoop,
    openloop_error,
    openloop_memory,
    openloop_windows,
)

__all__ = [
    "OPENLOOP_HORIZONS",
    "MDNRNNOpenLoop",
    "OpenLoopConfig",
    "OpenLoopMemory",
    "OpenLoopReport",
    "RSSMOpenLoop",
    "openloop_error",
    "openloop_memory",
    "openloop_windows",
]
