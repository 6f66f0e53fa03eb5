"""Random draws shared by groups of batch rows: common random numbers for a batched dream.

CMA-ES compares candidates by their dream returns; when every candidate of a generation meets
the same initial latents, the same mixture noise and the same done draws for its r-th rollout
(common random numbers), the differences between their returns are due to the parameters, not to
luck. In a batch laid out as P candidates × R rollouts (row p·R + r), that means rows that are
equal modulo R draw the same numbers.

`draw_grouped` does it exactly and cheaply: it draws once per group (R rows) from the batch's one
`torch.Generator` and repeats the block P times, so CRN costs fewer random numbers than
independent noise, and needs no per-row generator. With `groups=None` it is the plain draw, so
code without CRN draws exactly what it drew before.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def draw_grouped(
    make: Callable[[tuple[int, ...]], torch.Tensor], shape: tuple[int, ...], groups: int | None
) -> torch.Tensor:
    """`make(shape)`, except that with `groups` rows i and j are equal when i ≡ j (mod groups).

    `make` draws a tensor of the shape it is given (e.g. `lambda s: torch.rand(s, generator=g)`);
    shape[0] must be a multiple of `groups`.
    """
    if groups is None or groups == shape[0]:
        return make(shape)
    if groups < 1 or shape[0] % groups:
        raise ValueError(f"noise groups ({groups}) must divide the batch size ({shape[0]})")
    block = make((groups, *shape[1:]))
    return block.repeat(shape[0] // groups, *([1] * (len(shape) - 1)))
