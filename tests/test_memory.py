"""The Memory seam (`dreamgym.models.memory`): both families through one protocol, on tiny models.

Shapes, temperature, the initial state, posterior tracking along real z's, the MDN adapter's
numbers against `MDNRNN.step` bit for bit, saving and loading, and the real-env tracker reading
whichever memory a world has.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tiny_world

from dreamgym.models.memory import (
    MDNRNNMemory,
    MDNState,
    Memory,
    RSSMMemory,
    build_memory,
    load_memory,
    memory_of,
    save_memory,
)
from dreamgym.models.mixture import mdn_mean, sample_mdn
from dreamgym.models.rssm import RSSM, RSSMConfig
from dreamgym.world import World, WorldLoadError
from dreamgym.wrappers import LatentTracker

FAMILIES = ("mdnrnn", "mdnrnn-shared", "rssm-gaussian", "rssm-categorical")
B, T = 5, 7


def rssm_memory(stoch: str, latent: int, action: int = 3) -> RSSMMemory:
    torch.manual_seed(0)
    config = RSSMConfig(
        latent_dim=latent, action_dim=action, stoch=stoch, deter_dim=16, hidden_dim=16,
        stoch_dim=4, groups=3, classes=4,
    )  # fmt: skip
    return RSSMMemory(RSSM(config).eval())


def make_memory(family: str) -> MDNRNNMemory | RSSMMemory:
    if family.startswith("mdnrnn"):
        mixture = "shared" if family.endswith("shared") else "per_dim"
        return memory_of(build_tiny_world(discrete=False, mixture=mixture))
    return rssm_memory(family.removeprefix("rssm-"), latent=6)


def real_sequence(memory: Memory, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """z (B, T, Z) of T frames and the actions (B, T − 1, A) between them."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, T, memory.latent_dim, generator=g)
    return z, torch.rand(B, T - 1, memory.action_dim, generator=g)


def observe_all(memory: Memory, z: torch.Tensor, a: torch.Tensor, seed: int = 0):
    """The states after each frame of the sequence, from the initial state."""
    g = torch.Generator().manual_seed(seed)
    state = memory.initial_state(z.shape[0])
    states = []
    for t in range(z.shape[1]):
        action = a[:, t - 1] if t > 0 else torch.zeros(z.shape[0], memory.action_dim)
        state = memory.observe(state, z[:, t], action, g)
        states.append(state)
    return states


@pytest.mark.parametrize("family", FAMILIES)
@torch.no_grad()
def test_shapes_and_kind(family: str) -> None:
    memory = make_memory(family)
    assert isinstance(memory, Memory)
    assert memory.kind == family.split("-")[0]
    z, a = real_sequence(memory)
    state = observe_all(memory, z, a)[-1]
    assert memory.features(state).shape == (B, memory.feature_dim)
    step = memory.imagine(state, a[:, 0], 1.0, torch.Generator().manual_seed(0))
    assert step.z.shape == (B, memory.latent_dim)
    assert step.reward.shape == step.done_probability.shape == (B,)
    assert bool(((step.done_probability >= 0) & (step.done_probability <= 1)).all())
    assert memory.features(step.state).shape == (B, memory.feature_dim)
    assert memory.to_dict()["memory"] == memory.kind


@pytest.mark.parametrize("family", FAMILIES)
@torch.no_grad()
def test_temperature_scales_the_draws(family: str) -> None:
    """τ = 0 is no draw at all (two generators agree); the draws spread more as τ grows."""
    memory = make_memory(family)
    z, a = real_sequence(memory)
    state = observe_all(memory, z[:1], a[:1])[-1]
    n = 400
    state = type(state)(*(None if s is None else s.expand(n, -1) for s in state))
    action = a[:1, 0].expand(n, -1)

    def draws(tau: float, seed: int) -> torch.Tensor:
        return memory.imagine(state, action, tau, torch.Generator().manual_seed(seed)).z

    assert torch.equal(draws(0.0, 1), draws(0.0, 2))
    spread = [float(draws(tau, 3).std(dim=0).mean()) for tau in (0.0, 0.3, 1.5)]
    assert spread[0] == 0.0 < spread[1] < spread[2], spread


