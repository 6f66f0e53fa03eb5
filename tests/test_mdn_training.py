"""M's training the paper's way: episode streams, carried state, terminal masking, lr decay, and
old runs resuming as they were trained."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pytest
import torch

from dreamgym.models.mdnrnn import MDNRNN, MDNRNNConfig
from dreamgym.training import (
    LatentEpisodes,
    LRSchedule,
    TrainConfig,
    evaluate_rnn,
    init_rnn_heads,
    latent_stats,
    make_adam,
    make_streams,
    sequence_loss,
    stream_chunks,
    train_rnn_epoch,
)
from dreamgym.training.config import (
    LEGACY_RUN_DEFAULTS,
    NEW_RUN_DEFAULTS,
    check_config,
    resolve_run_options,
    upgrade_stored_options,
)
from dreamgym.training.mdn import reward_event_options, rnn_batch


def _latents(
    lengths: list[int], z: int = 2, seed: int = 0, logvar: float = -12.0
) -> LatentEpisodes:
    """Episodes of z_{t+1} = 0.9 z_t + 0.5 a_t (+ noise), reward z_t[0], done at each end."""
    rng = np.random.default_rng(seed)
    mus, actions, rewards, dones = [], [], [], []
    for t_max in lengths:
        a = rng.choice([-1.0, 1.0], size=(t_max, 1)).astype(np.float32)
        zs = np.zeros((t_max + 1, z), dtype=np.float32)
        zs[0] = rng.normal(size=z)
        for t in range(t_max):
            zs[t + 1] = 0.9 * zs[t] + 0.5 * a[t, 0] + 0.02 * rng.normal(size=z)
        mus.append(zs)
        actions.append(a)
        rewards.append(zs[:-1, 0].copy())
        d = np.zeros(t_max, dtype=bool)
        d[-1] = True
        dones.append(d)
    mu = np.concatenate(mus)
    return LatentEpisodes.from_arrays(
        mu,
        np.full_like(mu, logvar),
        np.concatenate(actions),
        np.concatenate(rewards),
        np.concatenate(dones),
        np.asarray(lengths),
    )


def test_streams_hold_every_step_once_with_resets_at_episode_starts() -> None:
    data = _latents([5, 40, 17, 9, 30, 12])
    streams = make_streams(data, np.arange(6), 3, np.random.default_rng(0))
    assert streams.rows == 3
    steps = streams.steps[streams.valid]
    assert sorted(steps.tolist()) == list(range(int(data.lengths.sum())))
    starts = set(data.step_start.tolist())
    assert set(streams.steps[streams.resets].tolist()) == starts
    assert (streams.resets <= streams.valid).all() and streams.resets[:, 0].all()
    # rows packed to about the same length: padding under one longest episode
    per_row = streams.valid.sum(1)
    assert per_row.max() - per_row.min() <= data.lengths.max()
    # within an episode, the frame of z_t follows the step
    e = 1
    row, col = np.argwhere(streams.steps == data.step_start[e])[0]
    assert streams.frames[row, col : col + 40].tolist() == list(
        range(data.frame_start[e], data.frame_start[e] + 40)
    )


def test_stream_chunks_chain_z_across_chunks_and_start_episodes_fresh() -> None:
    data = _latents([7, 11, 6], logvar=0.0)  # σ = 1: every sample differs
    streams = make_streams(data, np.arange(3), 2, np.random.default_rng(1))
    gen = torch.Generator().manual_seed(0)
    chunks = list(stream_chunks(data, streams, 4, gen))
    assert len(chunks) == streams.n_chunks(4)
    z_in = torch.cat([b[0] for b, _ in chunks], dim=1)
    z_tgt = torch.cat([b[2] for b, _ in chunks], dim=1)
    resets = torch.cat([r for _, r in chunks], dim=1)
    mask = torch.cat([b[-1] for b, _ in chunks], dim=1)
    follow = ~resets[:, 1:] & mask[:, 1:]
    assert torch.equal(z_in[:, 1:][follow], z_tgt[:, :-1][follow])  # the target is the next input
    starts = resets & mask
    assert not torch.isclose(z_in[:, 1:][starts[:, 1:]], z_tgt[:, :-1][starts[:, 1:]]).any()


def test_terminal_frame_is_masked_from_the_z_loss_truncation_is_not() -> None:
    torch.manual_seed(0)
    rnn = MDNRNN(MDNRNNConfig(latent_dim=2, action_dim=1, hidden_dim=8, n_mixtures=2))
    z_in, a = torch.randn(1, 5, 2), torch.randn(1, 5, 1)
    z_tgt = torch.randn(1, 5, 2)
    dones = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]])  # step 2 terminated; step 4 truncated
    mask = torch.ones(1, 5, dtype=torch.bool)

    def nll(target: torch.Tensor, masked: bool) -> float:
        batch = (z_in, a, target, torch.zeros(1, 5), dones, mask)
        return float(sequence_loss(rnn, batch, 10.0, 1.0, "mean", masked)[1]["nll"])

    black = z_tgt.clone()
    black[0, 2] = 0.0  # ViZDoom's all-zero terminal screen, encoded
    assert nll(black, True) == nll(z_tgt, True)
    assert nll(black, False) != nll(z_tgt, False)
    moved = z_tgt.clone()
    moved[0, 4] += 1.0  # a truncated step keeps its target
    assert nll(moved, True) != nll(z_tgt, True)


def test_nll_reduction_mean_is_sum_over_z() -> None:
    torch.manual_seed(0)
    rnn = MDNRNN(MDNRNNConfig(latent_dim=3, action_dim=1, hidden_dim=8, n_mixtures=2))
    batch = (
        torch.randn(2, 4, 3),
        torch.randn(2, 4, 1),
        torch.randn(2, 4, 3),
        torch.zeros(2, 4),
        torch.zeros(2, 4),
        torch.ones(2, 4, dtype=torch.bool),
    )
    s = sequence_loss(rnn, batch, 1.0, 1.0, "sum")[1]["nll"]
    m = sequence_loss(rnn, batch, 1.0, 1.0, "mean")[1]["nll"]
    assert torch.allclose(m, s / 3)


def test_lr_schedule_decays_per_step_to_the_floor() -> None:
    s = LRSchedule(1e-3, 0.99, 1e-5)
    assert s.at(0) == pytest.approx(1e-3)
    assert s.at(100) == pytest.approx((1e-3 - 1e-5) * 0.99**100 + 1e-5)
    assert s.at(10**6) == pytest.approx(1e-5)
    assert LRSchedule(1e-3).at(10**6) == 1e-3


@pytest.mark.parametrize("mixture", ["per_dim", "shared"])
def test_episode_training_learns_and_decays_the_lr(mixture: str) -> None:
    """M's held-out NLL falls well below the baselines with whole-episode training."""
    lengths = [40, 25, 60, 33, 47, 40, 52, 38, 41, 29, 40, 40]
    data = _latents(lengths)
    train, val = np.arange(10), np.array([10, 11])
    torch.manual_seed(0)
    cfg = MDNRNNConfig(latent_dim=2, action_dim=1, hidden_dim=32, n_mixtures=2, mixture=mixture)
    rnn = MDNRNN(cfg)
    opt = make_adam(rnn.parameters(), 1e-2)
    sched = LRSchedule(1e-2, 0.999, 1e-4)
    stats = latent_stats(data, train)
    before = evaluate_rnn(rnn, data, val, stats, seed=0, mask_terminal_z=True)
    for epoch in range(40):
        train_rnn_epoch(
            rnn, opt, data, train, 20, 4, 10.0, 1.0, 1.0, seed=0, epoch=epoch,
            sequences="episodes", nll_reduction="mean", mask_terminal_z=True, lr_schedule=sched,
        )  # fmt: skip
    after = evaluate_rnn(rnn, data, val, stats, seed=0, mask_terminal_z=True)
    assert after["nll_per_dim"] < before["nll_per_dim"] - 1.0
    assert after["nll_per_dim"] < after["baseline_previous_z_nll_per_dim"] - 0.5
    assert after["reward_mae"] < 0.5 * after["reward_mae_baseline_mean"]
    steps = int(opt.state[next(iter(rnn.parameters()))]["step"])
    assert 40 * 6 <= steps <= 40 * 7  # 4 rows of ≈115 steps in chunks of 20
    assert opt.param_groups[0]["lr"] == pytest.approx(sched.at(steps - 1))


