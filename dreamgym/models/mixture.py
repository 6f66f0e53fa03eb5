"""M's mixture over z_{t+1}: its likelihood, its mean, and drawing from it at temperature τ.

Both kinds of mixture (`dreamgym.models.mdnrnn`): `logpi` is (..., K, Z) for a mixture per
latent dim and (..., K) for one shared by all of z; `mu` and `logsigma` are (..., K, Z) for both,
so the functions tell the kinds apart by the shape of `logpi` (`mixture_kind`).

Drawing (`sample_mdn`, and the dream's `dreamgym.models.mdn_kernel`) picks components by
inverse CDF (`pick_components`) from one block of uniforms: weights ∝ π^{1/τ}, σ × √τ
(Ha & Schmidhuber 2018, §4.5).
"""

from __future__ import annotations

import math

import torch

from dreamgym.models.noise import draw_uniforms, gaussian_width, normal_from_uniform

LOG_2PI = math.log(2.0 * math.pi)
NLL_REDUCTIONS = ("mean", "sum")
"""How the NLL of z_{t+1} is reduced over z's dims: averaged (the paper's code) or summed."""


def mixture_kind(logpi: torch.Tensor, mu: torch.Tensor) -> str:
    """ "per_dim" when logpi is (..., K, Z) like mu, "shared" when it is (..., K)."""
    if logpi.shape == mu.shape:
        return "per_dim"
    if logpi.shape == mu.shape[:-1]:
        return "shared"
    raise ValueError(
        f"logpi {tuple(logpi.shape)} fits neither a shared mixture (mu's shape without Z) nor a "
        f"per-dim one (mu's shape) for mu {tuple(mu.shape)}"
    )


