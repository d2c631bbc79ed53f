"""Autoencoders with one small interface: `name`, `latent_channels`, `downscale`, `encode`, `decode`."""
from .autoencoder import TinyAutoencoder, run_frames
from .loading import MARDINI_TAE, TAEF2, load_mardini_tae, load_taef2, load_vae, save_mardini_tae
from .tiny import TinyAEConfig

__all__ = [
    "TinyAutoencoder",
    "run_frames",
    "TinyAEConfig",
    "load_vae",
    "load_taef2",
    "load_mardini_tae",
    "save_mardini_tae",
    "TAEF2",
    "MARDINI_TAE",
]
