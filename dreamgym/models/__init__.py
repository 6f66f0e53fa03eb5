"""The two learned networks of a world: V (vae.py) and M (mdnrnn.py)."""

from dreamgym.models.mdnrnn import MDNRNN, MDNRNNConfig, mdn_mean, mdn_nll, sample_mdn
from dreamgym.models.vae import ConvVAE, VAEConfig, vae_loss

__all__ = [
    "ConvVAE",
    "VAEConfig",
    "vae_loss",
    "MDNRNN",
    "MDNRNNConfig",
    "mdn_mean",
    "mdn_nll",
    "sample_mdn",
]
