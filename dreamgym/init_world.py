"""`dreamgym init`: an untrained world for any image-observation env, to see the plumbing work."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dreamgym.envs.real import make_real_env
from dreamgym.models.mdnrnn import MDNRNNConfig
from dreamgym.models.vae import VAEConfig
from dreamgym.spaces import action_input_dim
from dreamgym.world import CONFIG_FILE, World


@dataclass
class InitConfig:
    """Options of `dreamgym init`."""

    env: str = field(
        metadata={"help": "real Gymnasium env id, e.g. CarRacing-v3 or VizdoomTakeCover-v1"}
    )
    out: str = field(metadata={"help": "directory to write the world bundle into"})
    latent: int = field(default=32, metadata={"help": "size of V's latent z"})
    hidden: int = field(default=256, metadata={"help": "M's LSTM units"})
    mixtures: int = field(default=5, metadata={"help": "Gaussians in M's mixture"})
    initial_resets: int = field(
        default=8, metadata={"help": "real resets whose first frames seed the latent bank"}
    )
    seed: int = field(
        default=0, metadata={"help": "seed for the random weights and the real resets"}
    )
    force: bool = field(default=False, metadata={"help": "overwrite an existing bundle in --out"})


def init_world(config: InitConfig) -> Path:
    """Write an untrained world bundle (random V and M) and return its directory."""
    out = Path(config.out)
    if (out / CONFIG_FILE).exists() and not config.force:
        raise FileExistsError(f"{out} already holds a world; pass --force to overwrite it")
    env = make_real_env(config.env)
    action_dim = action_input_dim(env.action_space)
    env.close()
    world = World.untrained(
        config.env,
        n_initial=config.initial_resets,
        seed=config.seed,
        vae_config=VAEConfig(latent_dim=config.latent),
        rnn_config=MDNRNNConfig(
            latent_dim=config.latent,
            action_dim=action_dim,
            hidden_dim=config.hidden,
            n_mixtures=config.mixtures,
        ),
        name=out.name,
    )
    world.save(out)
    return out