def test_unset_options_resolve_to_new_defaults_or_to_an_old_runs() -> None:
    config = TrainConfig(data="d", out="o")
    new = resolve_run_options(config, None)
    assert {k: getattr(new, k) for k in NEW_RUN_DEFAULTS} == NEW_RUN_DEFAULTS
    assert new.seq_len == 100
    # a run started under older defaults resumes with what it stored, not today's defaults
    older = {"rnn_sequences": "episodes", "seq_len": 1000, "nll_reduction": "mean"}
    resumed = resolve_run_options(config, older)
    assert resumed.seq_len == 1000 and resumed.nll_reduction == "mean"
    assert resolve_run_options(replace(config, seq_len=50), older).seq_len == 50
    old_options = {"latent": 32, "seq_len": 100, "done_weight": None}  # before these options
    legacy = resolve_run_options(config, old_options)
    assert legacy.mixture == "shared" and legacy.rnn_sequences == "windows"
    assert legacy.seq_len == 100 and legacy.done_weight == 0.0 and legacy.rnn_lr_decay == 1.0
    assert upgrade_stored_options(old_options)["done_weight"] == 0.0
    assert upgrade_stored_options(old_options)["mixture"] == LEGACY_RUN_DEFAULTS["mixture"]
    explicit = resolve_run_options(dataclasses.replace(config, mixture="per_dim"), old_options)
    assert explicit.mixture == "per_dim"  # a given option is kept (and then refused as a change)
    with pytest.raises(ValueError, match="--rnn-sequences"):
        check_config(dataclasses.replace(config, rnn_sequences="chunks"))
    with pytest.raises(ValueError, match="--rnn-lr-decay"):
        check_config(dataclasses.replace(config, rnn_lr_decay=1.5))


