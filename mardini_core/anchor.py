"""Neighbour blending: where a masked frame sits between the given frames it is generated from.

Each masked frame k has a nearest given frame on its left (l) and on its right (r); its neighbour
blend is ((r - k) x_l + (k - l) x_r) / (r - l), the nearest given frame when only one side has one,
and nothing (zero weights) when no frame is given. A given frame is its own blend. Two things use it:
- the DM's optional anchor (`MarDiniConfig.anchor = "neighbours"`): masked latents are diffused as a
  residual from their blend, so a DM that predicts no residual returns a cross-fade (in latent space)
  and training spends its capacity on what moves (residual diffusion around a conditioning estimate, as in ResShift or the
  warped-frame residuals of diffusion frame interpolators); `"none"` is the paper's formulation;
- detail restoration after decoding (`assemble.assemble_frames`).
"""
from __future__ import annotations

import torch

from .config import MarDiniConfig


def neighbour_weights(masked: torch.Tensor) -> torch.Tensor:
    """masked (..., K) bool -> (..., K, K) float weights: row k blends the given frames for frame k."""
    flat = masked.reshape(-1, masked.shape[-1]).cpu().tolist()
    k = masked.shape[-1]
    weights = torch.zeros(len(flat), k, k)
    for b, row in enumerate(flat):
        given = [j for j, m in enumerate(row) if not m]
        for i in range(k):
            left = [j for j in given if j <= i]
            right = [j for j in given if j >= i]
            if left and right and left[-1] != right[0]:
                l, r = left[-1], right[0]
                weights[b, i, l], weights[b, i, r] = (r - i) / (r - l), (i - l) / (r - l)
            elif left or right:
                weights[b, i, left[-1] if left else right[0]] = 1.0
    return weights.reshape(*masked.shape, k).to(masked.device)


def neighbour_blend(frames: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """frames (B, K, ...) and masked (B, K) -> (B, K, ...): each frame's blend of given frames."""
    weights = neighbour_weights(masked).to(frames.dtype)
    return torch.einsum("bkj,bj...->bk...", weights, frames)


def diffusion_offset(latents: torch.Tensor, masked: torch.Tensor, config: MarDiniConfig) -> torch.Tensor:
    """What the DM diffuses masked latents around: zero (the paper) or their neighbour blend.

    latents (B, K, C, H, W) model-space with the given frames in place (masked content is ignored).
    """
    if config.anchor == "none":
        return torch.zeros_like(latents)
    return neighbour_blend(latents, masked)
