"""The learned networks of a world: V (vae.py) and M, a memory family (memory.py: the protocol;
mdnrnn.py, rssm.py: its members)."""

from dreamgym.models.mdnrnn import MDNRNN, MDNRNNConfig, mdn_mean, mdn_nll, sample_mdn
from dreamgym.models.memory import MDNRNNMemory, Memory, RSSMMemory, memory_of
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
    "Memory",
    "MDNRNNMemory",
    "RSSMMemory",
    "memory_of",
]