LEGACY_PIN = 5e-5


def test_windowed_shared_trainer_reproduces_main_exactly() -> None:
    """`--mixture shared --rnn-sequences windows` (legacy) trains as before, to 5e-5 relative.

    Pinned before per-dim M. Float32 kernels of another CPU, BLAS or thread count sum in another
    order and move these numbers by ~1e-7 relative (AMD AVX2 and Intel AVX-512 differ in the 8th
    digit); a learning rate 0.1% off moves them by 3.5e-4 and 0.01% off by 3.5e-5, so 5e-5 still
    catches any real change of the training step.
    """
    rng = np.random.default_rng(0)
    lengths = np.array([30, 12, 45, 20])
    mu = rng.normal(size=(int((lengths + 1).sum()), 3)).astype(np.float32)
    actions = rng.normal(size=(int(lengths.sum()), 2)).astype(np.float32)
    rewards = rng.normal(size=int(lengths.sum())).astype(np.float32)
    dones = np.zeros(int(lengths.sum()), bool)
    dones[np.cumsum(lengths) - 1] = True
    data = LatentEpisodes.from_arrays(mu, np.full_like(mu, -2.0), actions, rewards, dones, lengths)
    torch.manual_seed(0)
    cfg = MDNRNNConfig(latent_dim=3, action_dim=2, hidden_dim=8, n_mixtures=2, mixture="shared")
    rnn = MDNRNN(cfg)
    opt = make_adam(rnn.parameters(), 1e-2)
    for epoch in range(2):
        r = train_rnn_epoch(rnn, opt, data, np.arange(4), 16, 3, 5.0, 1.0, 1.0, seed=0, epoch=epoch)
    assert r["loss"] == pytest.approx(15.438197946994103, rel=LEGACY_PIN)
    assert r["nll"] == pytest.approx(13.88908107258449, rel=LEGACY_PIN)
    assert float(rnn.head.bias.detach().sum()) == pytest.approx(0.8500685095787048, rel=LEGACY_PIN)