def mdn_log_prob(
    logpi: torch.Tensor, mu: torch.Tensor, logsigma: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """log p(target) under the mixture; target (..., Z) → (...,). Stable via logsumexp.

    Per dim: log p = Σ_d log Σ_k π_kd N(z_d; μ_kd, σ_kd) (each dim its own mixture); shared:
    log Σ_k π_k Π_d N(z_d; μ_kd, σ_kd).
    """
    t = target.unsqueeze(-2)  # (..., 1, Z)
    normed = (t - mu) * torch.exp(-logsigma)
    if mixture_kind(logpi, mu) == "per_dim":
        lognormal = -0.5 * normed.pow(2) - logsigma - 0.5 * LOG_2PI  # (..., K, Z)
        return torch.logsumexp(logpi + lognormal, dim=-2).sum(dim=-1)
    comp = (-0.5 * normed.pow(2) - logsigma - 0.5 * LOG_2PI).sum(dim=-1)  # (..., K)
    return torch.logsumexp(logpi + comp, dim=-1)


def mdn_nll(
    logpi: torch.Tensor,
    mu: torch.Tensor,
    logsigma: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: str = "sum",
) -> torch.Tensor:
    """Mean negative log-likelihood per step, optionally masked.

    `reduction` says how a step's NLL is reduced over z's dims: "sum" (the joint NLL of z) or
    "mean" (the paper's code: the loss is the mean over every (step, dim)).
    """
    if reduction not in NLL_REDUCTIONS:
        raise ValueError(f"reduction must be one of {NLL_REDUCTIONS}, got {reduction!r}")
    nll = -mdn_log_prob(logpi, mu, logsigma, target)
    if reduction == "mean":
        nll = nll / mu.shape[-1]
    if mask is None:
        return nll.mean()
    mask = mask.to(nll.dtype)
    return (nll * mask).sum() / mask.sum().clamp(min=1.0)


def mdn_mean(logpi: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """The mixture's mean E[z] = Σ_k π_k μ_k (per dim or shared), (..., Z)."""
    if mixture_kind(logpi, mu) == "per_dim":
        return (logpi.exp() * mu).sum(dim=-2)
    return (logpi.exp().unsqueeze(-1) * mu).sum(dim=-2)


def pick_components(
    logits: torch.Tensor, uniforms: torch.Tensor, temperature: float, values: torch.Tensor
) -> torch.Tensor:
    """The values of mixture components drawn by inverse CDF: values (B, V, K, Z) → (B, V, Z).

    `logits` (B, K, C) with C = Z (a mixture per dim) or 1 (one for all of z), `uniforms`
    (B, C). Column j draws component k with probability softmax(logits[:, :, j] / τ)_k, i.e.
    π_k^{1/τ} / Σ π^{1/τ} (paper §4.5; log π or the raw logits give the same draw): with the
    weights w_k = exp((l_k − max l) / τ) and their running sums W_k, it is the first k with
    W_k > u · W_{K−1}. A zero weight is never drawn (its W_k equals the one before).

    Every step over K is an elementwise op on (B, C) slices, not a reduction over a dim of size
    K (a CPU `argmax` over K = 5 took a third of a dream step), and the drawn component's values
    are selected on the way (no index, no gather). The values must be finite (a NaN in any
    component would reach the draw).
    """
    k = logits.shape[1]
    if k == 1:
        return values[:, :, 0]
    scaled = logits if temperature == 1.0 else logits * (1.0 / temperature)
    top = torch.maximum(scaled[:, 0], scaled[:, 1])
    for j in range(2, k):
        torch.maximum(top, scaled[:, j], out=top)
    cum = torch.sub(scaled, top.unsqueeze(1)).exp_()
    for j in range(1, k):
        cum[:, j].add_(cum[:, j - 1])
    threshold = (uniforms * cum[:, k - 1]).unsqueeze(1)  # (B, 1, C)
    at_least = torch.empty_like(threshold)
    picked = values[:, :, 0].clone()
    for j in range(1, k):
        # 1.0 where the draw is component j or later; lerp by exactly 0 or 1 selects exactly
        # (torch's CPU `where` is 5× slower than `lerp` here)
        torch.le(cum[:, j - 1 : j], threshold, out=at_least)
        picked.lerp_(values[:, :, j], at_least)
    return picked


def mixture_noise_width(logpi: torch.Tensor, mu: torch.Tensor) -> int:
    """Uniforms one row of `sample_mdn` uses: one per mixture choice, then the Gaussians'."""
    choices = mu.shape[-1] if mixture_kind(logpi, mu) == "per_dim" else 1
    return choices + gaussian_width(mu.shape[-1])


def sample_mdn(
    logpi: torch.Tensor,
    mu: torch.Tensor,
    logsigma: torch.Tensor,
    temperature: float,
    generator: torch.Generator | None = None,
    noise_groups: int | None = None,
    uniforms: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw z_{t+1} (B, Z) at temperature τ: weights ∝ π^{1/τ}, σ × √τ (paper §4.5).

    A per-dim mixture picks a component for each dim on its own (τ scales each dim's logits);
    a shared one picks one component for the whole of z. All the noise is one block of
    uniforms (B, `mixture_noise_width`): first the choices (`pick_components`, inverse CDF),
    then the Gaussians (`normal_from_uniform`). `uniforms` passes that block in (the dream core
    draws a step's noise in one call); otherwise it is drawn from `generator`. `noise_groups` R:
    rows i ≡ j (mod R) use the same random numbers (common random numbers,
    `dreamgym.models.noise`); None: every row its own.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b, k, z = mu.shape
    per_dim = mixture_kind(logpi, mu) == "per_dim"
    choices = z if per_dim else 1
    if uniforms is None:
        width = mixture_noise_width(logpi, mu)
        uniforms = draw_uniforms(b, width, generator, mu.device, noise_groups).to(mu.dtype)
    values = torch.stack([mu, logsigma], dim=1)  # (B, 2, K, Z)
    mu_k, logsigma_k = pick_components(
        logpi.reshape(b, k, choices), uniforms[:, :choices], temperature, values
    ).unbind(1)
    sigma_k = torch.exp(logsigma_k) * math.sqrt(temperature)
    eps = normal_from_uniform(uniforms[:, choices : choices + gaussian_width(z)], z)
    return mu_k + sigma_k * eps
