"""The embedded default model's own autoencoder (mardini-tae) as a ComfyUI VAE: nothing to download.

mardini-tae is distilled into the TAEF2 / FLUX.2 32-channel latent space. It is handed to ComfyUI in
the layout ComfyUI's own taef2 and FLUX.2 VAE use (2x2 latent patches packed into 128 channels, 16
pixels per latent cell), so a LATENT made with one of the three decodes with the others, and core
VAE Decode / VAE Encode work on it like on any loader's VAE.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from mardini_core.vae import MARDINI_TAE, load_vae, run_frames

from . import comfy_bridge
from .comfy_vae import pack, unpack


class PackedAutoencoder(nn.Module):
    """A tiny autoencoder (latents at 1/8 of the side) seen in FLUX.2's packed layout (4x channels at 1/16)."""

    def __init__(self, tae: nn.Module):
        super().__init__()
        self.tae = tae

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in 0..1, sides multiples of 16 -> (N, 4C, H/16, W/16)."""
        return pack(run_frames(self.tae.encoder, images))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, 4C, h, w) -> (N, 3, 16h, 16w), roughly 0..1 (ComfyUI's VAE clamps)."""
        return run_frames(self.tae.decoder, unpack(latents))


def embedded_vae():
    """mardini-tae as a `comfy.sd.VAE` (loaded on ComfyUI's VAE devices, managed by its memory manager)."""
    tae = load_vae(MARDINI_TAE)
    channels = tae.latent_channels * 4
    return comfy_bridge.comfy_vae(PackedAutoencoder(tae), channels, tae.downscale * 2)