def test_reward_overpay_weighs_only_over_predictions() -> None:
    torch.manual_seed(0)
    rnn = MDNRNN(MDNRNNConfig(latent_dim=2, action_dim=1, hidden_dim=8, n_mixtures=2))
    z, a = torch.randn(1, 6, 2), torch.randn(1, 6, 1)
    mask, dones = torch.ones(1, 6, dtype=torch.bool), torch.zeros(1, 6)
    with torch.no_grad():
        pred = rnn(z, a)[0].reward

    def loss(rewards: torch.Tensor, overpay: float) -> tuple[float, float]:
        batch = (z, a, z, rewards, dones, mask)
        total, parts, _ = sequence_loss(rnn, batch, 1.0, 1.0, reward_overpay=overpay)
        return float(total.detach()), float(parts["reward_mse"])

    over, under = pred - 0.5, pred + 0.5  # M pays 0.5 too much / too little on every step
    assert loss(over, 4.0)[0] == pytest.approx(loss(over, 1.0)[0] + 3 * 0.25, rel=1e-5)
    assert loss(under, 4.0)[0] == pytest.approx(loss(under, 1.0)[0], rel=1e-6)
    assert loss(over, 4.0)[1] == pytest.approx(0.25, rel=1e-4)  # the reported MSE stays plain
    with pytest.raises(ValueError, match="--reward-overpay"):
        check_config(TrainConfig(data="d", out="o", reward_overpay=0.0))


def test_reward_sum_weight_charges_a_steady_bias_not_zero_mean_noise() -> None:
    """The return-consistency term: (row's summed reward error)² / steps, × the weight."""
    torch.manual_seed(0)
    rnn = MDNRNN(MDNRNNConfig(latent_dim=2, action_dim=1, hidden_dim=8, n_mixtures=2))
    z, a = torch.randn(2, 6, 2), torch.randn(2, 6, 1)
    mask, dones = torch.ones(2, 6, dtype=torch.bool), torch.zeros(2, 6)
    mask[1, 4:] = False  # the second row holds 4 steps
    with torch.no_grad():
        pred = rnn(z, a)[0].reward

    def loss(rewards: torch.Tensor, weight: float) -> float:
        batch = (z, a, z, rewards, dones, mask)
        return float(sequence_loss(rnn, batch, 1.0, 2.0, reward_sum_weight=weight)[0].detach())

    steady = pred - 0.5  # M pays 0.5 too much on every step
    # rows' summed errors 3.0 and 2.0 over 10 steps: (9 + 4) / 10, × reward_weight 2 × weight 3
    assert loss(steady, 3.0) == pytest.approx(loss(steady, 0.0) + 2 * 3 * 1.3, rel=1e-5)
    signs = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    noise = pred - 0.5 * signs  # the same per-step error, summing to 0 on each row
    assert loss(noise, 3.0) == pytest.approx(loss(noise, 0.0), rel=1e-5)
    assert loss(noise, 0.0) == pytest.approx(loss(steady, 0.0), rel=1e-5)
    with pytest.raises(ValueError, match="--reward-sum-weight"):
        check_config(TrainConfig(data="d", out="o", reward_sum_weight=-1.0))


def _fit_episodes(
    data: LatentEpisodes, hidden: int, epochs: int, batch: int, **loss: float
) -> MDNRNN:
    """A small M (seeded) trained on every episode of `data` in 20-step chunks, lr 0.01."""
    torch.manual_seed(0)
    rnn = MDNRNN(MDNRNNConfig(latent_dim=2, action_dim=1, hidden_dim=hidden, n_mixtures=2))
    opt = make_adam(rnn.parameters(), 1e-2)
    episodes = np.arange(len(data.lengths))
    for epoch in range(epochs):
        train_rnn_epoch(
            rnn, opt, data, episodes, 20, batch, 1.0, 1.0, 1.0, seed=0, epoch=epoch,
            sequences="episodes", **loss,
        )  # fmt: skip
    return rnn


