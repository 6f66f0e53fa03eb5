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

A dream step draws all its noise as ONE block of uniforms (`draw_uniforms`): one call into the
generator per step instead of one per kind of noise, and the Gaussians come from pairs of those
uniforms (`normal_from_uniform`, Box–Muller), so the block's layout alone says which number
drives what.
"""

from __future__ import annotations

import math
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


def draw_uniforms(
    rows: int,
    width: int,
    generator: torch.Generator | None,
    device: torch.device | str,
    groups: int | None = None,
) -> torch.Tensor:
    """(rows, width) float32 uniforms in [0, 1) in one generator call, shared by `groups`."""
    return draw_grouped(
        lambda s: torch.rand(s, generator=generator, device=device), (rows, width), groups
    )


def gaussian_width(n: int) -> int:
    """Uniforms that `normal_from_uniform` needs for n normals (an even number ≥ n)."""
    return n + (n % 2)


def normal_from_uniform(u: torch.Tensor, n: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """n standard normals per row from `gaussian_width(n)` uniforms in [0, 1) per row.

    Box–Muller: with m = width / 2, the first m columns give the radius √(−2 ln(1 − u)) (1 − u
    is in (0, 1], so the log is finite) and the last m the angle 2πu; column j < m is r·cos θ,
    column m + j is r·sin θ. `out` (rows, n) receives them when given.
    """
    m = u.shape[-1] // 2
    r = torch.rsub(u[..., :m], 1.0).log_().mul_(-2.0).sqrt_()
    theta = u[..., m : 2 * m] * (2.0 * math.pi)
    if out is None:
        out = torch.empty((*u.shape[:-1], n), dtype=u.dtype, device=u.device)
    torch.mul(r, torch.cos(theta), out=out[..., :m])
    torch.mul(r[..., : n - m], theta[..., : n - m].sin_(), out=out[..., m:])
    return out
