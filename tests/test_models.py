"""V and M: the mixture likelihood, temperature sampling, and step ≡ sequence consistency."""

from __future__ import annotations

import math

import pytest
import torch

from dreamgym.models.mdnrnn import (
    LOG_SIGMA_MAX,
    LOG_SIGMA_MIN,
    MDNRNN,
    MDNRNNConfig,
    mdn_log_prob,
    mdn_nll,
    sample_mdn,
)
from dreamgym.models.vae import ConvVAE, VAEConfig, vae_loss


def _direct_nll(logpi, mu, logsigma, target, mask=None):
    """-log Σ_k π_k Π_d N(target_d; mu_kd, σ_kd), looped over components, in float64."""
    k = logpi.shape[-1]
    prob = torch.zeros(logpi.shape[:-1], dtype=torch.float64)
    for i in range(k):
        normal = torch.distributions.Normal(
            mu[..., i, :].double(), logsigma[..., i, :].double().exp()
        )
        comp = normal.log_prob(target.double()).sum(-1).exp()
        prob = prob + logpi[..., i].double().exp() * comp
    nll = -torch.log(prob)
    if mask is None:
        return nll.mean()
    return (nll * mask).sum() / mask.sum()


def _random_mixture(shape=(2, 3), k=3, z=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    logpi = torch.log_softmax(torch.randn(*shape, k, generator=g), dim=-1)
    mu = torch.randn(*shape, k, z, generator=g)
    logsigma = 0.3 * torch.randn(*shape, k, z, generator=g)
    target = torch.randn(*shape, z, generator=g)
    return logpi, mu, logsigma, target


def test_mdn_nll_matches_direct_computation() -> None:
    logpi, mu, logsigma, target = _random_mixture()
    got = mdn_nll(logpi.double(), mu.double(), logsigma.double(), target.double())
    want = _direct_nll(logpi, mu, logsigma, target)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-10)
    # float32 as used in training: same value to float precision
    assert abs(mdn_nll(logpi, mu, logsigma, target).item() - want.item()) < 1e-5


def test_mdn_nll_mask_averages_only_valid_steps() -> None:
    logpi, mu, logsigma, target = _random_mixture()
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    got = mdn_nll(logpi.double(), mu.double(), logsigma.double(), target.double(), mask.double())
    want = _direct_nll(logpi, mu, logsigma, target, mask.double())
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-10)
    # an all-zero mask is no step at all, not a division by zero
    assert mdn_nll(logpi, mu, logsigma, target, torch.zeros(2, 3)).item() == 0.0


def test_mdn_nll_is_finite_for_extreme_inputs() -> None:
    """Far targets, σ at its bounds, near-zero mixture weights: the direct sum underflows, ours not."""
    b, k, z = 4, 5, 32
    logits = torch.tensor([[80.0, -80.0, 0.0, 30.0, -30.0]]).repeat(b, 1).requires_grad_()
    mu = torch.zeros(b, k, z, requires_grad=True)
    logsigma = torch.full((b, k, z), LOG_SIGMA_MIN).requires_grad_()
    target = torch.tensor([1e3, -1e3, 50.0, 0.0]).view(b, 1).repeat(1, z)
    logpi = torch.log_softmax(logits, dim=-1)
    nll = mdn_nll(logpi, mu, logsigma, target)
    assert torch.isfinite(nll)
    assert nll.item() > 1e6  # a thousand σ away is (correctly) very unlikely
    assert torch.isinf(_direct_nll(logpi.detach(), mu.detach(), logsigma.detach(), target))
    nll.backward()
    for t in (logits, mu, logsigma):
        assert torch.isfinite(t.grad).all()
    # the heads' bounded log σ: saturated raw outputs stay inside [MIN, MAX]
    model = MDNRNN(MDNRNNConfig(latent_dim=4, action_dim=3, hidden_dim=8, n_mixtures=3))
    out = model.heads(torch.full((2, 8), 1e4))
    assert out.logsigma.min() >= LOG_SIGMA_MIN and out.logsigma.max() <= LOG_SIGMA_MAX
    assert torch.isfinite(
        mdn_log_prob(out.logpi, out.mu, out.logsigma, torch.full((2, 4), 1e4))
    ).all()


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sample_mdn_component_frequencies(temperature: float) -> None:
    """Component k is chosen with probability π_k^{1/τ} / Σ_j π_j^{1/τ} (paper §4.5)."""
    n, k, z = 100_000, 3, 2
    pi = torch.tensor([0.6, 0.3, 0.1])
    logpi = pi.log().expand(n, k)
    centres = torch.tensor([0.0, 100.0, 200.0])
    mu = centres.view(1, k, 1).expand(n, k, z)
    logsigma = torch.full((n, k, z), -3.0)
    gen = torch.Generator().manual_seed(0)
    samples = sample_mdn(logpi, mu, logsigma, temperature, gen)
    chosen = torch.round(samples[:, 0] / 100.0).long()
    assert torch.equal(
        chosen, torch.round(samples[:, 1] / 100.0).long()
    )  # one component per sample
    freq = torch.bincount(chosen, minlength=k).double() / n
    want = pi.double() ** (1.0 / temperature)
    want = want / want.sum()
    assert torch.allclose(freq, want, atol=0.01), (freq, want)


