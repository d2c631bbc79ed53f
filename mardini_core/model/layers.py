"""Building blocks shared by the planner and the generator.

Token layout everywhere: (B, K, N, D) = batch, frames, tokens per frame, channels.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..config import Attention
from .attention import FrameGroups, attention, frame_attention, identity_attention
from .rope import apply_rope


class SelfAttention(nn.Module):
    """Multi-head self-attention with LayerNorm on q and k and rotary positions.

    pattern: Attention.SPATIAL (within each frame), or TEMPORAL / SPATIOTEMPORAL with Identity Attention
    (reference frames' queries attend only to themselves).
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(dim // heads)
        self.k_norm = nn.LayerNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)

    def project(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]):
        """x (B, K, N, D) -> q, k, v each (B, K, N, H, Dh), q and k normalised and rotated."""
        k_frames = x.shape[1]
        q, k, v = rearrange(self.qkv(x), "b k n (three h d) -> three b (k n) h d", three=3, h=self.heads).unbind(0)
        q, k = apply_rope(self.q_norm(q), *rope), apply_rope(self.k_norm(k), *rope)
        return (rearrange(t, "b (k n) h d -> b k n h d", k=k_frames) for t in (q, k, v))

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        groups: FrameGroups | None,
        pattern: Attention,
        backend: str,
        references: ReferenceKV | None = None,
    ) -> torch.Tensor:
        """`references`: when set, every frame of x is a masked frame and the reference frames' keys and
        values come from the cache (frame-mixing patterns only); when recording, they are appended to it."""
        q, k, v = self.project(x, rope)
        if pattern == Attention.SPATIAL:
            q, k, v = (rearrange(t, "b k n h d -> (b k) h n d") for t in (q, k, v))
            out = rearrange(attention(q, k, v, backend), "(b k) h n d -> b k n (h d)", b=x.shape[0])
            return self.proj(out)
        temporal = pattern == Attention.TEMPORAL
        if references is not None and references.recording:
            references.append(k, v)
            out = v  # reference frames only: Identity Attention is the identity
        elif references is not None:
            ref_k, ref_v = references.next()
            out = frame_attention(q, torch.cat([ref_k, k], 1), torch.cat([ref_v, v], 1), temporal=temporal, backend=backend)
        else:
            out = identity_attention(q, k, v, groups, temporal=temporal, backend=backend)
        return self.proj(rearrange(out, "b k n h d -> b k n (h d)"))


class ReferenceKV:
    """Per-layer keys and values of the reference frames, recorded once and replayed at every step."""

    def __init__(self, masked_frames: torch.Tensor) -> None:
        self.masked_frames = masked_frames  # (Km,) frame indices the cached steps compute
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.recording = True
        self._cursor = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.layers.append((k, v))

    def replay(self) -> "ReferenceKV":
        self.recording, self._cursor = False, 0
        return self

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        kv = self.layers[self._cursor]
        self._cursor += 1
        return kv


class CrossAttention(nn.Module):
    """Per-frame cross-attention from a frame's tokens to that frame's planning signal."""

    def __init__(self, dim: int, context_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.q_norm = nn.LayerNorm(dim // heads)
        self.k_norm = nn.LayerNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, backend: str) -> torch.Tensor:
        # x: (B, K, N, D); context: (B, K, M, Dc)
        b = x.shape[0]
        q = self.q_norm(rearrange(self.q(x), "b k n (h d) -> (b k) h n d", h=self.heads))
        kv = rearrange(self.kv(context), "b k m (two h d) -> two (b k) h m d", two=2, h=self.heads)
        out = attention(q, self.k_norm(kv[0]), kv[1], backend)
        return self.proj(rearrange(out, "(b k) h n d -> b k n (h d)", b=b))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding of diffusion time t in [0, 1] (scaled to 0..1000) followed by an MLP (DiT)."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = (t.float() * 1000.0)[..., None] * freqs
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN: x (B, K, N, D) with per-frame shift/scale (B, K, 1, D)."""
    return x * (1 + scale) + shift


def patchify(z: torch.Tensor, p: int) -> torch.Tensor:
    """(B, K, C, H, W) -> (B, K, H/p, W/p, C*p*p)."""
    return rearrange(z, "b k c (y p1) (x p2) -> b k y x (c p1 p2)", p1=p, p2=p)


def unpatchify(tokens: torch.Tensor, p: int, channels: int) -> torch.Tensor:
    """(B, K, H/p, W/p, C*p*p) -> (B, K, C, H, W)."""
    return rearrange(tokens, "b k y x (c p1 p2) -> b k c (y p1) (x p2)", p1=p, p2=p, c=channels)
