"""The world bundle: V + M + a bank of initial latents, saved as one directory.

A bundle is everything needed to dream an environment offline: `config.json` (schema version,
env id, action space, preprocessing, hyper-parameters, episode limit, sha256 of every weight
file, provenance and measured metrics), `vae.safetensors`, `mdnrnn.safetensors`,
`initial_latents.safetensors` and a `MODEL_CARD.md`. M is a memory family (`"memory"` in
config.json, absent in every bundle before the RSSM): an MDN-RNN (`mdnrnn.safetensors`, config
section `"mdnrnn"`) or an RSSM (`rssm.safetensors`, section `"rssm"`). Loading never unpickles anything: weights
are safetensors and every file is checked against its recorded checksum and shapes; config.json
itself is validated field by field and carries its own checksum (`dreamgym.world_config`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dreamgym.envs.real import make_real_env
from dreamgym.models.mdnrnn import MDNRNN, MDNRNNConfig
from dreamgym.models.rssm import RSSM, RSSMConfig
from dreamgym.models.vae import ConvVAE, VAEConfig
from dreamgym.preprocessing import FramePreprocessing, preprocessing_for
from dreamgym.spaces import action_input_dim, action_space_from_dict, action_space_to_dict
from dreamgym.utils.files import atomic_save_safetensors, atomic_write_bytes, sha256_file
from dreamgym.utils.validate import check_relative_path, resolve_inside
from dreamgym.world_config import (
    CONFIG_FILE,
    SCHEMA_VERSION,
    default_model_card,
    restamp_config,
    write_config,
)
from dreamgym.world_files import (
    WorldLoadError,
    check_files,
    check_weights,
    load_state,
    read_config,
    read_safetensors,
)

__all__ = ["CONFIG_FILE", "SCHEMA_VERSION", "World", "WorldLoadError", "restamp_config"]
VAE_FILE = "vae.safetensors"
MDNRNN_FILE = "mdnrnn.safetensors"
RSSM_FILE = "rssm.safetensors"
LATENTS_FILE = "initial_latents.safetensors"
MODEL_CARD_FILE = "MODEL_CARD.md"
WEIGHT_FILES = (VAE_FILE, MDNRNN_FILE, LATENTS_FILE)
"""An MDN-RNN world's weight files (an RSSM world's: `weight_files("rssm")`)."""
MEMORY_FILES = {"mdnrnn": MDNRNN_FILE, "rssm": RSSM_FILE}
"""Each memory family's weight file; its config section in config.json is named as the family."""
BUNDLED_DIR = Path(__file__).parent / "worlds"


def weight_files(memory: str) -> tuple[str, str, str]:
    """V's, M's and the latent bank's files for a world whose memory is `memory`."""
    return (VAE_FILE, MEMORY_FILES[memory], LATENTS_FILE)


def bundled_world_names() -> list[str]:
    """Names of the worlds shipped inside the package."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / CONFIG_FILE).is_file())


def resolve_world_path(world: str | os.PathLike) -> Path:
    """A bundled name ("carracing") or a directory → the bundle's directory."""
    p = Path(world).expanduser()
    if p.is_dir():
        return p
    if isinstance(world, str) and world in bundled_world_names():
        return BUNDLED_DIR / world
    names = ", ".join(bundled_world_names()) or "none installed"
    raise WorldLoadError(
        f"world {str(world)!r} is neither a directory nor a bundled world (bundled: {names}); "
        "pass a bundle directory written by `dreamgym train` or `dreamgym init`"
    )