def test_reward_overpay_makes_m_err_low_on_a_reward_it_cannot_predict() -> None:
    """Rewards of 0 or 3 at random (a new tile or not): the MSE learns the mean, overpay less."""
    data = _latents([60] * 8)
    rng = np.random.default_rng(1)
    data.rewards = torch.from_numpy(np.where(rng.random(len(data.rewards)) < 0.3, 3.0, 0.0)).float()
    means = {}
    for overpay in (1.0, 4.0):
        rnn = _fit_episodes(data, 16, 30, batch=4, reward_overpay=overpay)
        with torch.no_grad():
            z = data.mu[None, :60]
            means[overpay] = float(rnn(z, data.actions[None, :60])[0].reward.mean())
    rate = float(data.rewards.mean())
    assert means[1.0] == pytest.approx(rate, abs=0.25)  # ≈ 0.9: the symmetric MSE's mean
    assert means[4.0] < means[1.0] - 0.4  # an expectile below it (≈ 0.3 for these odds)


# --- reward events (`--reward-events`): classified events on top of a regressed cost -----------
def _event_rnn(size: float = 3.3, threshold: float = 0.0) -> MDNRNN:
    cfg = MDNRNNConfig(
        latent_dim=2, action_dim=1, hidden_dim=16, n_mixtures=2,
        reward_event=size, reward_event_threshold=threshold,
    )  # fmt: skip
    return MDNRNN(cfg)


def test_event_head_config_round_trips_and_old_configs_stay_as_they_were() -> None:
    plain = MDNRNNConfig(latent_dim=2, action_dim=1, hidden_dim=8, n_mixtures=2)
    assert "reward_event" not in plain.to_dict() and "reward_event_threshold" not in plain.to_dict()
    events = _event_rnn(3.3, 0.5).config
    assert events.head_size == plain.head_size + 1 and events.has_reward_events
    assert MDNRNNConfig.from_dict(events.to_dict()) == events
    with pytest.raises(ValueError, match="reward_event must be a finite number ≥ 0"):
        MDNRNNConfig(reward_event=-1.0)


def test_event_reward_is_the_cost_plus_v_times_the_event_probability() -> None:
    torch.manual_seed(0)
    rnn = _event_rnn(3.3)
    z, a = torch.randn(3, 5, 2), torch.randn(3, 5, 1)
    with torch.no_grad():
        out = rnn(z, a)[0]
        raw = rnn.head(rnn.lstm(torch.cat([z, a], -1))[0])
    assert out.event_logit is not None
    torch.testing.assert_close(out.event_logit, raw[..., -3])
    torch.testing.assert_close(out.reward, raw[..., -2] + 3.3 * torch.sigmoid(raw[..., -3]))
    with torch.no_grad():  # the dream's fused step gives the same reward
        step, _ = rnn.step(z[:, 0], a[:, 0], rnn.initial_state(3))
    torch.testing.assert_close(step.reward, out.reward[:, 0], rtol=1e-5, atol=1e-5)


def test_event_head_learns_the_events_and_never_charges_more_than_the_cost() -> None:
    """−0.1 a step, +3.3 more when a_t > 0: where a_t < 0 the event head pays about the cost and
    never less, while the plain MSE's errors go both ways."""
    data = _latents([60] * 8)
    events = (data.actions[:, 0] > 0).float()
    data.rewards = -0.1 + 3.3 * events
    predicted = {}
    for size in (0.0, 3.3):
        torch.manual_seed(0)
        rnn = (
            _event_rnn(size)
            if size
            else MDNRNN(MDNRNNConfig(latent_dim=2, action_dim=1, hidden_dim=16, n_mixtures=2))
        )
        init_rnn_heads(rnn, data.rewards.numpy(), data.dones.numpy())
        opt = make_adam(rnn.parameters(), 1e-2)
        for epoch in range(30):
            record = train_rnn_epoch(
                rnn, opt, data, np.arange(8), 20, 4, 1.0, 10.0, 1.0, seed=0, epoch=epoch,
                sequences="episodes",
            )  # fmt: skip
        assert ("event_bce" in record) == bool(size)
        windows = np.stack([np.arange(8), np.zeros(8, int), data.lengths], axis=1)
        z_in, actions, _, _, _, mask = rnn_batch(data, windows, torch.Generator().manual_seed(0))
        with torch.no_grad():
            r = rnn(z_in, actions)[0].reward
        predicted[size] = r[mask & (actions[..., 0] < 0)]
    assert float((predicted[3.3] + 0.1).abs().mean()) < 0.2  # ≈ 0.11: P(event) ≈ 0.03 there
    assert float(predicted[3.3].min()) > -0.1 - 0.01  # the cost, plus v · P ≥ 0
    assert float(predicted[0.0].min()) < -0.1 - 0.1  # the plain MSE charges more than the cost
    metrics = evaluate_rnn(rnn, data, np.arange(8), latent_stats(data, np.arange(8)), seed=0)
    assert metrics["reward_events"]["auc"] > 0.95


