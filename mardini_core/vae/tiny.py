"""The tiny convolutional autoencoder family (the TAESD layout, MIT, re-implemented here).

Both our adapters use it: TAEF2 at width 64 with group-normed mid blocks (its published weights),
and mardini-tae, a narrower member we distil ourselves. Encoder: images in [0, 1] -> latents at 1/8
of the side; decoder: latents -> images in roughly [0, 1]. The module indices of `nn.Sequential`
match the published TAEF2 state dicts key for key, so those load without renaming.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from ..errors import ConfigError


@dataclass(frozen=True)
class TinyAEConfig:
    """Width and depth of one member of the family (TAEF2: width 64, 3 blocks per level, mid GN)."""

    latent_channels: int = 32
    width: int = 64
    blocks: int = 3  # residual blocks per resolution level (the first and last level keep one)
    mid_gn: bool = True  # group-normed 1x1 bottleneck in the lowest-resolution blocks

    def __post_init__(self) -> None:  # also guards against forged configs in mardini-tae files
        for name, limit in (("latent_channels", 1024), ("width", 1024), ("blocks", 64)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                raise ConfigError(f"autoencoder {name} must be an integer from 1 to {limit}, got {value!r}")
        if not isinstance(self.mid_gn, bool):
            raise ConfigError(f"autoencoder mid_gn must be true or false, got {self.mid_gn!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def conv3(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of latents to (-3, 3) before decoding: out-of-range latents cannot blow up the decoder."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Three 3x3 convs with a residual; `mid_gn` adds a group-normed 1x1 bottleneck before them."""

    def __init__(self, width: int, mid_gn: bool = False):
        super().__init__()
        self.conv = nn.Sequential(conv3(width, width), nn.ReLU(inplace=True), conv3(width, width), nn.ReLU(inplace=True), conv3(width, width))
        self.fuse = nn.ReLU(inplace=True)  # in place: a convolution's backward needs its input, not its output
        self.pool = None
        if mid_gn:
            wide = 4 * width
            self.pool = nn.Sequential(
                nn.Conv2d(width, wide, 1, bias=False), nn.GroupNorm(4, wide), nn.ReLU(), nn.Conv2d(wide, width, 1, bias=False)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x).add_(x))


def encoder(cfg: TinyAEConfig) -> nn.Sequential:
    """(N, 3, H, W) in [0, 1] -> (N, latent_channels, H/8, W/8)."""
    w, n = cfg.width, cfg.blocks
    layers: list[nn.Module] = [conv3(3, w), Block(w)]
    for level in range(3):
        layers.append(conv3(w, w, stride=2, bias=False))
        layers += [Block(w, mid_gn=cfg.mid_gn and level == 2) for _ in range(n)]
    layers.append(conv3(w, cfg.latent_channels))
    return nn.Sequential(*layers)


def decoder(cfg: TinyAEConfig) -> nn.Sequential:
    """(N, latent_channels, h, w) -> (N, 3, 8h, 8w), roughly in [0, 1] (callers clamp)."""
    w, n = cfg.width, cfg.blocks
    layers: list[nn.Module] = [Clamp(), conv3(cfg.latent_channels, w), nn.ReLU(inplace=True)]
    for level in range(3):
        layers += [Block(w, mid_gn=cfg.mid_gn and level == 0) for _ in range(n)]
        layers += [nn.Upsample(scale_factor=2), conv3(w, w, bias=False)]
    layers += [Block(w), conv3(w, 3)]
    return nn.Sequential(*layers)
