"""DM generator (paper §2.3.1): a light DiT-style transformer at high resolution.

Each block: AdaLN-Zero on the diffusion time of each frame (reference frames are at t = 0, so the
block also knows which frames are given); spatial self-attention within each frame; frame-mixing
Identity Attention, temporal (`/T`) or spatio-temporal (`/ST`) — the same weights either way, so a
stage-1 `/ST` model continues as `/T`; per-frame cross-attention to that frame's planning signal;
MLP. A learnable unconditional planning token Z_uncond stands in for the plan (classifier-free
guidance). Output: v-prediction. A flow-anchored model (`anchor = "flow"`) also reads the anchor's
latents, concatenated to its input channels, so it sees clean what it corrects (anchor.py).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..config import ATTENTION_MODES, Attention, GeneratorConfig, MarDiniConfig
from ..errors import ConfigError, InputError
from .attention import FrameGroups
from .base import FrameTransformer, check_latents
from .layers import (
    MLP,
    CrossAttention,
    SelfAttention,
    ReferenceKV,
    TimestepEmbedder,
    modulate,
    patchify,
    unpatchify,
)
from .rope import rope_tables


class GeneratorBlock(nn.Module):
    def __init__(self, cfg: GeneratorConfig, context_dim: int):
        super().__init__()
        d = cfg.hidden
        self.ada = nn.Linear(d, 9 * d)  # shift, scale, gate for spatial, mixing and MLP sub-layers
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.spatial = SelfAttention(d, cfg.heads)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mixing = SelfAttention(d, cfg.heads)
        self.norm_cross = nn.LayerNorm(d, eps=1e-6)
        self.cross = CrossAttention(d, context_dim, cfg.heads)
        self.norm3 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(d, cfg.mlp)

    def forward(self, x, c, plan, rope, groups, mixing, backend, references=None):
        # x: (B, K, N, D); c: (B, K, D) time embedding per frame; plan: (B, K, M, Dp)
        s1, sc1, g1, s2, sc2, g2, s3, sc3, g3 = self.ada(F.silu(c))[:, :, None].chunk(9, dim=-1)
        x = x + g1 * self.spatial(modulate(self.norm1(x), s1, sc1), rope, groups, Attention.SPATIAL, backend)
        x = x + g2 * self.mixing(modulate(self.norm2(x), s2, sc2), rope, groups, mixing, backend, references)
        x = x + self.cross(self.norm_cross(x), plan, backend)
        return x + g3 * self.mlp(modulate(self.norm3(x), s3, sc3))


def generator_positions(frames: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(len(frames) * rows * cols, 3) integer positions: frame index, row, column."""
    device = frames.device
    grid = torch.meshgrid(frames, torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij")
    return torch.stack(grid, dim=-1).reshape(-1, 3)


class Generator(FrameTransformer):
    def __init__(self, config: MarDiniConfig):
        super().__init__()
        cfg = config.generator
        self.config = config
        self.attention = cfg.attention
        out_dim = config.latent_channels * cfg.patch**2
        self.sees_anchor = config.anchor == "flow"
        self.embed = nn.Linear(out_dim * (2 if self.sees_anchor else 1), cfg.hidden)
        self.time = TimestepEmbedder(cfg.hidden)
        self.uncond_plan = nn.Parameter(torch.randn(config.planner.hidden) * 0.02)  # Z_uncond
        self.blocks = nn.ModuleList(GeneratorBlock(cfg, config.planner.hidden) for _ in range(cfg.depth))
        self.final_ada = nn.Linear(cfg.hidden, 2 * cfg.hidden)
        self.final_norm = nn.LayerNorm(cfg.hidden, elementwise_affine=False, eps=1e-6)
        self.final = nn.Linear(cfg.hidden, out_dim)
        self._zero_init()

    def _zero_init(self) -> None:
        """AdaLN-Zero (DiT): every residual branch and the output start at zero."""
        for module in [*(blk.ada for blk in self.blocks), *(blk.cross.proj for blk in self.blocks)]:
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
        for module in (self.final_ada, self.final):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)

    def set_attention(self, mode: str) -> None:
        if mode not in ATTENTION_MODES:
            raise ConfigError(f"generator attention must be one of {ATTENTION_MODES}, got {mode!r}")
        self.attention = mode

    def uncond_plan_like(self, plan: torch.Tensor) -> torch.Tensor:
        """Z_uncond broadcast to the shape of a planning signal (B, K, M, Dp)."""
        return self.uncond_plan.to(plan.dtype).expand_as(plan)

    def _check(self, z: torch.Tensor, t: torch.Tensor | None, plan: torch.Tensor | None, masked: torch.Tensor):
        """Validate inputs; returns the plan in the weights' dtype (Z_uncond when plan is None)."""
        check_latents(z, masked, self.config, self.config.generator.patch, "generator")
        b, k = masked.shape
        if t is not None and t.shape != (b,):
            raise InputError(f"diffusion time t must have shape ({b},), got {tuple(t.shape)}")
        dtype = self.embed.weight.dtype
        if plan is None:
            return self.uncond_plan.to(dtype).expand(b, k, 1, -1)
        if plan.shape[:2] != (b, k) or plan.shape[-1] != self.uncond_plan.shape[0]:
            raise InputError(f"planning signal of shape {tuple(plan.shape)} does not fit {b} clips of {k} frames")
        return plan.to(dtype)

    def _blocks(self, z, anchor, t_frames, plan, frames, groups, references):
        """Embed the given frames (indices `frames` of the clip), run every block -> (x, c, rows)."""
        cfg = self.config.generator
        if self.sees_anchor:
            z = torch.cat([z, anchor.to(z.dtype)], dim=2)  # (B, Kf, 2C, H, W)
        tokens = self.embed(patchify(z.to(self.embed.weight.dtype), cfg.patch))  # (B, Kf, Y, X, D)
        rows, cols = tokens.shape[2:4]
        c = self.time(t_frames)  # (B, Kf, D)
        x = rearrange(tokens, "b k y x d -> b k (y x) d")
        rope = rope_tables(generator_positions(frames, rows, cols), cfg.hidden // cfg.heads)
        mixing = Attention(self.attention)  # "T" or "ST", as the config stores it
        x = self.run_blocks(x, c, plan, rope, groups, mixing, self.backend_for(x.device), references)
        return x, c, rows

    def forward(self, z_t, t, plan, masked, references: ReferenceKV | None = None, anchor: torch.Tensor | None = None):
        """z_t (B, K, C, H, W), t (B,), plan (B, K, M, Dp) or None, masked (B, K) -> v (B, K, C, H, W).

        `anchor` (B, K, C, H, W): the anchor's latents with the given frames in place (anchor.py);
        read by flow-anchored models only. With `references` from `reference_cache`, only the masked
        frames are computed (the v of reference frames is then returned as zeros; samplers never use it).
        """
        plan = self._check(z_t, t, plan, masked)
        if self.sees_anchor and (anchor is None or anchor.shape != z_t.shape):
            raise InputError(f"this flow-anchored generator needs the anchor's latents of shape {tuple(z_t.shape)}")
        b, k = masked.shape
        if references is None:
            frames = torch.arange(k, device=z_t.device)
            t_frames = torch.where(masked, t[:, None].float(), torch.zeros((), device=t.device))  # refs at t = 0
            x, c, rows = self._blocks(z_t, anchor, t_frames, plan, frames, FrameGroups(masked), None)
            return self._output(x, c, rows)
        frames = references.masked_frames
        t_frames = t[:, None].float().expand(b, len(frames))
        x, c, rows = self._blocks(z_t[:, frames], None if anchor is None else anchor[:, frames], t_frames, plan[:, frames], frames, None, references.replay())
        out = torch.zeros(z_t.shape, dtype=x.dtype, device=x.device)
        out[:, frames] = self._output(x, c, rows)
        return out

    def _output(self, x: torch.Tensor, c: torch.Tensor, rows: int) -> torch.Tensor:
        shift, scale = self.final_ada(F.silu(c))[:, :, None].chunk(2, dim=-1)
        out = self.final(modulate(self.final_norm(x), shift, scale))
        out = rearrange(out, "b k (y x) c -> b k y x c", y=rows)
        return unpatchify(out, self.config.generator.patch, self.config.latent_channels)

    @torch.no_grad()
    def reference_cache(self, reference: torch.Tensor, plan: torch.Tensor | None, masked: torch.Tensor) -> ReferenceKV | None:
        """Run the reference frames once and keep every layer's frame-mixing keys and values.

        Reference frames sit at t = 0, attend only within themselves and to their own plan, so their
        states are the same at every diffusion step: later steps compute the masked frames alone.
        Needs one mask shared by the batch (as in sampling, CFG halves included); None when there is
        nothing to cache (no reference frame).
        """
        plan = self._check(reference, None, plan, masked)
        if (masked != masked[:1]).any():
            raise InputError("reference caching needs one frame mask shared by the whole batch")
        ref_frames = (~masked[0]).nonzero().flatten()
        if len(ref_frames) == 0:
            return None
        cache = ReferenceKV(masked[0].nonzero().flatten())
        t0 = torch.zeros(masked.shape[0], len(ref_frames), device=reference.device)
        given = reference[:, ref_frames]
        self._blocks(given, given, t0, plan[:, ref_frames], ref_frames, None, cache)  # a given frame is its own anchor
        return cache
