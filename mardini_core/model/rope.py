"""Multi-axis rotary position embeddings (RoPE).

The head dimension's rotation pairs are split between position axes: the planner uses 2 axes
(frame index, position in the flattened frame, where a [NEXT] token closes every row), the generator
3 axes (frame, row, column). One implementation serves both.
"""
from __future__ import annotations

import torch


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for integer positions (..., n_axes) -> two (..., head_dim // 2) float32 tensors."""
    n_axes = positions.shape[-1]
    pairs = head_dim // 2
    splits = [pairs // n_axes + (1 if i < pairs % n_axes else 0) for i in range(n_axes)]
    angles = []
    for axis, count in enumerate(splits):
        freqs = theta ** (-torch.arange(count, dtype=torch.float32, device=positions.device) / max(count, 1))
        angles.append(positions[..., axis : axis + 1].float() * freqs)
    angle = torch.cat(angles, dim=-1)
    return angle.cos(), angle.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of x (..., L, H, D) by tables (L, D/2) broadcast over heads."""
    pairs = x.float().unflatten(-1, (-1, 2))  # (..., L, H, D/2, 2)
    x1, x2 = pairs.unbind(-1)
    c, s = cos[:, None, :], sin[:, None, :]  # (L, 1, D/2)
    out = torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1)
    return out.flatten(-2).to(x.dtype)
