"""M as a family: the one small protocol a memory offers, and its two members.

Whoever reads a world's memory (the real-env tracker, the controller's tracker in other worlds'
dreams, `diagnose`, `calibrate`, the bundle) talks to a `Memory`, not to an LSTM:

- `initial_state(batch)`: the state before an episode's first frame;
- `observe(state, z, a)`: the posterior, the state after a real frame's z, reached by the action
  `a` that led into it (zeros at an episode's first frame);
- `imagine(state, a, τ)`: the prior, one step of the dream: the next state, its z drawn at
  temperature τ (Ha & Schmidhuber 2018, §4.5; τ = 0: the mean), the reward and P(done);
- `features(state)`: what an agent sees beside z (the MDN-RNN's h, the RSSM's [h, s]).

Two members: `MDNRNNMemory` (the paper's M) and `RSSMMemory` (PlaNet/Dreamer). The MDN-RNN's
LSTM reads (z_t, a_t) together, so its adapter keeps the current z in its state and runs the
LSTM when the next frame is observed (or imagined): h after frame t is the LSTM's output on
(z_0, a_0) … (z_{t−1}, a_{t−1}), exactly what the dream and the transfer wrapper have always fed
the controller. Its arithmetic is `MDNRNN.recurrent_step` / `step` and the mixture's
`sample_mdn` / `mdn_mean`, unchanged. The batched dream core steps the MDN-RNN through its own
fused kernel (`dreamgym.models.mdn_kernel`); `kind` says which kernel a world's memory needs and
`MDNRNNMemory.rnn` hands it the network.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from safetensors import safe_open

from dreamgym.models.mdnrnn import MDNRNN, MDNRNNConfig
from dreamgym.models.mixture import mdn_mean, sample_mdn
from dreamgym.models.rssm import RSSM, RSSMConfig, RSSMState
from dreamgym.utils.files import atomic_save_safetensors

MEMORY_KINDS = ("mdnrnn", "rssm")
"""The memory families a world may name (`config.json`'s `"memory"`; absent: "mdnrnn")."""


class MDNState(NamedTuple):
    """The MDN-RNN's state at a frame: the LSTM's h and c (B, H) after the frames before it,
    and the frame's z (B, Z), which the LSTM reads with the next action; z is None before the
    episode's first frame."""

    h: torch.Tensor
    c: torch.Tensor
    z: torch.Tensor | None


MemoryState = MDNState | RSSMState
"""A memory's state: each family its own tuple of (B, ·) tensors."""


class Imagined(NamedTuple):
    """One prior step (`Memory.imagine`): the new state and the step's z, reward and P(done)."""

    state: Any
    z: torch.Tensor  # (B, Z)
    reward: torch.Tensor  # (B,)
    done_probability: torch.Tensor  # (B,)


@runtime_checkable
class Memory(Protocol):
    """What every memory family offers (see the module docstring)."""

    kind: str
    """"mdnrnn" or "rssm": which family, so the dream core knows which kernel steps it."""

    real_z: str
    """How the real-env tracker turns a frame into z so that it looks like the dream's z:
    "sample" (the MDN-RNN dreams z drawn from its mixture) or "mean" (the RSSM dreams its z
    decoder's mean); `dreamgym.wrappers.Z_MODES`."""

    @property
    def latent_dim(self) -> int:
        """Size of z (V's)."""

    @property
    def action_dim(self) -> int:
        """Width of the encoded action it reads (Box: its size; Discrete: n, one-hot)."""

    @property
    def feature_dim(self) -> int:
        """Width of `features`."""

    @property
    def module(self) -> torch.nn.Module:
        """The network (its `state_dict` is what a bundle saves)."""

    def to_dict(self) -> dict[str, Any]:
        """The network's config as saved, with its `"memory"` kind."""

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> Any:
        """The state before an episode's first frame, for `batch` rows."""

    def observe(
        self,
        state: Any,
        z: torch.Tensor,
        action: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> Any:
        """The state after a real frame's z (B, Z), reached by `action` (B, A)."""

    def imagine(
        self,
        state: Any,
        action: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Imagined:
        """One prior step by `action` (B, A) at temperature τ."""

    def features(self, state: Any) -> torch.Tensor:
        """What an agent sees beside z: (B, feature_dim)."""


class MDNRNNMemory:
    """The MDN-RNN (`dreamgym.models.mdnrnn`) as a `Memory`; its numbers are M's own."""

    kind = "mdnrnn"
    real_z = "sample"

    def __init__(self, rnn: MDNRNN) -> None:
        self.rnn = rnn

    @property
    def latent_dim(self) -> int:
        return self.rnn.config.latent_dim

    @property
    def action_dim(self) -> int:
        return self.rnn.config.action_dim

    @property
    def feature_dim(self) -> int:
        return self.rnn.config.hidden_dim

    @property
    def module(self) -> MDNRNN:
        return self.rnn

    def to_dict(self) -> dict[str, Any]:
        return {"memory": self.kind, **self.rnn.config.to_dict()}

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> MDNState:
        """h = c = 0 and no frame yet."""
        device = device if device is not None else self.rnn.head.weight.device
        h, c = self.rnn.initial_state(batch, device)
        return MDNState(h, c, None)

    def observe(
        self,
        state: MDNState,
        z: torch.Tensor,
        action: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> MDNState:
        """The LSTM reads (the previous frame's z, `action`); at the first frame it reads
        nothing (h_0 = 0, the action is ignored). `generator` is unused: M's h is no draw."""
        if state.z is None:
            return MDNState(state.h, state.c, z)
        h, c = self.rnn.recurrent_step(state.z, action, (state.h, state.c))
        return MDNState(h, c, z)

    def imagine(
        self,
        state: MDNState,
        action: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Imagined:
        """`MDNRNN.step` on (z, action), the next z drawn by `sample_mdn` at τ (τ = 0: the
        mixture's mean), the reward head and `done_probability` (its calibrated offset)."""
        if state.z is None:
            raise ValueError(
                "the MDN-RNN reads z_t with a_t: observe the episode's first frame before imagining"
            )
        pred, (h, c) = self.rnn.step(state.z, action, (state.h, state.c))
        if temperature == 0:
            z = mdn_mean(pred.logpi, pred.mu)
        else:
            with torch.no_grad():  # a draw by inverse CDF has no gradient (nor does the dream's)
                z = sample_mdn(pred.logpi, pred.mu, pred.logsigma, temperature, generator)
        done = self.rnn.done_probability(pred.done_logit)
        return Imagined(MDNState(h, c, z), z, pred.reward, done)

    def features(self, state: MDNState) -> torch.Tensor:
        """h, the LSTM's output (the "h" of obs_mode "zh")."""
        return state.h


class RSSMMemory:
    """The RSSM (`dreamgym.models.rssm`) as a `Memory`.

    `sample_posterior`: `observe` draws s from the posterior (Dreamer acts on draws); False
    takes its mean (Gaussian) or mode (categorical), as the open-loop measure conditions.
    """

    kind = "rssm"
    real_z = "mean"

    def __init__(self, rssm: RSSM, sample_posterior: bool = True) -> None:
        self.rssm = rssm
        self.sample_posterior = bool(sample_posterior)

    @property
    def latent_dim(self) -> int:
        return self.rssm.config.latent_dim

    @property
    def action_dim(self) -> int:
        return self.rssm.config.action_dim

    @property
    def feature_dim(self) -> int:
        return self.rssm.config.feature_dim

    @property
    def module(self) -> RSSM:
        return self.rssm

    def to_dict(self) -> dict[str, Any]:
        return self.rssm.config.to_dict()

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> RSSMState:
        return self.rssm.initial_state(batch, device)

    def observe(
        self,
        state: RSSMState,
        z: torch.Tensor,
        action: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> RSSMState:
        return self.rssm.observe(state, z, action, generator, sample=self.sample_posterior)

    def imagine(
        self,
        state: RSSMState,
        action: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Imagined:
        return Imagined(*self.rssm.imagine(state, action, temperature, generator))

    def features(self, state: RSSMState) -> torch.Tensor:
        return self.rssm.features(state)


def build_memory(config: dict[str, Any]) -> MDNRNNMemory | RSSMMemory:
    """A fresh (untrained) memory from its saved config; no `"memory"` key: an MDN-RNN."""
    config = dict(config)
    kind = config.pop("memory", "mdnrnn")
    if kind == "mdnrnn":
        return MDNRNNMemory(MDNRNN(MDNRNNConfig.from_dict(config)))
    if kind == "rssm":
        return RSSMMemory(RSSM(RSSMConfig.from_dict(config)))
    raise ValueError(f"memory must be one of {MEMORY_KINDS}, got {kind!r}")


def memory_of(world: Any) -> MDNRNNMemory | RSSMMemory:
    """The memory of a world (a `dreamgym.World`, or anything with its `memory_net`).

    An RSSM tracks real frames with its posterior's mean (mode): the same frames give an agent
    the same features, and a dream's first state is the one a tracker reaches on that frame
    (`dreamgym.models.rssm_kernel`). The adapter holds no state of its own: two trackers may
    share a world.
    """
    net = getattr(world, "memory_net", None)
    if isinstance(net, MDNRNN):
        return MDNRNNMemory(net)
    if isinstance(net, RSSM):
        return RSSMMemory(net, sample_posterior=False)
    raise ValueError(
        f"world {getattr(world, 'name', '?')!r} holds no memory dreamgym knows "
        f"(memories: {MEMORY_KINDS}); load it with `dreamgym.World.load`"
    )


def save_memory(memory: Memory, file: str | os.PathLike[str]) -> None:
    """The memory's weights as safetensors, its config (`to_dict`) in the file's metadata."""
    tensors = {k: v.detach().contiguous() for k, v in memory.module.state_dict().items()}
    atomic_save_safetensors(tensors, file, metadata={"memory": json.dumps(memory.to_dict())})


def load_memory(
    file: str | os.PathLike[str], device: torch.device | str = "cpu"
) -> MDNRNNMemory | RSSMMemory:
    """A memory saved by `save_memory`: its config from the metadata, its weights checked."""
    try:
        with safe_open(str(file), framework="pt", device=str(device)) as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (no __iter__)
    except Exception as e:  # safetensors raises its own error types for a cut-off file
        raise ValueError(f"{file} is not a readable safetensors file ({e})") from e
    if "memory" not in meta:
        raise ValueError(f"{file} has no memory config in its metadata; save it with save_memory")
    memory = build_memory(json.loads(meta["memory"]))
    module = memory.module.to(device)
    expected = module.state_dict()
    if set(expected) != set(tensors):
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise ValueError(f"{file} does not match its config: missing {missing}, extra {extra}")
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape or not bool(torch.isfinite(tensor).all()):
            raise ValueError(
                f"{file}: tensor {name!r} has shape {tuple(tensor.shape)} (config: "
                f"{tuple(expected[name].shape)}) or non-finite values; the file is damaged"
            )
    module.load_state_dict(tensors)
    module.eval()
    return memory
