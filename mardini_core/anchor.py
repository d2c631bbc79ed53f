"""Anchors: the guess a generated frame starts from, which the anchored DM corrects with a residual.

Neighbour blending: where a masked frame sits between the given frames it is generated from.

Each masked frame k has a nearest given frame on its left (l) and on its right (r); its neighbour
blend is ((r - k) x_l + (k - l) x_r) / (r - l), the nearest given frame when only one side has one,
and nothing (zero weights) when no frame is given. A given frame is its own blend. Two things use it:
- the DM's optional anchor (`MarDiniConfig.anchor = "neighbours"`): masked latents are diffused as a
  residual from their blend, so a DM that predicts no residual returns a cross-fade (in latent space)
  and training spends its capacity on what moves (residual diffusion around a conditioning estimate,
  as in ResShift or the warped-frame residuals of diffusion frame interpolators); `"none"` is the
  paper's formulation;
- detail restoration after decoding (`assemble.assemble_frames`).

The flow anchor (`anchor = "flow"`, the embedded default) is better: each generated frame is an
interpolator's frame at its time (RIFE 4.x, DIS...; past the ends the given frames' motion continued),
in pixel space (interpolation/anchors.py), and encoded; the DM sees those latents (generator.py) and
diffuses the residual around them, and the decoded frame is put back around the anchor's pixels
(assemble.py), so a zero residual returns the anchor exactly.
"""
from __future__ import annotations

import torch

from .config import MarDiniConfig


def nearest_given(masked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """masked (..., K) bool -> (left, right) (..., K): each frame's nearest given frame at or before it
    (-1 if none) and at or after it (K if none). Scans on the mask's device: no host sync."""
    k = masked.shape[-1]
    pos = torch.arange(k, device=masked.device)
    left = torch.where(~masked, pos, -1).cummax(-1).values
    right = torch.where(~masked, pos, k).flip(-1).cummin(-1).values.flip(-1)
    return left, right


def between_given(masked: torch.Tensor) -> torch.Tensor:
    """masked (..., K) bool -> (..., K) bool: masked frames with a given frame on both sides."""
    left, right = nearest_given(masked)
    return masked & (left >= 0) & (right < masked.shape[-1])


def neighbour_weights(masked: torch.Tensor) -> torch.Tensor:
    """masked (..., K) bool -> (..., K, K) float weights: row k blends the given frames for frame k.

    Computed on the mask's device with scans, so training and sampling never sync it to the host.
    """
    k = masked.shape[-1]
    pos = torch.arange(k, device=masked.device)
    left, right = nearest_given(masked)
    has_left, has_right = left >= 0, right < k
    between = has_left & has_right & (left != right)
    span = (right - left).clamp(min=1)
    w_left = torch.where(between, (right - pos) / span, (has_left & (~has_right | (left == right))).float())
    w_right = torch.where(between, (pos - left) / span, (~has_left & has_right).float())
    weights = torch.zeros(*masked.shape, k, device=masked.device)
    weights.scatter_add_(-1, left.clamp(min=0)[..., None], w_left[..., None])
    weights.scatter_add_(-1, right.clamp(max=k - 1)[..., None], w_right[..., None])
    return weights


def neighbour_blend(frames: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """frames (B, K, ...) and masked (B, K) -> (B, K, ...): each frame's blend of given frames."""
    weights = neighbour_weights(masked).to(frames.dtype)
    return torch.einsum("bkj,bj...->bk...", weights, frames)


def diffusion_offset(latents: torch.Tensor, masked: torch.Tensor, config: MarDiniConfig, flow: torch.Tensor | None = None) -> torch.Tensor:
    """What the DM diffuses masked latents around: zero (the paper), their neighbour blend, or the flow anchor.

    latents (B, K, C, H, W) model-space with the given frames in place (masked content is ignored);
    flow: the latents of the flow anchor's pixels, same shape (read on masked frames; needed for "flow").
    Given frames are their own offset, except with "none".
    """
    if config.anchor == "none":
        return torch.zeros_like(latents)
    if config.anchor == "flow":
        if flow is None or flow.shape != latents.shape:
            raise ValueError(f"a flow-anchored model needs the flow anchor's latents of shape {tuple(latents.shape)}")
        return torch.where(masked[:, :, None, None, None], flow.to(latents), latents)
    return neighbour_blend(latents, masked)