@pytest.mark.parametrize("family", FAMILIES)
@torch.no_grad()
def test_initial_state_starts_every_episode_afresh(family: str) -> None:
    memory = make_memory(family)
    z, a = real_sequence(memory)
    fresh = memory.features(memory.initial_state(B))
    assert fresh.shape == (B, memory.feature_dim) and not bool(fresh.any())
    first = observe_all(memory, z, a)
    # another episode before, then initial_state: the same states as a memory never used
    observe_all(memory, z.flip(0), a.flip(0))
    again = observe_all(memory, z, a)
    for s1, s2 in zip(first, again, strict=True):
        assert torch.equal(memory.features(s1), memory.features(s2))


@pytest.mark.parametrize("family", FAMILIES)
@torch.no_grad()
def test_posterior_tracks_the_real_frames(family: str) -> None:
    """The state follows the z's it observes: other frames, other features."""
    memory = make_memory(family)
    z, a = real_sequence(memory)
    other = z.clone()
    other[:, 2] += 10.0
    seen, changed = observe_all(memory, z, a), observe_all(memory, other, a)
    for t in range(T):
        differs = not torch.allclose(memory.features(seen[t]), memory.features(changed[t]))
        # the MDN-RNN reads z_t with a_t, so frame 2 reaches h from frame 3 on
        reach = 3 if memory.kind == "mdnrnn" else 2
        assert differs == (t >= reach), (t, differs)


@pytest.mark.parametrize("mixture", ["per_dim", "shared"])
def test_mdn_adapter_is_mdnrnn_step_bit_for_bit(mixture: str) -> None:
    world = build_tiny_world(discrete=True, mixture=mixture)
    memory, rnn = memory_of(world), world.mdnrnn
    assert isinstance(memory, MDNRNNMemory) and memory.rnn is rnn
    z, a = real_sequence(memory)
    for grad in (False, True):  # the dream's fused rows, and torch's lstm_cell
        with torch.set_grad_enabled(grad):
            states = observe_all(memory, z, a)
            h, c = rnn.initial_state(B)
            for t in range(1, T):
                h, c = rnn.recurrent_step(z[:, t - 1], a[:, t - 1], (h, c))
                assert torch.equal(states[t].h, h) and torch.equal(states[t].c, c)
                assert torch.equal(states[t].z, z[:, t])
            for tau in (0.0, 0.7, 1.0, 1.3):  # a draw has no gradient: the same numbers
                step = memory.imagine(states[-1], a[:, 0], tau, torch.Generator().manual_seed(9))
                pred, (h2, c2) = rnn.step(z[:, -1], a[:, 0], (h, c))
                if tau == 0:
                    want = mdn_mean(pred.logpi, pred.mu)
                else:
                    g = torch.Generator().manual_seed(9)
                    with torch.no_grad():
                        want = sample_mdn(pred.logpi, pred.mu, pred.logsigma, tau, g)
                assert torch.equal(step.z, want) and torch.equal(step.state.z, want)
                assert torch.equal(step.state.h, h2) and torch.equal(step.state.c, c2)
                assert torch.equal(step.reward, pred.reward)
                assert torch.equal(step.done_probability, rnn.done_probability(pred.done_logit))


def test_mdn_adapter_imagines_only_after_a_frame() -> None:
    memory = make_memory("mdnrnn")
    with pytest.raises(ValueError, match="observe the episode's first frame"):
        memory.imagine(memory.initial_state(2), torch.zeros(2, memory.action_dim))


@pytest.mark.parametrize("family", FAMILIES)
def test_save_and_load_round_trip(family: str, tmp_path: Path) -> None:
    memory = make_memory(family)
    file = tmp_path / "memory.safetensors"
    save_memory(memory, file)
    loaded = load_memory(file)
    assert type(loaded) is type(memory) and loaded.to_dict() == memory.to_dict()
    for k, v in memory.module.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[k], v), k
    z, a = real_sequence(memory)
    with torch.no_grad():
        s1, s2 = observe_all(memory, z, a)[-1], observe_all(loaded, z, a)[-1]
        i1 = memory.imagine(s1, a[:, 0], 1.0, torch.Generator().manual_seed(4))
        i2 = loaded.imagine(s2, a[:, 0], 1.0, torch.Generator().manual_seed(4))
    for x, y in zip(i1[1:], i2[1:], strict=True):
        assert torch.equal(x, y)


