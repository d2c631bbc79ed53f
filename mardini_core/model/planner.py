"""MAR planner (paper §2.3.1): a heavy Llama-style transformer over low-resolution latents.

Each block: RMSNorm pre-norm; spatial self-attention within each frame; spatio-temporal Identity
Attention across all frames (masked frames see every token, reference frames only themselves);
MLP. q and k are LayerNorm-ed; positions are 2D RoPE over (frame index, position in the flattened
frame) with a learnable [NEXT] token closing each row of patches, so any aspect ratio works.
Masked frames are replaced by a learnable [MASK] token. Output: one planning signal per frame.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange

from ..config import Attention, MarDiniConfig, PlannerConfig
from .attention import FrameGroups
from .base import FrameTransformer, check_latents
from .layers import MLP, SelfAttention, patchify
from .rope import rope_tables


class PlannerBlock(nn.Module):
    def __init__(self, cfg: PlannerConfig):
        super().__init__()
        self.norm1 = nn.RMSNorm(cfg.hidden, eps=1e-6)
        self.spatial = SelfAttention(cfg.hidden, cfg.heads)
        self.norm2 = nn.RMSNorm(cfg.hidden, eps=1e-6)
        self.mixing = SelfAttention(cfg.hidden, cfg.heads)
        self.norm3 = nn.RMSNorm(cfg.hidden, eps=1e-6)
        self.mlp = MLP(cfg.hidden, cfg.mlp)

    def forward(self, x, rotations, groups, backend):  # x: (B, K, N, D); rotations: (K, N, 1, Dh/2)
        x = x + self.spatial(self.norm1(x), rotations, groups, Attention.SPATIAL, backend)
        x = x + self.mixing(self.norm2(x), rotations, groups, Attention.SPATIOTEMPORAL, backend)
        return x + self.mlp(self.norm3(x))


def planner_positions(frames: int, rows: int, cols: int, device: torch.device) -> torch.Tensor:
    """(frames * rows * (cols + 1), 2) integer positions: frame index, flattened index with [NEXT] slots."""
    f = torch.arange(frames, device=device).repeat_interleave(rows * (cols + 1))
    p = torch.arange(rows * (cols + 1), device=device).repeat(frames)
    return torch.stack([f, p], dim=-1)


class Planner(FrameTransformer):
    def __init__(self, config: MarDiniConfig):
        super().__init__()
        cfg = config.planner
        self.config = config
        self.embed = nn.Linear(config.latent_channels * cfg.patch**2, cfg.hidden)
        self.mask_token = nn.Parameter(torch.randn(cfg.hidden) * 0.02)
        self.next_token = nn.Parameter(torch.randn(cfg.hidden) * 0.02)
        self.blocks = nn.ModuleList(PlannerBlock(cfg) for _ in range(cfg.depth))
        self.norm = nn.RMSNorm(cfg.hidden, eps=1e-6)

    def forward(self, z_low: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """z_low (B, K, C, h, w), masked (B, K) bool -> planning signal (B, K, (h/p)*(w/p), D)."""
        p = self.config.planner.patch
        check_latents(z_low, masked, self.config, p, "planner (low-resolution)")
        b, k = masked.shape
        tokens = self.embed(patchify(z_low.to(self.embed.weight.dtype), p))  # (B, K, y, x, D)
        tokens = torch.where(masked[:, :, None, None, None], self.mask_token.to(tokens.dtype), tokens)
        rows, cols = tokens.shape[2:4]
        next_col = self.next_token.to(tokens.dtype).expand(b, k, rows, 1, -1)
        x = rearrange(torch.cat([tokens, next_col], dim=3), "b k y x d -> b k (y x) d")
        positions = planner_positions(k, rows, cols, x.device).view(k, -1, 2)
        rotations = rope_tables(positions, self.config.planner.hidden // self.config.planner.heads)[:, :, None]
        x = self.run_blocks(x, rotations, FrameGroups(masked), self.backend_for(x.device))
        x = rearrange(x, "b k (y x) d -> b k y x d", y=rows)[:, :, :, :cols]  # drop [NEXT] tokens
        return self.norm(rearrange(x, "b k y x d -> b k (y x) d"))
