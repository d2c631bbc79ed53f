"""ComfyUI's VAE object seen through mardini_core's VAE interface (channels-first, raw latents).

ComfyUI's `VAE.encode` takes [B,H,W,C] images in 0..1 and returns unscaled latents in the VAE's own
layout; `decode` returns [B,H,W,C]. Some VAEs pack 2x2 latent patches into channels (ComfyUI's FLUX.2
VAE and taef2: 128 channels at 16x for the 32-channel FLUX.2 latent space). A MarDini model trained on
the unpacked 32-channel latents gets them unpacked here and packed back for LATENT outputs, so core
nodes (VAEDecode) keep working on what our sampler returns.
"""
from __future__ import annotations

import torch

from mardini_core.errors import InputError

PROBE_SIDE = 256  # pixels; the spatial compression is measured once on a blank image of this size


def pack(z: torch.Tensor) -> torch.Tensor:
    """(N, C, 2h, 2w) -> (N, 4C, h, w), FLUX.2 order: channel c*4 + 2*i + j holds patch pixel (i, j)."""
    n, c, h, w = z.shape
    return z.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, c * 4, h // 2, w // 2)


def unpack(z: torch.Tensor) -> torch.Tensor:
    """Inverse of `pack`: (N, 4C, h, w) -> (N, C, 2h, 2w)."""
    n, c4, h, w = z.shape
    return z.reshape(n, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c4 // 4, h * 2, w * 2)


class ComfyVAE:
    """mardini_core VAE interface (`latent_channels`, `downscale`, `encode`, `decode`) over a ComfyUI VAE."""

    def __init__(self, vae, channels: int, vae_hint: str = ""):
        native = int(vae.latent_channels)
        if native == channels:
            self.packed = False
        elif native == 4 * channels:
            self.packed = True
        else:
            raise InputError(
                f"the VAE makes {native}-channel latents but this MarDini model expects {channels} ({4 * channels} where a VAE "
                f"packs 2x2 patches, as Load MarDini Model's, taef2 and the FLUX.2 VAE report them); connect the vae "
                "output of Load MarDini Model" + (", or taef2 / the FLUX.2 VAE from Load VAE" if channels == 32 else
                                                  f" or, in Load VAE, the VAE this model was trained with ({vae_hint or 'see the model config'})")
            )
        self.vae = vae
        self.latent_channels = channels
        self.downscale = self._measure_downscale()

    def _measure_downscale(self) -> int:
        """Pixels per latent cell of the unpacked latents (ComfyUI's reported ratio is wrong for taef2)."""
        probe = torch.zeros(1, PROBE_SIDE, PROBE_SIDE, 3)
        side = self.encode_native(probe).shape[-1] * (2 if self.packed else 1)
        if side == 0 or PROBE_SIDE % side:
            raise InputError(f"this VAE compresses {PROBE_SIDE} pixels to {side} latents; MarDini needs an image VAE with an integer ratio")
        return PROBE_SIDE // side

    def encode_native(self, images_hwc: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(images_hwc[..., :3]).float()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> raw unpacked latents (N, C, H/d, W/d)."""
        z = self.encode_native(images.movedim(1, -1))
        return unpack(z) if self.packed else z

    def to_native(self, z: torch.Tensor) -> torch.Tensor:
        """Raw unpacked latents (N, C, h, w) -> the VAE's own layout (what core VAEDecode takes)."""
        return pack(z) if self.packed else z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Raw unpacked latents (N, C, h, w) -> images (N, 3, H, W) in [0, 1]."""
        return self.vae.decode(self.to_native(z)).float().movedim(-1, 1)[:, :3]
