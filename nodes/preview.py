"""A cheap live preview for the sampler: latents -> RGB by a linear map fitted on the given frames.

MarDini's latent space has no published latent-to-RGB factors, but every clip carries frames whose
pixels and latents are both known: a least-squares fit on those is enough to show, at each step, a
strip of every frame of the clip at latent resolution, with no VAE decode.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rgb_at_latent_size(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(S, 3, H, W) in [0, 1] -> (S, 3, h, w), box-filtered."""
    return F.interpolate(images.float(), size=size, mode="area")


def fit_projection(latents: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """(S, C, h, w) latents and (S, 3, h, w) pixels -> a (C + 1, 3) affine map, least squares."""
    x = latents.float().movedim(1, -1).reshape(-1, latents.shape[1])
    x = torch.cat([x, torch.ones(x.shape[0], 1)], dim=1)
    y = rgb.float().movedim(1, -1).reshape(-1, 3)
    return torch.linalg.lstsq(x, y, driver="gelsd").solution  # SVD: latents are often rank-deficient


def strip(x0: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """(K, C, h, w) latents -> one (h, K*w, 3) image in [0, 1]: the clip's frames side by side."""
    k, c, h, w = x0.shape
    flat = x0.float().cpu().movedim(1, -1).reshape(-1, c)
    rgb = (torch.cat([flat, torch.ones(flat.shape[0], 1)], dim=1) @ projection).clamp(0, 1)
    return rgb.reshape(k, h, w, 3).permute(1, 0, 2, 3).reshape(h, k * w, 3)
