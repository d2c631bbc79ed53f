"""Multi-axis rotary position embeddings (RoPE).

The head dimension's rotation pairs are split between position axes: the planner uses 2 axes
(frame index, position in the flattened frame, where a [NEXT] token closes every row), the generator
3 axes (frame, row, column). One implementation serves both. A rotation is a unit complex number per
pair, so rotating q or k is one complex multiply (one kernel, not eight separate fp32 ones).
"""
from __future__ import annotations

import torch


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotations for integer positions (..., n_axes) -> (..., head_dim // 2) complex64 unit numbers."""
    n_axes = positions.shape[-1]
    pairs = head_dim // 2
    splits = [pairs // n_axes + (1 if i < pairs % n_axes else 0) for i in range(n_axes)]
    angles = []
    for axis, count in enumerate(splits):
        freqs = theta ** (-torch.arange(count, dtype=torch.float32, device=positions.device) / max(count, 1))
        angles.append(positions[..., axis : axis + 1].float() * freqs)
    angle = torch.cat(angles, dim=-1)
    return torch.polar(torch.ones_like(angle), angle)


def apply_rope(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of x (..., D) by `rotations` broadcastable to (..., D/2), in float32."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())  # (..., L, H, D/2)
    return torch.view_as_real(pairs * rotations).flatten(-2).to(x.dtype)
