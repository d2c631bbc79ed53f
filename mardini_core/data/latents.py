"""Raw VAE latents of dataset clips, encoded once and kept on disk as safetensors (never pickles).

One file per clip, named by a hash of what made it (the clip's key and the VAE's weights: two
autoencoders of one name never share latents), written atomically, so several ranks or an interrupted
run can share a cache folder safely.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..checkpoint import atomic_save_safetensors, content_digest
from .clips import VideoClips
from .video import VideoReadError


def vae_fingerprint(vae) -> str:
    """What the cache keys latents by: the autoencoder's weights (with its name), not its name alone."""
    state = vae.state_dict() if isinstance(vae, torch.nn.Module) else {}
    return f"{vae.name}|{content_digest(state)}"


class LatentClips:
    """`load(index)` -> raw latents (high (K, C, H/8, W/8), low (K, C, h/8, w/8)) of a dataset clip.

    With `cache_dir`, each clip is encoded once and read back from disk afterwards; random crops are
    then fixed per clip (variant 0), which is the price of encoding once.
    """

    def __init__(self, clips: VideoClips, vae, cache_dir: str | os.PathLike | None = None):
        self.clips, self.vae = clips, vae
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.vae_key = vae_fingerprint(vae) if cache_dir else ""

    def __len__(self) -> int:
        return len(self.clips)

    def _path(self, index: int) -> Path:
        digest = hashlib.sha256(f"{self.clips.key(index)}|{self.vae_key}".encode()).hexdigest()[:32]
        return self.cache_dir / f"{digest}.safetensors"

    def _encode(self, index: int, variant: int) -> tuple[torch.Tensor, torch.Tensor]:
        high, low = self.clips.load(index, variant)
        return self.vae.encode(high), self.vae.encode(low)

    def load(self, index: int, variant: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cache_dir is None:
            return self._encode(index, variant)
        path = self._path(index)
        if path.is_file():
            try:
                cached = load_file(str(path))
                return cached["high"], cached["low"]
            except (SafetensorError, KeyError, OSError):
                pass  # a damaged cache file is simply rebuilt
        high, low = self._encode(index, 0)
        atomic_save_safetensors(path, {"high": high.contiguous(), "low": low.contiguous()}, {"clip": self.clips.key(index)})
        return high, low

    def fill(self, rank: int = 0, world: int = 1) -> int:
        """Encode every clip this rank owns (index % world == rank) that is not cached yet; returns how many.
        A clip that does not decode is warned about and left out (training skips it the same way)."""
        missing = [i for i in range(rank, len(self), world) if not self._path(i).is_file()]
        for i in missing:
            try:
                self.load(i)
            except VideoReadError as exc:
                warnings.warn(f"skipping clip {i}: {exc}", stacklevel=2)
        return len(missing)