def test_load_names_a_bad_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))
    with pytest.raises(ValueError, match="no memory config"):
        load_memory(bare)
    cut = tmp_path / "cut.safetensors"
    save_memory(make_memory("rssm-gaussian"), cut)
    cut.write_bytes(cut.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_memory(cut)
    with pytest.raises(ValueError, match="memory must be one of"):
        build_memory({"memory": "transformer"})


def test_memory_of_a_world(box_world_dir: Path) -> None:
    world = World.load(box_world_dir)
    memory = memory_of(world)
    assert memory.kind == "mdnrnn" and memory.rnn is world.mdnrnn
    assert (memory.latent_dim, memory.feature_dim) == (world.latent_dim, world.feature_dim)
    with pytest.raises(ValueError, match="holds no memory dreamgym knows"):
        memory_of(object())


def test_an_rssm_world_is_saved_and_loaded(tmp_path: Path) -> None:
    """A bundle records its memory; an RSSM world reads back as one, tracking with the
    posterior's mean (the same frames, the same features), and asks for an MDN-RNN clearly."""
    world = build_tiny_world(discrete=True, rssm="categorical")
    world.save(tmp_path / "w")
    config = json.loads((tmp_path / "w" / "config.json").read_text())
    assert config["memory"] == "rssm" and "rssm" in config and "mdnrnn" not in config
    assert "rssm.safetensors" in config["files"]
    loaded = World.load(tmp_path / "w")
    assert loaded.memory_kind == "rssm" and loaded.feature_dim == world.rssm.config.feature_dim
    saved = loaded.rssm.state_dict()
    for name, tensor in world.rssm.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    memory = memory_of(loaded)
    assert isinstance(memory, RSSMMemory) and not memory.sample_posterior
    assert loaded.weights_sha256 == world.weights_sha256
    with pytest.raises(ValueError, match="has an RSSM memory"):
        loaded.mdnrnn  # noqa: B018
    with pytest.raises(ValueError, match="has an MDN-RNN memory"):
        build_tiny_world(discrete=True).rssm  # noqa: B018
    (tmp_path / "w" / "rssm.safetensors").unlink()
    with pytest.raises(WorldLoadError, match="has no rssm.safetensors"):
        World.load(tmp_path / "w")


def test_tracker_reads_an_rssm_world_through_the_seam() -> None:
    """The real-env tracker knows no LSTM: an RSSM world gives [z, h, s] beside V's z."""
    world = build_tiny_world(discrete=True, rssm="categorical")
    tracker = LatentTracker(world)
    assert isinstance(tracker.memory, RSSMMemory)
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    tracker.reset(seed=1)
    tracker.see(frames[0])
    for frame in frames[1:]:
        tracker.advance(tracker.encode_action(1))
        tracker.see(frame)
    obs = tracker.observation("zh")
    assert obs.shape == (world.latent_dim + tracker.memory.feature_dim,)
    with pytest.raises(ValueError, match="has a rssm memory"):
        tracker.observation("zch")
    assert isinstance(LatentTracker(build_tiny_world(discrete=True))._state, MDNState)


@pytest.mark.parametrize("family", FAMILIES)
@torch.no_grad()
def test_observing_is_the_teacher_forced_sequence(family: str) -> None:
    """Frame by frame through the seam, the state is training's view of the same episode:
    the MDN-RNN's LSTM over (z_t, a_t), the RSSM's `observe_sequence` (same draws)."""
    memory = make_memory(family)
    z, a = real_sequence(memory)
    last = observe_all(memory, z, a, seed=5)[-1]
    if isinstance(memory, MDNRNNMemory):
        _, (h, c) = memory.rnn(z[:, :-1], a)
        torch.testing.assert_close(last.h, h, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(last.c, c, atol=1e-5, rtol=1e-5)
        return
    resets = torch.zeros(B, T - 1, dtype=torch.bool)
    resets[:, 0] = True
    g = torch.Generator().manual_seed(5)
    post = memory.rssm.observe_sequence(None, z[:, :-1], z[:, 1:], a, resets, g)
    torch.testing.assert_close(memory.features(last), memory.features(post.final))
