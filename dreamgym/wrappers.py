"""Transfer: the real env seen through the world model, so a dream-trained policy runs unchanged.

Ha & Schmidhuber (2018, §3.3 and §4.3) train the controller inside the dream and deploy it in the
real env with V and M still in the loop: every real frame is encoded by V into z, and M's LSTM
keeps reading (z_t, a_t) so that its hidden state h follows the real episode. M is reached
through its `Memory` (`dreamgym.models.memory`): each real z is observed with the action that
led to it, and the policy sees the memory's features beside z (the MDN-RNN's h). The controller
sees [z, h] in both places (or [z, c, h], c the LSTM's cell state, for `obs_mode="zch"`). `WorldModelObservation` is that loop as a Gymnasium wrapper.

Conventions match the dream exactly (`dreamgym.envs.dream.DreamVectorEnv`):

- a frame is preprocessed by the world's own `FramePreprocessing` (the one its data was
  collected with) and encoded by V into z the way the world's memory dreams z (`Z_MODES`):
  z ~ N(mu, σ²) for the MDN-RNN, whose dream z are mixture draws; z = mu for the RSSM, whose
  dream z are its decoder's means;
- at reset h_0 = c_0 = 0; after the action a_t, M's LSTM consumes (z_t, a_t), the encoded action
  being what the dream feeds M (Box clipped to the bounds, Discrete one-hot:
  `spaces.encode_actions_tensor`), so the observation after a step is [z_{t+1}, h_{t+1}];
- `"pixels"` is V's decoding of mu (64×64×3 uint8), like the dream's pixels, which are V's
  decoding of its z. The raw preprocessed frame is kept in `last_frame` for side-by-side videos.
"""

from __future__ import annotations

import os
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch

from dreamgym.envs.dream import OBS_MODES, observation_space_for, resolve_device
from dreamgym.envs.real import make_real_env
from dreamgym.models.memory import MDNState, memory_of
from dreamgym.spaces import check_actions, encode_actions_tensor, same_action_space
from dreamgym.world import World

Z_MODES = ("sample", "mean")
"""How a real frame becomes z; the default (None) is the world memory's `real_z`, the mode that
looks like its dream's z. "sample": z ~ N(mu, σ²) from V's posterior, the distribution an
MDN-RNN was trained on and its dream samples from (the paper's code encodes real frames the
same way). "mean": z = mu, as an RSSM's dream z are its decoder's means. The wrong mode shows
an agent inputs it never met: on TakeCover, dims V leaves unused have mu ≈ 0, σ ≈ 1, so mean z
has std 0.41 where an MDN-RNN's dream z has 0.90 (a dream-trained controller collapsed to one
action in reality); on CarRacing, RSSM controllers fed sampled z scored −57 real for 547 dreamed."""


class WorldModelMismatchError(ValueError):
    """A world is used with a real env it was not learned from."""


