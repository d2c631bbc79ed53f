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

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..config import ATTENTION_MODES, Attention, GeneratorConfig, MarDiniConfig
from ..errors import ConfigError, InputError
from .attention import FrameGroups
from .base import FrameTransformer, check_latents
from .layers import MLP, CrossAttention, FrameKV, PlanCache, SelfAttention, TimestepEmbedder, modulate, patchify, unpatchify
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

    def forward(self, x, c, plan, rotations, groups, mixing, backend, frame_kv=None, mirrored=0):
        # x: (B - mirrored, K, N, D); c: (B, K or 1, D) time embedding per frame; plan: (B, K, M, Dp) or a PlanCache.
        # `mirrored` (the first block, sampling with guidance): the batch's last clips repeat its first ones up to the
        # cross-attention (CFG's unconditional half), so x holds only the others until then
        s1, sc1, g1, s2, sc2, g2, s3, sc3, g3 = self.ada(F.silu(c))[:, :, None].chunk(9, dim=-1)
        n = len(c) - mirrored
        x = torch.addcmul(x, g1[:n], self.spatial(modulate(self.norm1(x), s1[:n], sc1[:n]), rotations, groups, Attention.SPATIAL, backend))
        x = torch.addcmul(x, g2[:n], self.mixing(modulate(self.norm2(x), s2[:n], sc2[:n]), rotations, groups, mixing, backend, frame_kv))
        if mirrored:
            x = torch.cat([x, x[:mirrored]])
        x = x + self.cross(self.norm_cross(x), plan, backend)
        return torch.addcmul(x, g3, self.mlp(modulate(self.norm3(x), s3, sc3)))


@dataclass
class SamplingCache:
    """Everything about a window that stays fixed while it is sampled, built once before the first step
    (`Generator.sampling_cache`): the masked frames' indices and rotary positions, and per block the
    reference frames' frame-mixing keys and values and the plan's cross-attention keys and values.
    Each step then computes the masked frames alone."""

    masked_frames: torch.Tensor  # (Km,) frame indices the steps compute
    rotations: torch.Tensor  # (Km, N, 1, Dh/2)
    frame_kv: list[FrameKV]  # per block
    plan: list[PlanCache]  # per block
    unconditional: int = 0  # the batch's last clips: CFG's unconditional half, the first ones' copies but for the plan