@pytest.mark.parametrize("temperature", [0.01, 1.0, 1.5])
def test_sample_mdn_scales_sigma_by_sqrt_temperature(temperature: float) -> None:
    n, z = 50_000, 3
    mu = torch.tensor([1.0, -2.0, 3.0]).view(1, 1, z).expand(n, 1, z)
    logsigma = torch.log(torch.tensor([0.5, 1.0, 2.0])).view(1, 1, z).expand(n, 1, z)
    samples = sample_mdn(
        torch.zeros(n, 1), mu, logsigma, temperature, torch.Generator().manual_seed(1)
    )
    want_std = torch.tensor([0.5, 1.0, 2.0]) * math.sqrt(temperature)
    assert torch.allclose(samples.std(0), want_std, rtol=0.03)
    assert torch.allclose(samples.mean(0), mu[0, 0], atol=0.05 * want_std.max().item() + 1e-3)


def test_sample_mdn_seeded_and_validates_temperature() -> None:
    logpi, mu, logsigma, _ = _random_mixture(shape=(16,), k=3, z=4)
    a = sample_mdn(logpi, mu, logsigma, 1.0, torch.Generator().manual_seed(7))
    b = sample_mdn(logpi, mu, logsigma, 1.0, torch.Generator().manual_seed(7))
    c = sample_mdn(logpi, mu, logsigma, 1.0, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="temperature"):
        sample_mdn(logpi, mu, logsigma, 0.0)


def test_mdnrnn_step_matches_sequence_forward() -> None:
    """The env's one-step update and the training's sequence forward are the same function."""
    torch.manual_seed(0)
    model = MDNRNN(MDNRNNConfig(latent_dim=5, action_dim=3, hidden_dim=16, n_mixtures=3))
    b, t = 4, 6
    z, a = torch.randn(b, t, 5), torch.randn(b, t, 3)
    state0 = (0.1 * torch.randn(b, 16), 0.1 * torch.randn(b, 16))
    seq_out, (h_seq, c_seq) = model(z, a, state0)
    state = state0
    for i in range(t):
        out, state = model.step(z[:, i], a[:, i], state)
        for got, want in zip(out, seq_out, strict=True):
            assert torch.allclose(got, want[:, i], atol=1e-5)
    assert torch.allclose(state[0], h_seq, atol=1e-5) and torch.allclose(state[1], c_seq, atol=1e-5)
    # the sequence forward from no state starts at h = c = 0
    out_none, _ = model(z, a)
    out_zero, _ = model(z, a, model.initial_state(b))
    assert torch.allclose(out_none.mu, out_zero.mu)


