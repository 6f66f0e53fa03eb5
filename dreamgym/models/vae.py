"""V: the convolutional VAE that compresses a 64×64×3 frame into a small latent z.

Architecture and loss follow Ha & Schmidhuber (2018), appendix A.1: four stride-2 4×4 convolutions
(32, 64, 128, 256 channels) to a 2×2×256 map, a Gaussian latent, and a mirrored decoder of
transposed convolutions (5, 5, 6, 6 kernels) back to 64×64×3 in [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

ENCODER_CHANNELS = (32, 64, 128, 256)
DECODER_KERNELS = (5, 5, 6, 6)


@dataclass
class VAEConfig:
    """Hyper-parameters of V."""

    latent_dim: int = 32
    """Size of z (the paper: 32 for CarRacing, 64 for Doom)."""
    kl_tolerance: float = 0.5
    """Free bits per latent dimension: KL below latent_dim × kl_tolerance is not penalised (paper's code)."""

    def to_dict(self) -> dict:
        return asdict(self)


class ConvVAE(nn.Module):
    """V. `encode` takes uint8 (B, 64, 64, 3) frames or float (B, 3, 64, 64) in [0, 1]."""

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or VAEConfig()
        z = self.config.latent_dim
        layers: list[nn.Module] = []
        in_ch = 3
        for ch in ENCODER_CHANNELS:
            layers += [nn.Conv2d(in_ch, ch, 4, stride=2), nn.ReLU()]
            in_ch = ch
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        self.fc_mu = nn.Linear(2 * 2 * 256, z)
        self.fc_logvar = nn.Linear(2 * 2 * 256, z)
        self.fc_dec = nn.Linear(z, 1024)
        dec: list[nn.Module] = []
        in_ch = 1024
        out_chs = (128, 64, 32, 3)
        for i, (ch, k) in enumerate(zip(out_chs, DECODER_KERNELS, strict=True)):
            dec.append(nn.ConvTranspose2d(in_ch, ch, k, stride=2))
            dec.append(nn.ReLU() if i < 3 else nn.Sigmoid())
            in_ch = ch
        self.decoder = nn.Sequential(*dec)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @staticmethod
    def frames_to_input(frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 64, 64, 3) → float (B, 3, 64, 64) in [0, 1]; float input passes through."""
        if frames.dtype == torch.uint8:
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(
                    f"expected uint8 frames of shape (B, 64, 64, 3), got {tuple(frames.shape)}"
                )
            return frames.permute(0, 3, 1, 2).float().div_(255.0)
        return frames

    def encode(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames → (mu, logvar), each (B, latent_dim)."""
        x = self.frames_to_input(frames)
        feat = self.encoder(x)
        return self.fc_mu(feat), self.fc_logvar(feat).clamp(-20.0, 10.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z → float images (B, 3, 64, 64) in [0, 1]."""
        # The first transposed conv sees a 1×1 map, so it is a matmul with the same weights; as
        # one it runs ~5× faster on CPU than the transposed-conv kernel (benchmarks/vae_training.py).
        first = self.decoder[0]
        x = self.fc_dec(z) @ first.weight.flatten(1)
        x = x.view(-1, first.out_channels, *first.kernel_size) + first.bias.view(1, -1, 1, 1)
        return self.decoder[1:](x)

    def decode_uint8(self, z: torch.Tensor) -> torch.Tensor:
        """z → uint8 images (B, 64, 64, 3), the Gymnasium pixel layout."""
        img = self.decode(z)
        return (img.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    def forward(
        self, frames: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction of frames (reparameterised sample), mu, logvar."""
        mu, logvar = self.encode(frames)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + eps * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


def vae_loss(
    recon: torch.Tensor,
    target: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    kl_tolerance: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, reconstruction, kl): per-image summed squared error + KL with free bits (paper's code)."""
    target = ConvVAE.frames_to_input(target)
    rec = (recon - target).pow(2).sum(dim=(1, 2, 3)).mean()
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
    kl = torch.clamp(kl, min=kl_tolerance * mu.shape[1]).mean()
    return rec + kl, rec, kl