def generator_rotations(frames: torch.Tensor, rows: int, cols: int, head_dim: int) -> torch.Tensor:
    """RoPE rotations over (frame index, row, column) -> (len(frames), rows * cols, 1, head_dim // 2)."""
    device = frames.device
    grid = torch.meshgrid(frames, torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij")
    positions = torch.stack(grid, dim=-1).reshape(len(frames), rows * cols, 3)
    return rope_tables(positions, head_dim)[:, :, None]


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

    def _embed(self, z: torch.Tensor, anchor: torch.Tensor | None):
        """Latents of some frames (B, Kf, C, H, W), and the anchor's -> tokens (B, Kf, N, D), rows, columns."""
        if self.sees_anchor:
            z = torch.cat([z, anchor.to(z.dtype)], dim=2)  # (B, Kf, 2C, H, W)
        tokens = self.embed(patchify(z.to(self.embed.weight.dtype), self.config.generator.patch))  # (B, Kf, Y, X, D)
        return rearrange(tokens, "b k y x d -> b k (y x) d"), tokens.shape[2], tokens.shape[3]

    def _rotations(self, frames: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        cfg = self.config.generator
        return generator_rotations(frames, rows, cols, cfg.hidden // cfg.heads)

    def forward(self, z_t, t, plan, masked, cache: SamplingCache | None = None, anchor: torch.Tensor | None = None):
        """z_t (B, K, C, H, W), t (B,), plan (B, K, M, Dp) or None, masked (B, K) -> v (B, K, C, H, W).

        `anchor` (B, K, C, H, W): the anchor's latents with the given frames in place (anchor.py);
        read by flow-anchored models only. With a `cache` from `sampling_cache`, only the masked
        frames are computed (the v of reference frames is then returned as zeros; samplers never use it)
        and the plan comes from the cache. A cache's `unconditional` clips must repeat the first ones in z_t,
        t and anchor (classifier-free guidance's halves): the first block computes them only from its
        cross-attention on, where their plans part.
        """
        plan = self._check(z_t, t, plan, masked)
        if self.sees_anchor and (anchor is None or anchor.shape != z_t.shape):
            raise InputError(f"this flow-anchored generator needs the anchor's latents of shape {tuple(z_t.shape)}")
        mixing, backend = Attention(self.attention), self.backend_for(z_t.device)  # mixing: "T" or "ST" as stored
        if cache is None:
            x, rows, cols = self._embed(z_t, anchor)
            rotations = self._rotations(torch.arange(masked.shape[1], device=z_t.device), rows, cols)
            c = self.time(torch.where(masked, t[:, None].float(), torch.zeros((), device=t.device)))  # refs at t = 0
            x = self.run_blocks(x, c, plan, rotations, FrameGroups(masked), mixing, backend)
            return self._output(x, c, rows)
        frames, n = cache.masked_frames, z_t.shape[0] - cache.unconditional
        x, rows, _ = self._embed(z_t[:n, frames], None if anchor is None else anchor[:n, frames])
        c = self.time(t[:, None].float())  # (B, 1, D): every masked frame is at time t
        for i, (block, frame_kv, plan) in enumerate(zip(self.blocks, cache.frame_kv, cache.plan)):
            x = block(x, c, plan, cache.rotations, None, mixing, backend, frame_kv, cache.unconditional if i == 0 else 0)
        out = torch.zeros(z_t.shape, dtype=x.dtype, device=x.device)
        out[:, frames] = self._output(x, c, rows)
        return out

    def _output(self, x: torch.Tensor, c: torch.Tensor, rows: int) -> torch.Tensor:
        shift, scale = self.final_ada(F.silu(c))[:, :, None].chunk(2, dim=-1)
        out = self.final(modulate(self.final_norm(x), shift, scale))
        out = rearrange(out, "b k (y x) c -> b k y x c", y=rows)
        return unpatchify(out, self.config.generator.patch, self.config.latent_channels)

    @torch.no_grad()
    def sampling_cache(self, reference: torch.Tensor, plan: torch.Tensor | None, masked: torch.Tensor,
                       unconditional: int = 0) -> SamplingCache:
        """Run the reference frames once and keep what every step reuses (SamplingCache).

        Reference frames sit at t = 0 and attend only within themselves and to their own plan, so their
        states are the same at every step. Needs one mask shared by the batch (as in sampling, CFG
        halves included). `unconditional`: the batch's last clips are classifier-free guidance's
        unconditional half (their plan is Z_uncond, whose cross-attention costs nothing).
        """
        plan = self._check(reference, None, plan, masked)
        if (masked != masked[:1]).any():
            raise InputError("a sampling cache needs one frame mask shared by the whole batch")
        masked_frames, ref_frames = masked[0].nonzero().flatten(), (~masked[0]).nonzero().flatten()
        clips = plan.shape[0] - unconditional
        uncond = self.uncond_plan.to(plan.dtype) if unconditional else None
        rows, cols = (s // self.config.generator.patch for s in reference.shape[-2:])
        cache = SamplingCache(
            masked_frames=masked_frames,
            rotations=self._rotations(masked_frames, rows, cols),
            frame_kv=[FrameKV(len(masked_frames), len(ref_frames)) for _ in self.blocks],
            plan=[PlanCache(plan[:clips, masked_frames], uncond) for _ in self.blocks],
            unconditional=unconditional,
        )
        if len(ref_frames):
            given = reference[:, ref_frames]
            x, _, _ = self._embed(given, given)  # a given frame is its own anchor
            c = self.time(torch.zeros(masked.shape[0], 1, device=reference.device))
            rotations, mixing, backend = self._rotations(ref_frames, rows, cols), Attention(self.attention), self.backend_for(x.device)
            for block, frame_kv in zip(self.blocks, cache.frame_kv):
                x = block(x, c, PlanCache(plan[:clips, ref_frames], uncond), rotations, None, mixing, backend, frame_kv)
        return cache
