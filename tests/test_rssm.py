"""The RSSM memory: shapes, temperature, episode resets, posterior tracking, saving, training, and
the open-loop z error it shares with the MDN-RNN. Tiny models, one thread."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from dreamgym.evaluation.openloop import OpenLoopConfig, openloop_error
from dreamgym.models.mdnrnn import MDNRNN, MDNRNNConfig
from dreamgym.models.rssm import (
    RSSM,
    STOCH_KINDS,
    RSSMConfig,
    entropy,
    temper,
)
from dreamgym.training.mdn import LatentEpisodes
from dreamgym.training.rssm import (
    RSSMTrainConfig,
    make_rssm,
    means_only,
    rssm_loss,
    train_rssm,
)
from dreamgym.training.streams import make_streams, stream_chunks

Z, A = 3, 2


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(stoch: str = "gaussian", **kw) -> RSSMConfig:
    sizes = dict(deter_dim=16, hidden_dim=16, stoch_dim=4, groups=3, classes=4)
    return RSSMConfig(latent_dim=Z, action_dim=A, stoch=stoch, **{**sizes, **kw})


def synthetic(lengths: list[int], seed: int = 0, noise: float = 0.0, const: bool = False):
    """Episodes where each action pushes z one way (plus `noise`); `const`: z never moves."""
    rng = np.random.default_rng(seed)
    lengths_a = np.asarray(lengths)
    mu = np.zeros((int((lengths_a + 1).sum()), Z), np.float32)
    actions = np.zeros((int(lengths_a.sum()), A), np.float32)
    f = s = 0
    for n in lengths:
        z = rng.normal(size=Z) if not const else np.full(Z, 0.7)
        for t in range(n + 1):
            mu[f + t] = z
            if t < n:
                a = int(rng.integers(A))
                actions[s + t, a] = 1.0
                if not const:
                    z = 0.8 * z + (0.6 if a else -0.6) + noise * rng.normal(size=Z)
        f, s = f + n + 1, s + n
    steps = int(lengths_a.sum())
    dones = np.zeros(steps, np.float32)
    dones[np.cumsum(lengths_a) - 1] = 1.0
    rewards = np.ones(steps, np.float32)
    return LatentEpisodes.from_arrays(
        mu, np.full_like(mu, -8.0), actions, rewards, dones, lengths_a
    )


@pytest.mark.parametrize("stoch", STOCH_KINDS)
def test_shapes_of_the_protocol(stoch: str) -> None:
    m = RSSM(tiny(stoch))
    b = 5
    state = m.observe(m.initial_state(b), torch.randn(b, Z), torch.zeros(b, A))
    assert state.h.shape == (b, 16) and state.s.shape == (b, m.config.stoch_size)
    step = m.imagine(state, torch.randn(b, A), temperature=1.3)
    assert step.z.shape == (b, Z) and step.reward.shape == (b,)
    assert ((step.done_probability >= 0) & (step.done_probability <= 1)).all()
    assert m.features(step.state).shape == (b, m.config.feature_dim)
    post = m.observe_sequence(
        None, torch.randn(b, 7, Z), torch.randn(b, 7, Z), torch.randn(b, 7, A)
    )
    assert post.h.shape == (b, 7, 16) and post.stats.shape == (b, 7, m.config.stats_size)
    if stoch == "categorical":
        onehots = step.state.s.view(b, 3, 4)
        torch.testing.assert_close(onehots.sum(-1), torch.ones(b, 3))


def test_gaussian_temperature_scales_the_prior_std_by_sqrt_tau() -> None:
    m = RSSM(tiny("gaussian"))
    state = m.observe(m.initial_state(4), torch.randn(4, Z), torch.zeros(4, A))
    a = torch.randn(4, A)
    mean = m.imagine(state, a, 0.0).state.s
    draws = {}
    for tau in (1.0, 0.25, 4.0):
        gen = torch.Generator().manual_seed(3)
        draws[tau] = m.imagine(state, a, tau, gen).state.s - mean
    torch.testing.assert_close(draws[0.25], 0.5 * draws[1.0])
    torch.testing.assert_close(draws[4.0], 2.0 * draws[1.0])
    stats = m.prior_stats(state.h)
    std = stats.chunk(2, dim=-1)[1]
    torch.testing.assert_close(temper(m.config, stats, 0.25).chunk(2, dim=-1)[1], 0.5 * std)


def test_categorical_entropy_falls_with_tau() -> None:
    m = RSSM(tiny("categorical"))
    with torch.no_grad():
        stats = m.prior_stats(torch.randn(6, 16))
    ents = [float(entropy(m.config, temper(m.config, stats, t)).mean()) for t in (2.0, 1.0, 0.5)]
    assert ents[0] > ents[1] > ents[2] > 0
    # and the draws follow: fewer distinct classes picked at a low τ
    with torch.no_grad():
        p = m.prior_stats(torch.randn(1, 16).expand(4000, 16))
    picks = {t: m.sample(p, t, torch.Generator().manual_seed(0)).view(4000, 3, 4) for t in (1, 0.2)}
    freq = {t: x.mean(0) for t, x in picks.items()}
    ent = {t: float(-torch.special.xlogy(f, f).sum()) for t, f in freq.items()}
    assert ent[0.2] < ent[1]


@pytest.mark.parametrize("stoch", STOCH_KINDS)
def test_an_episode_start_forgets_the_previous_episode(stoch: str) -> None:
    m = RSSM(tiny(stoch))
    b, t = 2, 8
    z_first, z_next, actions = torch.randn(b, t, Z), torch.randn(b, t, Z), torch.randn(b, t, A)
    resets = torch.zeros(b, t, dtype=torch.bool)
    resets[:, 0] = True
    resets[0, 5] = True  # row 0: a new episode at step 5
    carried = m.initial_state(b)

    def run(zf, zn, acts, state):
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            return m.observe_sequence(state, zf, zn, acts, resets, gen)

    base = run(z_first, z_next, actions, carried)
    zf2, zn2, a2 = z_first.clone(), z_next.clone(), actions.clone()
    zn2[0, :5] += 3.0  # the earlier episode of row 0, seen differently
    a2[0, :5] = -a2[0, :5]
    other = m.observe_sequence(m.initial_state(b), zf2, zn2, a2, resets)  # different noise too
    assert not torch.allclose(base.h[0, :5], other.h[0, :5])
    again = run(zf2, zn2, a2, carried)
    torch.testing.assert_close(again.h[0, 5:], base.h[0, 5:])
    torch.testing.assert_close(again.stats[0, 5:], base.stats[0, 5:])
    # a carried state from another chunk does not reach a chunk that starts an episode
    noisy = type(carried)(torch.randn_like(carried.h), torch.randn_like(carried.s))
    torch.testing.assert_close(run(z_first, z_next, actions, noisy).h, base.h)


@pytest.mark.parametrize("stoch", STOCH_KINDS)
def test_training_lowers_the_loss_and_the_posterior_tracks_z(stoch: str) -> None:
    data = synthetic([40, 30, 50, 35], seed=1, noise=0.5)
    eps = np.arange(4)
    m = make_rssm(tiny(stoch), data, eps, seed=0)
    cfg = RSSMTrainConfig(epochs=40, batch=4, seq_len=10, lr=5e-3, overshooting=3, progress=False)
    result = train_rssm(m, data, eps, cfg, val_episodes=eps[:1])
    first, last = result.history[0], result.history[-1]
    assert last["loss"] < first["loss"] and last["nll"] < first["nll"]
    assert "val_nll" in last and "overshooting_kl" in last and result.seconds > 0
    # the posterior's decoded z follows the observed z better than the one-step prior's
    ep = data.lengths[0]
    z = data.mu[: ep + 1].unsqueeze(0)
    acts = data.actions[:ep].unsqueeze(0)
    with torch.no_grad():
        post = m.observe_sequence(None, z[:, :-1], z[:, 1:], acts, None)
        prior_s = m.sample(m.prior_stats(post.h), 0.0)
        from_post = m.heads(torch.cat([post.h, post.s], -1)).z_mean
        from_prior = m.heads(torch.cat([post.h, prior_s], -1)).z_mean
    err_post = float((from_post - z[:, 1:]).pow(2).mean())
    err_prior = float((from_prior - z[:, 1:]).pow(2).mean())
    assert err_post < 0.75 * err_prior


@pytest.mark.parametrize("stoch", STOCH_KINDS)
def test_safetensors_round_trip(tmp_path, stoch: str) -> None:
    m = RSSM(tiny(stoch, z_std=0.5))
    path = tmp_path / "rssm.safetensors"
    save_file(m.state_dict(), str(path))
    copy = RSSM(RSSMConfig.from_dict(m.config.to_dict()))
    copy.load_state_dict(load_file(str(path)))
    z, a = torch.randn(3, Z), torch.randn(3, A)
    outs = []
    for model in (m, copy):
        gen = torch.Generator().manual_seed(1)
        state = model.observe(model.initial_state(3), z, a, gen)
        outs.append(model.imagine(state, a, 1.0, gen))
    for x, y in zip(outs[0][1:], outs[1][1:], strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    torch.testing.assert_close(outs[0].state.s, outs[1].state.s, rtol=0, atol=0)


def test_loss_carries_a_detached_state() -> None:
    data = synthetic([12, 9])
    m = RSSM(tiny())
    z = data.mu[:12].unsqueeze(0)
    batch = (z[:, :-1], data.actions[:11].unsqueeze(0), z[:, 1:], torch.ones(1, 11),
             torch.zeros(1, 11), torch.ones(1, 11, dtype=torch.bool))  # fmt: skip
    loss, parts, final = rssm_loss(m, batch, None, None, RSSMTrainConfig())
    assert torch.isfinite(loss) and set(parts) >= {"nll", "kl", "reward_mse", "done_bce"}
    assert not final.h.requires_grad


def test_openloop_error_is_finite_for_both_memories_and_zero_when_exact() -> None:
    cfg = OpenLoopConfig(horizons=(1, 3, 5), context=4, stride=2)
    data = synthetic([15, 20, 12], seed=2)
    rnn = MDNRNN(MDNRNNConfig(latent_dim=Z, action_dim=A, hidden_dim=8, n_mixtures=2))
    for model in (rnn, RSSM(tiny("gaussian")), RSSM(tiny("categorical"))):
        report = openloop_error(model, data, np.arange(3), cfg)
        assert report.windows > 0
        values = [*report.rmse.values(), *report.copy_last.values()]
        assert all(np.isfinite(v) and v >= 0 for v in values)
    # z never moves: copying the last z is exact, and so are memories that always say that z
    const = synthetic([15, 20, 12], const=True)
    with torch.no_grad():
        for p in rnn.parameters():
            p.zero_()
        k, hd = rnn.config.n_mixtures, rnn.config.hidden_dim
        rnn.head.bias[k * Z : 2 * k * Z] = 0.7  # every component's mean (logits uniform)
        rssm = RSSM(tiny("categorical"))
        rssm.decoder[-1].weight.zero_()
        rssm.decoder[-1].bias.fill_(0.7)
    assert hd == 8
    for model in (rnn, rssm):
        report = openloop_error(model, const, np.arange(3), cfg)
        assert max(report.copy_last.values()) == 0.0
        assert max(report.rmse.values()) < 1e-6
    sampled = openloop_error(rssm, const, np.arange(3), OpenLoopConfig(
        horizons=(1, 2), context=3, stride=5, sampled=True))  # fmt: skip
    assert max(sampled.rmse_sampled.values()) < 1e-6


def test_openloop_error_names_the_fix_when_episodes_are_short() -> None:
    with pytest.raises(ValueError, match="lower context"):
        openloop_error(RSSM(tiny()), synthetic([5, 6]), np.arange(2), OpenLoopConfig())


def test_z_means_trains_on_v_means() -> None:
    data = synthetic([10, 12], seed=3)
    data.logvar.fill_(0.0)  # σ = 1: draws would be far from mu
    drawn = means_only(data)
    streams = make_streams(drawn, np.arange(2), 2, np.random.default_rng(0))
    batch, _ = next(stream_chunks(drawn, streams, 5, torch.Generator().manual_seed(0)))
    torch.testing.assert_close(batch[2][0], drawn.mu[streams.frames[0, :5] + 1])
    cfg = RSSMTrainConfig(epochs=1, batch=2, seq_len=5, z_means=True, progress=False)
    assert np.isfinite(train_rssm(RSSM(tiny()), data, np.arange(2), cfg).history[0]["loss"])