@pytest.mark.parametrize("mixture", ["shared", "per_dim"])
def test_mdnrnn_output_shapes_and_done_probability(mixture: str) -> None:
    cfg = MDNRNNConfig(
        latent_dim=4, action_dim=2, hidden_dim=8, n_mixtures=3, done_pos_weight=4.0, mixture=mixture
    )
    model = MDNRNN(cfg)
    assert model.head.out_features == (3 if mixture == "shared" else 12) + 2 * 3 * 4 + 2
    out, (h, c) = model.step(torch.zeros(5, 4), torch.zeros(5, 2), model.initial_state(5))
    pi_shape = (5, 3) if mixture == "shared" else (5, 3, 4)
    assert out.logpi.shape == pi_shape and out.mu.shape == out.logsigma.shape == (5, 3, 4)
    assert (
        out.reward.shape == (5,) and out.done_logit.shape == (5,) and h.shape == c.shape == (5, 8)
    )
    k_dim = -1 if mixture == "shared" else -2
    assert torch.allclose(out.logpi.exp().sum(k_dim), torch.ones(pi_shape[:1] + pi_shape[2:]))
    seq, _ = model(torch.zeros(2, 7, 4), torch.zeros(2, 7, 2))
    assert seq.logpi.shape == (2, 7, *pi_shape[1:]) and seq.mu.shape == (2, 7, 3, 4)
    # positive weight w multiplies the odds in training; done_probability divides them back
    p = model.done_probability(torch.tensor([0.0, math.log(4.0)]))
    assert torch.allclose(p, torch.tensor([0.2, 0.5]))


def test_vae_shapes_and_uint8_decoding() -> None:
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(latent_dim=8))
    frames = torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8)
    mu, logvar = vae.encode(frames)
    assert mu.shape == logvar.shape == (3, 8)
    recon, _, _ = vae(frames, torch.Generator().manual_seed(0))
    assert recon.shape == (3, 3, 64, 64) and 0.0 <= recon.min() and recon.max() <= 1.0
    img = vae.decode_uint8(mu)
    assert img.dtype == torch.uint8 and img.shape == (3, 64, 64, 3)
    total, rec, kl = vae_loss(recon, frames, mu, logvar)
    assert torch.isfinite(total) and torch.allclose(total, rec + kl)
    with pytest.raises(ValueError, match="64, 64, 3"):
        vae.encode(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))


def test_inference_step_equals_autograd_step_and_follows_weight_changes() -> None:
    """Without autograd, step/recurrent_step use fused cached weights; they must match the plain
    `torch.lstm_cell` path and see every change of the weights (optimizer, load_state_dict)."""
    torch.manual_seed(0)
    cfg = MDNRNNConfig(latent_dim=5, action_dim=3, hidden_dim=16, n_mixtures=3)
    model = MDNRNN(cfg)
    z, a = torch.randn(8, 5), torch.randn(8, 3)
    state = (torch.randn(8, 16), torch.randn(8, 16))

    def compare() -> None:
        ref_out, ref_state = model.step(z, a, state)  # autograd on: torch.lstm_cell + Linear
        ref_h = model.recurrent_step(z, a, state)
        with torch.inference_mode():
            out, new_state = model.step(z, a, state)
            h = model.recurrent_step(z, a, state)
        for got, want in zip((*out, *new_state, *h), (*ref_out, *ref_state, *ref_h), strict=True):
            assert torch.allclose(got, want.detach(), atol=1e-5), (got - want).abs().max()

    compare()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    out, _ = model.step(z, a, state)
    (out.mu.square().sum() + out.reward.sum() + out.done_logit.sum()).backward()
    opt.step()
    compare()
    model.load_state_dict(MDNRNN(cfg).state_dict())
    compare()
    with torch.no_grad():
        model.head.bias[-1] = 7.0  # what tests do to force the done head
        model.lstm.bias_hh_l0.zero_()
    compare()