class WorldModelObservation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """A real env whose observations are the dream's: [z, h], z, V's decoded pixels or [z, c, h].

    ## Description
    Wraps the real env a world was learned from (e.g. `CarRacing-v3`, `VizdoomTakeCover-v1`). Each
    real observation is preprocessed as during collection, encoded by V (a posterior sample, see `Z_MODES`), and M's LSTM is
    stepped with (z_t, a_t) after each action to track h (Ha & Schmidhuber 2018, §3.3).

    A plain `gym.Wrapper`, not an `ObservationWrapper`: the observation depends on the action
    (through h), which `ObservationWrapper.observation` never sees. Its arguments are recorded
    in `env.spec` (the world by its directory when it has one), so `env.spec.make()` rebuilds it.

    ## Action Space
    The real env's, which must equal the world's (checked at construction).

    ## Observation Space
    `observation_space_for(world, obs_mode)`, the dream's: float32 [z, h] for `"zh"`, float32 z
    for `"z"`, uint8 64×64×3 V decoding for `"pixels"`, float32 [z, c, h] for `"zch"`.

    ## Rewards and Episode End
    The real env's. `max_episode_steps` adds a step cap (truncation) on top of the env's own;
    `make_real` already applies the paper's 2,100-step cap to TakeCover, which has none.

    ## Arguments
    `env` (the real env), `world` (a `World`, a bundle directory or a bundled name), `obs_mode`,
    `device` ("cpu" by default: one frame per step gains nothing from a GPU), `max_episode_steps`,
    `check_env_id` (compare `env.spec.id` with the world's env id; on by default), `z_mode`
    (`Z_MODES`; default: the one the world's memory dreams, `Memory.real_z`).

    ## Version History
    * v0: initial version; `z_mode` defaults to the world memory's (an RSSM world: V's mean).
    """

    def __init__(
        self,
        env: gym.Env,
        world: World | str | os.PathLike,
        obs_mode: str = "zh",
        device: str | torch.device = "cpu",
        max_episode_steps: int | None = None,
        check_env_id: bool = True,
        z_mode: str | None = None,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self,
            world=str(world.path) if isinstance(world, World) and world.path else world,
            obs_mode=obs_mode,
            z_mode=z_mode,
            device=str(device),
            max_episode_steps=max_episode_steps,
            check_env_id=check_env_id,
            _disable_deepcopy=True,
        )
        gym.Wrapper.__init__(self, env)
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {obs_mode!r}")
        if max_episode_steps is not None and int(max_episode_steps) < 1:
            raise ValueError(f"max_episode_steps must be ≥ 1 or None, got {max_episode_steps}")
        self.device = resolve_device(device)
        if isinstance(world, World):
            self.world = world if world.device == self.device else world.copy_to(self.device)
        else:
            self.world = World.load(world, device=self.device)
        self.obs_mode = obs_mode
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.preprocessing = self.world.preprocessing
        _check_env_fits_world(env, self.world, check_env_id)
        try:
            self.preprocessing(env.observation_space.sample())
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise WorldModelMismatchError(
                f"world {self.world.name!r} preprocesses frames with {self.preprocessing}, which "
                f"does not fit the observation space {env.observation_space} ({e}); wrap the env "
                f"the world was learned from ({self.world.env_id})"
            ) from e

        self.observation_space = observation_space_for(self.world, obs_mode)
        self.tracker = LatentTracker(self.world, self.device, z_mode=z_mode)
        self._t = 0

    # --- what the policy sees ----------------------------------------------------------------
    @property
    def last_frame(self) -> np.ndarray | None:
        """The last real observation preprocessed for V (uint8 64×64×3), for side-by-side videos."""
        return self.tracker.last_frame

    @property
    def z(self) -> np.ndarray:
        """V's mean latent of the last real frame, float32 (latent_dim,)."""
        return self.tracker.z

    @property
    def h(self) -> np.ndarray:
        """M's hidden state after the last (z, a), float32 (hidden_dim,); zeros right after reset."""
        return self.tracker.h

    @property
    def c(self) -> np.ndarray:
        """M's LSTM cell state after the last (z, a), float32 (hidden_dim,); zeros after reset."""
        return self.tracker.c

    def reconstruction(self) -> np.ndarray:
        """V's decoding of the last frame's z: uint8 64×64×3 (what the dream would show)."""
        return self.tracker.reconstruction()

    # --- Gymnasium API -----------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.tracker.reset(seed)
        self._t = 0
        self.tracker.see(self.preprocessing(obs))
        return self.tracker.observation(self.obs_mode), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        encoded = self.tracker.encode_action(action)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.tracker.advance(encoded)
        self.tracker.see(self.preprocessing(obs))
        self._t += 1
        if (
            self.max_episode_steps is not None
            and self._t >= self.max_episode_steps
            and not terminated
        ):
            truncated = True
        return self.tracker.observation(self.obs_mode), reward, terminated, truncated, info


