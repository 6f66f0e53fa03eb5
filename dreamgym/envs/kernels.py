"""Which kernel steps a world's memory in the batched dream core (`dreamgym.envs.dream`).

Every kernel offers the rows-and-uniforms interface of `dreamgym.models.mdn_kernel.DreamKernel`
(`new_rows`, `new_cell`, `reset_rows`, `step`, `noise`, the `z` / `h` / `zh` views), so the core
has one stepping path for every memory family.
"""

from __future__ import annotations

import torch

from dreamgym.envs.settings import DreamSettings
from dreamgym.models.mdn_kernel import DreamKernel
from dreamgym.models.rssm_kernel import RSSMKernel
from dreamgym.utils.hardware import matmul_mode, resolve_precision
from dreamgym.world import World


def dream_kernel(
    world: World, settings: DreamSettings, device: torch.device
) -> tuple[DreamKernel | RSSMKernel, str]:
    """(The kernel that steps `world`'s memory, its precision): the MDN-RNN's at the resolved
    precision, or the RSSM's (float32; no ensemble, no LSTM cell for obs "zch")."""
    if world.memory_kind == "rssm":
        if settings.ensemble:
            raise ValueError(
                f"ensemble dreams step MDN-RNN members; world {world.name!r} has an RSSM memory: "
                "drop `ensemble` (members=) for this world"
            )
        return RSSMKernel(world.rssm), "float32"
    precision = resolve_precision(settings.precision, device)
    return DreamKernel(world.mdnrnn, matmul_mode(precision, device)), precision
