"""`dreamgym init`: an untrained world for any image-observation env, to see the plumbing work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dreamgym.envs.real import make_real_env
from dreamgym.models.mdnrnn import MDNRNNConfig
from dreamgym.models.vae import VAEConfig
from dreamgym.spaces import action_input_dim
from dreamgym.utils.options import option
from dreamgym.utils.validate import check_output_dir
from dreamgym.world import CONFIG_FILE, World


@dataclass
class InitConfig:
    """Options of `dreamgym init`."""

    env: str = option(help="real Gymnasium env id, e.g. CarRacing-v3 or VizdoomTakeCover-v1")
    out: str = option(help="directory to write the world bundle into")
    latent: int = option(32, "size of V's latent z")
    hidden: int = option(256, "M's LSTM units")
    mixtures: int = option(5, "Gaussians in M's mixture")
    initial_resets: int = option(8, "real resets whose first frames seed the latent bank")
    seed: int = option(0, "seed for the random weights and the real resets")
    force: bool = option(False, "overwrite an existing bundle in --out")


def init_world(config: InitConfig) -> Path:
    """Write an untrained world bundle (random V and M) and return its directory."""
    out = check_output_dir(config.out, holds="world")
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