class LatentTracker:
    """V encodes each real frame, M's memory follows it: the state a dream policy sees.

    The one place that turns a real episode into the dream's observations; used by
    `WorldModelObservation` (an env) and by frame policies (`evaluation.FramePolicyFactory`,
    which `dreamgym collect --policy FILE` uses to collect with a trained controller).
    Per step: `advance(action)`, then `see(frame)` of the frame it led to, which the world's
    memory observes (`Memory.observe(state, z, action)`; zeros before the first frame).
    """

    def __init__(
        self, world: World, device: torch.device | str = "cpu", z_mode: str | None = None
    ) -> None:
        self.memory = memory_of(world)
        z_mode = self.memory.real_z if z_mode is None else z_mode
        if z_mode not in Z_MODES:
            raise ValueError(f"z_mode must be one of {Z_MODES} or None, got {z_mode!r}")
        self.world = world
        self.device = torch.device(device)
        self.z_mode = z_mode
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(0)
        self._space = world.action_space
        self._discrete = isinstance(self._space, gym.spaces.Discrete)
        if not self._discrete:
            self._low = torch.as_tensor(self._space.low, device=self.device)
            self._high = torch.as_tensor(self._space.high, device=self.device)
        self._z = torch.zeros(1, world.latent_dim, device=self.device)
        self._state = self.memory.initial_state(1, self.device)
        self._action: torch.Tensor | None = None
        self.last_frame: np.ndarray | None = None

    def reset(self, seed: int | None = None) -> None:
        """The memory's initial state (h_0 = c_0 = 0, as in the dream); a seed reseeds the z
        samples (z_mode="sample")."""
        if seed is not None:
            self.generator.manual_seed(int(seed))
        self._state = self.memory.initial_state(1, self.device)
        self._action = None

    @torch.inference_mode()
    def see(self, frame: np.ndarray) -> None:
        """Encode one preprocessed uint8 64×64×3 frame into z (see `Z_MODES`)."""
        self.last_frame = frame
        mu, logvar = self.world.vae.encode(torch.tensor(frame, device=self.device).unsqueeze(0))
        if self.z_mode == "sample":
            eps = torch.randn(mu.shape, generator=self.generator, device=self.device)
            mu = mu + torch.exp(0.5 * logvar) * eps
        self._z = mu
        action = self._action
        if action is None:  # the episode's first frame
            action = torch.zeros(1, self.memory.action_dim, device=self.device)
        self._state = self.memory.observe(self._state, mu, action, self.generator)
        self._action = None

    def advance(self, encoded_action: torch.Tensor) -> None:
        """The action a_t taken at the last frame: the memory reads it with the next `see`
        (the MDN-RNN's LSTM consumes (z_t, a_t) then)."""
        self._action = encoded_action

    @property
    def z(self) -> np.ndarray:
        return self._z[0].cpu().numpy().astype(np.float32)

    @property
    def h(self) -> np.ndarray:
        """The memory's features after the last frame (the MDN-RNN's h)."""
        return self._features()[0].cpu().numpy().astype(np.float32)

    @property
    def c(self) -> np.ndarray:
        """The LSTM's cell state (the "c" of obs_mode "zch")."""
        return self._cell()[0].cpu().numpy().astype(np.float32)

    def _features(self) -> torch.Tensor:
        return self.memory.features(self._state)

    def _cell(self) -> torch.Tensor:
        if not isinstance(self._state, MDNState):
            raise ValueError(
                f"obs_mode 'zch' reads an LSTM's cell state; world {self.world.name!r} has a "
                f"{self.memory.kind} memory: use obs_mode 'zh'"
            )
        return self._state.c

    @torch.inference_mode()
    def reconstruction(self) -> np.ndarray:
        return self.world.vae.decode_uint8(self._z)[0].cpu().numpy()

    def observation(self, obs_mode: str) -> np.ndarray:
        """The dream's observation for the current state in `obs_mode`."""
        if obs_mode == "zh":
            zh = torch.cat([self._z, self._features()], dim=1)
            return zh[0].cpu().numpy().astype(np.float32)
        if obs_mode == "zch":
            zch = torch.cat([self._z, self._cell(), self._features()], dim=1)
            return zch[0].cpu().numpy().astype(np.float32)
        if obs_mode == "z":
            return self.z
        return self.reconstruction()

    def encode_action(self, action: Any) -> torch.Tensor:
        """Check one action and turn it into M's input (1, action_input_dim), as the dream does."""
        t = torch.as_tensor(check_actions(self._space, action), device=self.device)
        if self._discrete:
            return encode_actions_tensor(t, self._space)
        return encode_actions_tensor(t, self._space, self._low, self._high)


def _bare_id(env_id: str) -> str:
    """The env id without Gymnasium's `module:` prefix."""
    return env_id.split(":", 1)[-1]


def _check_env_fits_world(env: gym.Env, world: World, check_env_id: bool) -> None:
    """Fail early, naming both sides, when a world is wrapped around an env it does not model."""
    spec = getattr(env, "spec", None)
    # `gym.make("pkg.module:Env-v0")` imports pkg.module, then makes Env-v0: its spec.id has no
    # module prefix, while a world learned from that id records it with the prefix.
    if check_env_id and spec is not None and _bare_id(spec.id) != _bare_id(world.env_id):
        raise WorldModelMismatchError(
            f"world {world.name!r} was learned from {world.env_id}, but the env is {spec.id}; "
            f"wrap a {world.env_id} env (dreamgym.wrappers.make_real(world)), or pass "
            "check_env_id=False if the two ids name the same game"
        )
    if not same_action_space(env.action_space, world.action_space):
        raise WorldModelMismatchError(
            f"world {world.name!r} ({world.env_id}) has action space {world.action_space}, but "
            f"the env {spec.id if spec is not None else type(env.unwrapped).__name__} has "
            f"{env.action_space}; a world only runs on the env it was learned from"
        )


def make_real(
    world: World | str | os.PathLike,
    obs_mode: str = "zh",
    device: str | torch.device = "cpu",
    **make_kwargs: Any,
) -> WorldModelObservation:
    """The world's real env (`make_real_env(world.env_id, **make_kwargs)`) seen through V and M.

    `make_kwargs` go to `gym.make` (e.g. `render_mode="rgb_array"`, `max_episode_steps=`).
    """
    if not isinstance(world, World):
        world = World.load(world, device=resolve_device(device))
    env = make_real_env(world.env_id, **make_kwargs)
    try:
        return WorldModelObservation(env, world, obs_mode=obs_mode, device=device)
    except BaseException:
        env.close()
        raise