def test_reward_event_options_measure_the_event_and_refuse_a_useless_threshold() -> None:
    rewards = np.array([-0.1] * 7 + [3.2, 3.4] + [-100.1])
    assert reward_event_options(rewards, None) == {}
    opts = reward_event_options(rewards, 0.0)
    assert (
        opts["reward_event"] == pytest.approx(3.3 + 0.1) and opts["reward_event_threshold"] == 0.0
    )
    with pytest.raises(ValueError, match="no training reward exceeds 5.0"):
        reward_event_options(rewards, 5.0)
    with pytest.raises(ValueError, match="every training reward exceeds"):
        reward_event_options(rewards, -200.0)


def test_sampled_inputs_swap_frames_for_m_own_one_step_draws() -> None:
    """Parallel scheduled sampling: inputs become M's draws, never an episode's first frame."""
    from dreamgym.models.mdnrnn import sample_mdn
    from dreamgym.training.mdn import mix_in_samples

    torch.manual_seed(0)
    rnn = MDNRNN(MDNRNNConfig(latent_dim=2, action_dim=1, hidden_dim=8, n_mixtures=2))
    z, a = torch.randn(2, 6, 2), torch.randn(2, 6, 1)
    resets = torch.zeros(2, 6, dtype=torch.bool)
    resets[1, 3] = True  # a second episode starts in row 1 at step 3
    batch = (z, a, z, torch.zeros(2, 6), torch.zeros(2, 6), torch.ones(2, 6, dtype=torch.bool))
    mixed = mix_in_samples(rnn, batch, None, resets, 1.0, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        out = rnn(z, a, None, resets)[0]
        draw = sample_mdn(
            out.logpi.flatten(0, 1), out.mu.flatten(0, 1), out.logsigma.flatten(0, 1), 1.0, g
        ).view(2, 6, 2)
    kept = torch.zeros(2, 6, dtype=torch.bool)
    kept[:, 0] = True
    kept[1, 3] = True
    assert torch.equal(mixed[kept], z[kept])  # the first frame of every episode is V's
    swapped = ~kept[:, 1:]
    assert torch.equal(mixed[:, 1:][swapped], draw[:, :-1][swapped])  # M's draw for that frame
    assert torch.equal(mix_in_samples(rnn, batch, None, resets, 0.0, None), z)

    big = torch.randn(8, 50, 2)
    batch = (big, torch.randn(8, 50, 1), big, *batch[3:])
    half = mix_in_samples(rnn, batch, None, None, 0.5, torch.Generator().manual_seed(0))
    frac = float((half[:, 1:] != big[:, 1:]).any(-1).float().mean())
    assert 0.4 < frac < 0.6
    with pytest.raises(ValueError, match="--sampled-inputs"):
        check_config(TrainConfig(data="d", out="o", sampled_inputs=1.5))


def test_training_with_sampled_inputs_is_seeded_and_differs_from_teacher_forcing() -> None:
    data = _latents([40] * 6)

    def train(fraction: float) -> torch.Tensor:
        rnn = _fit_episodes(data, 8, 2, batch=3, sampled_inputs=fraction)
        return rnn.head.weight.detach().clone()

    assert torch.equal(train(0.5), train(0.5))
    assert not torch.equal(train(0.5), train(0.0))