class World:
    """A loaded world: V, M, the initial-latent bank and the config that describes them.

    M (`memory_net`) is an `MDNRNN` or an `RSSM`; `memory_kind` says which, and `mdnrnn` /
    `rssm` hand it out typed, with a clear error when a caller needs the other family.
    """

    def __init__(
        self,
        vae: ConvVAE,
        memory_net: MDNRNN | RSSM,
        initial_mu: torch.Tensor,
        initial_logvar: torch.Tensor,
        config: dict[str, Any],
        path: Path | None = None,
    ) -> None:
        if not isinstance(memory_net, (MDNRNN, RSSM)):
            raise TypeError(f"a world's M is an MDNRNN or an RSSM, got {type(memory_net)}")
        self.vae = vae.eval()
        self.memory_net = memory_net.eval()
        self.initial_mu = initial_mu.float()
        self.initial_logvar = initial_logvar.float()
        self.config = config
        self.path = path
        self._weights_sha256: tuple[Any, str] | None = None
        self._config_sha256: tuple[Any, str | None] | None = None

    # --- what the world describes -------------------------------------------------------------
    @property
    def env_id(self) -> str:
        return self.config["env_id"]

    @property
    def name(self) -> str:
        return self.config.get("name") or (self.path.name if self.path else self.env_id)

    @property
    def action_space(self) -> gym.Space:
        return action_space_from_dict(self.config["action_space"])

    @property
    def preprocessing(self) -> FramePreprocessing:
        return FramePreprocessing.from_dict(self.config["preprocessing"])

    @property
    def latent_dim(self) -> int:
        return self.vae.latent_dim

    @property
    def memory_kind(self) -> str:
        """ "mdnrnn" or "rssm": M's family (config.json's `"memory"`, absent: "mdnrnn")."""
        return "rssm" if isinstance(self.memory_net, RSSM) else "mdnrnn"

    @property
    def mdnrnn(self) -> MDNRNN:
        """M, where it is an MDN-RNN; an RSSM world raises a ValueError saying so."""
        if not isinstance(self.memory_net, MDNRNN):
            raise ValueError(
                f"world {self.name!r} has an RSSM memory; this reads an MDN-RNN's LSTM (use "
                "`dreamgym.models.memory.memory_of(world)` for either family)"
            )
        return self.memory_net

    @property
    def rssm(self) -> RSSM:
        """M, where it is an RSSM; an MDN-RNN world raises a ValueError saying so."""
        if not isinstance(self.memory_net, RSSM):
            raise ValueError(f"world {self.name!r} has an MDN-RNN memory, not an RSSM")
        return self.memory_net

    @property
    def memory_config(self) -> MDNRNNConfig | RSSMConfig:
        """M's config (both families have `latent_dim`, `action_dim`, `done_logit_offset`)."""
        return self.memory_net.config

    @property
    def feature_dim(self) -> int:
        """Width of what an agent sees beside z: the MDN-RNN's h, the RSSM's [h, s]."""
        if isinstance(self.memory_net, RSSM):
            return self.memory_net.config.feature_dim
        return self.memory_net.hidden_dim

    @property
    def hidden_dim(self) -> int:
        """The MDN-RNN's LSTM width (h and c); an RSSM world raises (see `feature_dim`)."""
        return self.mdnrnn.hidden_dim

    @property
    def max_episode_steps(self) -> int | None:
        return self.config.get("max_episode_steps")

    @property
    def temperature(self) -> float:
        """Default sampling temperature τ of this world."""
        return float(self.config.get("temperature", 1.0))

    @property
    def device(self) -> torch.device:
        return self.initial_mu.device

    def to(self, device: torch.device | str) -> World:
        """Move the networks and the latent bank to `device` (in place); returns self."""
        self.vae.to(device)
        self.memory_net.to(device)
        self.initial_mu = self.initial_mu.to(device)
        self.initial_logvar = self.initial_logvar.to(device)
        return self

    def copy_to(self, device: torch.device | str) -> World:
        """A copy of this world on `device`, so two envs on different devices don't fight."""
        w = World(
            copy.deepcopy(self.vae).to("cpu"),
            copy.deepcopy(self.memory_net).to("cpu"),
            self.initial_mu.cpu().clone(),
            self.initial_logvar.cpu().clone(),
            copy.deepcopy(self.config),
            self.path,
        )
        return w.to(device)

    # --- identity -------------------------------------------------------------------------------
    # Two identities, because saved agents and controllers already record them and must keep
    # matching: SB3 agents check the weights themselves, controllers record the bundle's files.
    @property
    def weights_sha256(self) -> str:
        """sha256 of env id, action space, preprocessing and V's and M's weights (as float32).

        What an SB3 agent records (`dreamgym.sb3.world_sha256`): stable across save/load,
        float16 bundles and devices; it changes when V or M change, i.e. exactly when z and h
        start to mean something else to a trained agent. Cached: hashed once per set of
        weights, again only when a weight is replaced (`.to`, `load_state_dict`) or changed in
        place (its version counter moves; writes through `.data` are not seen).
        """
        ident = json.dumps(
            {
                "env_id": self.env_id,
                "action_space": self.config["action_space"],
                "preprocessing": self.config["preprocessing"],
            },
            sort_keys=True,
        )
        parts = (("vae", self.vae), (self.memory_kind, self.memory_net))
        states = [(p, m.state_dict()) for p, m in parts]
        key = (
            ident,
            tuple(
                (prefix, name, t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape))
                for prefix, state in states
                for name, t in sorted(state.items())
            ),
        )
        if self._weights_sha256 is None or self._weights_sha256[0] != key:
            h = hashlib.sha256()
            h.update(ident.encode())
            for prefix, state in states:
                for name, tensor in sorted(state.items()):
                    h.update(f"{prefix}.{name}".encode())
                    h.update(
                        tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
                    )
            self._weights_sha256 = (key, h.hexdigest())
        return self._weights_sha256[1]

    @property
    def fingerprint(self) -> dict[str, Any]:
        """What a controller records about its world (`dreamgym.controllers.world_fingerprint`).

        Env id, name, path, the sha256 of the bundle's config.json (None when unsaved) and M's
        weight checksum as config.json records it (under "mdnrnn_sha256" for either family, the
        key controllers have always recorded); nothing is re-hashed but config.json, and that
        only when the file changed since the last call.
        """
        return {
            "env_id": self.env_id,
            "name": self.name,
            "path": str(self.path) if self.path is not None else None,
            "config_sha256": self._config_file_sha256(),
            "mdnrnn_sha256": self.config.get("files", {}).get(MEMORY_FILES[self.memory_kind]),
        }

    def _config_file_sha256(self) -> str | None:
        if self.path is None:
            return None
        file = self.path / CONFIG_FILE
        if not file.is_file():
            return None
        st = file.stat()
        key = (str(file), st.st_ino, st.st_size, st.st_mtime_ns)
        if self._config_sha256 is None or self._config_sha256[0] != key:
            self._config_sha256 = (key, sha256_file(file))
        return self._config_sha256[1]

    # --- building -------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        env_id: str,
        action_space: gym.Space,
        preprocessing: FramePreprocessing,
        vae_config: VAEConfig | None = None,
        rnn_config: MDNRNNConfig | RSSMConfig | None = None,
        max_episode_steps: int | None = None,
        temperature: float = 1.0,
        initial_frames: np.ndarray | None = None,
        seed: int = 0,
        name: str | None = None,
    ) -> World:
        """A world with freshly initialised (untrained) V and M for `env_id`.

        `rnn_config` is M's config: an `MDNRNNConfig` (the default family) or an `RSSMConfig`.
        """
        torch.manual_seed(seed)
        vae_config = vae_config or VAEConfig()
        rnn_config = rnn_config or MDNRNNConfig(
            latent_dim=vae_config.latent_dim, action_dim=action_input_dim(action_space)
        )
        if rnn_config.latent_dim != vae_config.latent_dim:
            raise ValueError("V and M disagree on latent_dim")
        if rnn_config.action_dim != action_input_dim(action_space):
            raise ValueError(
                f"M's action_dim {rnn_config.action_dim} does not fit {action_space} "
                f"(needs {action_input_dim(action_space)})"
            )
        vae = ConvVAE(vae_config)
        rnn: MDNRNN | RSSM = (
            RSSM(rnn_config) if isinstance(rnn_config, RSSMConfig) else MDNRNN(rnn_config)
        )
        kind = "rssm" if isinstance(rnn, RSSM) else "mdnrnn"
        config = {
            "schema_version": SCHEMA_VERSION,
            "name": name,
            "env_id": env_id,
            "action_space": action_space_to_dict(action_space),
            "preprocessing": preprocessing.to_dict(),
            "max_episode_steps": max_episode_steps,
            "temperature": float(temperature),
            "vae": vae_config.to_dict(),
            **({} if kind == "mdnrnn" else {"memory": kind}),
            kind: rnn_config.to_dict(),
            "files": {},
            "provenance": {},
            "metrics": {},
        }
        if initial_frames is None:
            mu = torch.zeros(1, vae_config.latent_dim)
            logvar = torch.zeros(1, vae_config.latent_dim)
        else:
            with torch.no_grad():
                mu, logvar = vae.encode(torch.as_tensor(np.asarray(initial_frames)))
        return cls(vae, rnn, mu, logvar, config)

    @classmethod
    def untrained(cls, env_id: str, n_initial: int = 8, seed: int = 0, **kwargs: Any) -> World:
        """Random V and M for a real env, initial latents from `n_initial` real resets.

        Lets a user see and test the whole plumbing (gym.make, make_vec, wrappers) before any
        data is collected or any network is trained.
        """
        env = make_real_env(env_id)
        try:
            pre = preprocessing_for(env_id, env.observation_space)
            frames = [pre(env.reset(seed=seed + i)[0]) for i in range(n_initial)]
            max_steps = env.spec.max_episode_steps if env.spec is not None else None
            action_space = env.action_space
        finally:
            env.close()
        world = cls.build(
            env_id,
            action_space,
            pre,
            max_episode_steps=max_steps,
            initial_frames=np.stack(frames),
            seed=seed,
            **kwargs,
        )
        world.config["provenance"] = {
            "kind": "untrained",
            "command": f"dreamgym init --env {env_id}",
            "initial_resets": n_initial,
        }
        return world

    # --- saving and loading ----------------------------------------------------------------
    def save(self, directory: str | os.PathLike, dtype: str = "float32") -> Path:
        """Write the bundle atomically file by file; `dtype` "float16" halves the weights' size."""
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
        torch_dtype = torch.float16 if dtype == "float16" else torch.float32
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)

        def cast(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: v.detach().to("cpu", torch_dtype) for k, v in sd.items()}

        atomic_save_safetensors(cast(self.vae.state_dict()), out / VAE_FILE)
        kind = self.memory_kind
        atomic_save_safetensors(cast(self.memory_net.state_dict()), out / MEMORY_FILES[kind])
        atomic_save_safetensors(
            {"mu": self.initial_mu.float(), "logvar": self.initial_logvar.float()},
            out / LATENTS_FILE,
        )
        config = copy.deepcopy(self.config)
        config["schema_version"] = SCHEMA_VERSION
        config["weights_dtype"] = dtype
        files = {name: sha256_file(out / name) for name in weight_files(kind)}
        for extra in config.get("files", {}):
            check_relative_path(extra, f"files[{extra!r}]", "World.save")
            if extra not in files and (out / extra).is_file():
                files[extra] = sha256_file(out / extra)
        config["files"] = files
        config = write_config(out, config)
        if not (out / MODEL_CARD_FILE).exists():
            atomic_write_bytes(out / MODEL_CARD_FILE, default_model_card(config).encode())
        self.config = config
        self.path = out
        return out

    def register_file(self, name: str) -> None:
        """Record the checksum of an extra file in the bundle (e.g. a shipped controller)."""
        if self.path is None:
            raise ValueError("save the world before registering files in it")
        file = resolve_inside(self.path, name, "file", "World.register_file")
        self.config.setdefault("files", {})[name] = sha256_file(file)
        self.config = write_config(self.path, self.config)

    @classmethod
    def load(cls, world: str | os.PathLike, device: str | torch.device = "cpu") -> World:
        """Load a bundled name or a bundle directory, verifying files, checksums and shapes."""
        path = resolve_world_path(world)
        config_path = path / CONFIG_FILE
        if not config_path.is_file():
            raise WorldLoadError(
                f"world {path} has no {CONFIG_FILE} — it is not a world bundle; "
                "re-run `dreamgym train` or `dreamgym init` to write one"
            )
        config = read_config(config_path)
        kind = config.get("memory", "mdnrnn")
        check_files(path, config_path, config["files"], weight_files(kind))

        vae = ConvVAE(VAEConfig(**config["vae"]))
        rnn: MDNRNN | RSSM
        try:
            if kind == "rssm":
                rnn = RSSM(RSSMConfig.from_dict(config["rssm"]))
            else:
                rnn = MDNRNN(MDNRNNConfig.from_dict(config["mdnrnn"]))  # no "mixture": shared
        except (TypeError, ValueError) as e:
            raise WorldLoadError(f"{config_path}: M's config {kind!r} is not valid ({e})") from e
        load_state(vae, path / VAE_FILE)
        load_state(rnn, path / MEMORY_FILES[kind])
        latents = read_safetensors(path / LATENTS_FILE)
        z = vae.latent_dim
        for key in ("mu", "logvar"):
            t = latents.get(key)
            if t is None or t.ndim != 2 or t.shape[1] != z or t.shape[0] < 1:
                raise WorldLoadError(
                    f"{path / LATENTS_FILE}: {key!r} must be (N, {z}), got "
                    f"{None if t is None else tuple(t.shape)}; the bundle does not match its config"
                )
            check_weights(path / LATENTS_FILE, key, t)
        if rnn.config.latent_dim != z:
            raise WorldLoadError(f"{config_path}: V's latent_dim {z} ≠ M's {rnn.config.latent_dim}")
        action_space = action_space_from_dict(config["action_space"])
        if rnn.config.action_dim != action_input_dim(action_space):
            raise WorldLoadError(
                f"{config_path}: M's action_dim {rnn.config.action_dim} does not fit the action "
                f"space {action_space}"
            )
        world = cls(vae, rnn, latents["mu"], latents["logvar"], config, path)
        return world.to(device)
