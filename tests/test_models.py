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
    mdn_mean,
    mdn_nll,
    mixture_kind,
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


@pytest.mark.parametrize("reward_event", [0.0, 3.3])
def test_mdnrnn_step_matches_sequence_forward(reward_event: float) -> None:
    """The env's one-step update and the training's sequence forward are the same function
    (with and without an event head)."""
    torch.manual_seed(0)
    model = MDNRNN(
        MDNRNNConfig(
            latent_dim=5, action_dim=3, hidden_dim=16, n_mixtures=3, reward_event=reward_event
        )
    )
    b, t = 4, 6
    z, a = torch.randn(b, t, 5), torch.randn(b, t, 3)
    state0 = (0.1 * torch.randn(b, 16), 0.1 * torch.randn(b, 16))
    seq_out, (h_seq, c_seq) = model(z, a, state0)
    state = state0
    for i in range(t):
        out, state = model.step(z[:, i], a[:, i], state)
        for got, want in zip(out, seq_out, strict=True):
            if want is None:  # no event head
                assert got is None and not reward_event
                continue
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
            if want is None:  # no event head
                assert got is None
                continue
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


# --- per-dim mixtures (the paper's M) ------------------------------------------------------------


def _per_dim_mixture(shape=(2, 3), k=3, z=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    logpi = torch.log_softmax(torch.randn(*shape, k, z, generator=g), dim=-2)
    mu = torch.randn(*shape, k, z, generator=g)
    logsigma = 0.3 * torch.randn(*shape, k, z, generator=g)
    target = torch.randn(*shape, z, generator=g)
    return logpi, mu, logsigma, target


def test_per_dim_log_prob_is_a_sum_of_one_dim_mixtures_and_nll_mean_divides_by_z() -> None:
    logpi, mu, logsigma, target = (t.double() for t in _per_dim_mixture())
    assert mixture_kind(logpi, mu) == "per_dim" and mixture_kind(logpi[..., 0], mu) == "shared"
    want = torch.zeros(target.shape[:-1], dtype=torch.float64)
    for d in range(target.shape[-1]):
        normal = torch.distributions.Normal(mu[..., d], logsigma[..., d].exp())
        dens = (logpi[..., d].exp() * normal.log_prob(target[..., d : d + 1]).exp()).sum(-1)
        want = want + dens.log()
    assert torch.allclose(mdn_log_prob(logpi, mu, logsigma, target), want, atol=1e-10)
    total = mdn_nll(logpi, mu, logsigma, target, reduction="sum")
    assert torch.allclose(total, -want.mean())
    assert torch.allclose(mdn_nll(logpi, mu, logsigma, target, reduction="mean"), total / 4)
    with pytest.raises(ValueError, match="reduction"):
        mdn_nll(logpi, mu, logsigma, target, reduction="max")
    with pytest.raises(ValueError, match="fits neither"):
        mdn_log_prob(logpi[..., :2], mu, logsigma, target)


def test_per_dim_sampling_picks_a_component_per_dim() -> None:
    """τ → 0 gives each dim its own best component's mean: dims 0 and 2 pick k=0, dim 1 k=1."""
    n, k, z = 8, 2, 3
    pi = torch.tensor([[0.9, 0.2, 0.7], [0.1, 0.8, 0.3]])  # (K, Z): each dim's weights
    logpi = pi.log().expand(n, k, z)
    mu = torch.tensor([[1.0, 2.0, 3.0], [-1.0, -2.0, -3.0]]).expand(n, k, z)
    logsigma = torch.zeros(n, k, z)
    cold = sample_mdn(logpi, mu, logsigma, 1e-8, torch.Generator().manual_seed(0))
    assert torch.allclose(cold, torch.tensor([1.0, -2.0, 3.0]).expand(n, z), atol=1e-3)
    # a shared mixture cannot do that: one component for the whole vector
    shared = sample_mdn(pi[:, 0].log().expand(n, k), mu, logsigma, 1e-8)
    assert torch.allclose(shared, mu[:, 0], atol=1e-3)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_per_dim_sampling_frequencies_are_per_dim_and_independent(temperature: float) -> None:
    n, k, z = 100_000, 3, 2
    pi = torch.tensor([[0.6, 0.1], [0.3, 0.3], [0.1, 0.6]])  # dim 0 prefers k=0, dim 1 k=2
    logpi = pi.log().expand(n, k, z)
    mu = torch.tensor([0.0, 100.0, 200.0]).view(1, k, 1).expand(n, k, z)
    logsigma = torch.full((n, k, z), -3.0)
    samples = sample_mdn(logpi, mu, logsigma, temperature, torch.Generator().manual_seed(0))
    chosen = torch.round(samples / 100.0).long()  # (n, Z) component per dim
    want = pi.double() ** (1.0 / temperature)
    want = want / want.sum(0)
    for d in range(z):
        freq = torch.bincount(chosen[:, d], minlength=k).double() / n
        assert torch.allclose(freq, want[:, d], atol=0.01), (d, freq, want[:, d])
    joint = (chosen[:, 0] == 0) & (chosen[:, 1] == 2)  # dims choose independently
    assert abs(joint.double().mean().item() - (want[0, 0] * want[2, 1]).item()) < 0.01


def test_per_dim_sampling_spreads_with_temperature_and_is_seeded() -> None:
    logpi, mu, logsigma, _ = _per_dim_mixture(shape=(20_000,), k=3, z=4)
    logpi, mu, logsigma = logpi[:1].expand_as(logpi), mu[:1].expand_as(mu), logsigma[:1]
    logsigma = logsigma.expand_as(mu)
    spread = [
        sample_mdn(logpi, mu, logsigma, t, torch.Generator().manual_seed(3)).std(0).mean().item()
        for t in (0.1, 1.0, 2.0)
    ]
    assert spread[0] < spread[1] < spread[2]
    a = sample_mdn(logpi[:16], mu[:16], logsigma[:16], 1.0, torch.Generator().manual_seed(7))
    b = sample_mdn(logpi[:16], mu[:16], logsigma[:16], 1.0, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_mdn_mean_of_both_kinds() -> None:
    logpi, mu, _, _ = _per_dim_mixture()
    assert torch.allclose(mdn_mean(logpi, mu), (logpi.exp() * mu).sum(-2))
    shared = logpi[..., 0]
    assert torch.allclose(mdn_mean(shared, mu), (shared.exp().unsqueeze(-1) * mu).sum(-2))


def test_config_without_mixture_key_is_shared() -> None:
    cfg = MDNRNNConfig(latent_dim=4, action_dim=2, hidden_dim=8, n_mixtures=3)
    assert cfg.mixture == "per_dim"  # new models
    old = {k: v for k, v in cfg.to_dict().items() if k != "mixture"}
    assert MDNRNNConfig.from_dict(old).mixture == "shared"
    assert MDNRNNConfig.from_dict(cfg.to_dict()).mixture == "per_dim"
    with pytest.raises(ValueError, match="mixture"):
        MDNRNNConfig(mixture="joint")


# Numbers of the bundled CarRacing world as shipped (per-dim M on whole episodes, 602 episodes;
# same inputs and seeds). A change to M's weights, its forward or the dream's step shows up here.
# Old shared-mixture bundles: `test_config_without_mixture_key_is_shared`.
CARRACING_PINS = {
    "logpi": [-1.7462272644042969, -1.5902537107467651, -2.002084970474243],
    "mu": -0.1669173389673233,
    "done": -7.622452735900879,
    # the dream's draw since the inverse-CDF sampler (one block of uniforms per step, Box–Muller)
    "obs": [0.015100618824362755, -0.4139484763145447, 1.5757502317428589],
    "rewards": 7.435611009597778,
}
M_TOLERANCE = 5e-6
"""M's outputs, |Δ| ≤ 5e-6 · max(1, |x|). Float32 kernels of another CPU, BLAS or thread count sum in
another order and move these by ~1e-7 (an Intel AVX-512 CPU gives logpi −1.7462273836 where an AMD
AVX2 one gives −1.7462272644); scaling one weight matrix of M by 1.001 moves them by 3e-5–1.4e-4."""
DREAM_TOLERANCE = 1e-4
"""The dream after five steps, |Δ| ≤ 1e-4 · max(1, |x|): the draws are the same numbers (one seeded
generator on the CPU), so only rounding differs. Scaling every weight of M by 1 + 1e-7 (more than
a change of CPU does) moves these by ≤ 1e-6; by 1.001, by 1e-3–7e-3."""


@pytest.mark.parametrize("name", ["carracing", "doom_takecover"])
def test_bundled_worlds_are_per_dim_and_trained_on_whole_episodes(name: str) -> None:
    from dreamgym.world import World

    world = World.load(name)
    assert world.config["mdnrnn"]["mixture"] == "per_dim"
    assert world.latent_dim == (64 if name == "doom_takecover" else 32)
    options = world.config["provenance"]["training"]
    assert options["rnn_sequences"] == "episodes" and options["seq_len"] == 100


def test_bundled_carracing_predicts_and_dreams_as_shipped() -> None:
    """The bundled CarRacing world's M and dream give the numbers measured when it was shipped."""
    import gymnasium as gym
    import numpy as np

    from dreamgym.world import World

    pins = CARRACING_PINS
    world = World.load("carracing")
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, world.latent_dim, generator=g)
    a = torch.rand(2, 3, world.mdnrnn.config.action_dim, generator=g)
    with torch.no_grad():
        out, _ = world.mdnrnn(z, a)
    close = {"rel": M_TOLERANCE, "abs": M_TOLERANCE}
    assert out.logpi[0, 0, :3, 0].tolist() == pytest.approx(pins["logpi"], **close)
    assert float(out.mu[1, 2, 0, 0]) == pytest.approx(pins["mu"], **close)
    assert float(out.done_logit[0, 0]) == pytest.approx(pins["done"], **close)
    env = gym.make("DreamCarRacing-v0", device="cpu")
    env.reset(seed=123)
    total = 0.0
    for _ in range(5):
        obs, r, *_ = env.step(np.array([0.1, 0.5, 0.0], np.float32))
        total += float(r)
    env.close()
    assert obs[:3].tolist() == pytest.approx(pins["obs"], rel=DREAM_TOLERANCE, abs=DREAM_TOLERANCE)
    assert total == pytest.approx(pins["rewards"], rel=DREAM_TOLERANCE, abs=DREAM_TOLERANCE)


@pytest.mark.parametrize("mixture", ["shared", "per_dim"])
def test_forward_with_resets_carries_state_and_zeroes_it_at_episode_starts(mixture: str) -> None:
    torch.manual_seed(0)
    cfg = MDNRNNConfig(latent_dim=3, action_dim=2, hidden_dim=8, n_mixtures=2, mixture=mixture)
    model = MDNRNN(cfg)
    b, t = 2, 12
    z, a = torch.randn(b, t, 3), torch.randn(b, t, 2)
    resets = torch.zeros(b, t, dtype=torch.bool)
    resets[:, 0] = True
    resets[0, 5] = True  # row 0: a second episode starts at step 5
    full, (h, c) = model(z, a, resets=resets)
    # the same pass in chunks of 4 with the state carried
    state, pieces = None, []
    for i in range(0, t, 4):
        out, state = model(z[:, i : i + 4], a[:, i : i + 4], state, resets[:, i : i + 4])
        pieces.append(out)
    for j, field in enumerate(full):
        if field is None:  # no event head
            continue
        chunked = torch.cat([p[j] for p in pieces], dim=1)
        assert torch.allclose(chunked, field, atol=1e-6)
    assert torch.allclose(state[0], h, atol=1e-6) and torch.allclose(state[1], c, atol=1e-6)
    # row 0's second episode is predicted as from h = 0; row 1 (no reset) as one sequence
    fresh, _ = model(z[:1, 5:], a[:1, 5:])
    plain, _ = model(z[1:], a[1:])
    assert torch.allclose(full.mu[0, 5:], fresh.mu[0], atol=1e-6)
    assert torch.allclose(full.mu[1], plain.mu[0], atol=1e-6)
    assert not torch.allclose(full.mu[0, 5:], model(z[:1], a[:1])[0].mu[0, 5:], atol=1e-4)


def test_per_dim_step_matches_sequence_forward() -> None:
    torch.manual_seed(0)
    model = MDNRNN(MDNRNNConfig(latent_dim=5, action_dim=3, hidden_dim=16, n_mixtures=3))
    z, a = torch.randn(4, 6, 5), torch.randn(4, 6, 3)
    seq_out, _ = model(z, a)
    state = model.initial_state(4)
    with torch.no_grad():
        for i in range(6):
            out, state = model.step(z[:, i], a[:, i], state)
            for got, want in zip(out, seq_out, strict=True):
                if want is None:  # no event head
                    assert got is None
                    continue
                assert torch.allclose(got, want[:, i], atol=1e-5)
