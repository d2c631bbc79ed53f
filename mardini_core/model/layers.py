"""Building blocks shared by the planner and the generator.

Token layout everywhere: (B, K, N, D) = batch, frames, tokens per frame, channels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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

    def project(self, x: torch.Tensor, rotations: torch.Tensor):
        """x (B, K, N, D), rotations (K, N, 1, Dh/2) -> q, k, v each (B, K, N, H, Dh), q and k normalised and rotated."""
        q, k, v = rearrange(self.qkv(x), "b k n (three h d) -> three b k n h d", three=3, h=self.heads)
        return apply_rope(self.q_norm(q), rotations), apply_rope(self.k_norm(k), rotations), v

    def forward(
        self,
        x: torch.Tensor,
        rotations: torch.Tensor,
        groups: FrameGroups | None,
        pattern: Attention,
        backend: str,
        frame_kv: FrameKV | None = None,
    ) -> torch.Tensor:
        """`frame_kv` (sampling, frame-mixing patterns only): the layer's cache; x then holds only masked
        frames, or only reference frames while the cache is being filled."""
        q, k, v = self.project(x, rotations)
        if pattern == Attention.SPATIAL:
            q, k, v = (rearrange(t, "b k n h d -> (b k) h n d") for t in (q, k, v))
            out = rearrange(attention(q, k, v, backend), "(b k) h n d -> b k n (h d)", b=x.shape[0])
            return self.proj(out)
        temporal = pattern == Attention.TEMPORAL
        if frame_kv is None:
            out = identity_attention(q, k, v, groups, temporal=temporal, backend=backend)
        elif not frame_kv.filled:
            out = frame_kv.fill(k, v)  # reference frames only: Identity Attention is the identity
        else:
            out = frame_attention(q, *frame_kv.update(k, v), temporal=temporal, backend=backend)
        return self.proj(rearrange(out, "b k n h d -> b k n (h d)"))


class FrameKV:
    """One frame-mixing layer's keys and values while a window is sampled (gpt-fast's per-layer KV cache,
    over frames). Reference frames sit at t = 0 and attend only to themselves, so their keys and values
    are the same at every step: written once, before the first step, to the front of preallocated
    buffers; each step writes the masked frames' behind them and attends to the whole."""

    def __init__(self, masked_frames: int, references: int) -> None:
        self.masked_frames, self.references = masked_frames, references
        self.filled = references == 0
        self.k = self.v = None  # (B, references + masked_frames, N, H, Dh) once filled

    def fill(self, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Write the reference frames' k, v (B, R, N, H, Dh); returns v (their Identity Attention output)."""
        b, r, n, h, d = k.shape
        self.k, self.v = k.new_empty(b, r + self.masked_frames, n, h, d), v.new_empty(b, r + self.masked_frames, n, h, d)
        self.k[:, :r], self.v[:, :r] = k, v
        self.filled = True
        return v

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The masked frames' k, v (b, Km, N, H, Dh) of the batch's first b clips (all but CFG's mirrored half in
        the first block, generator.GeneratorBlock) -> those clips' keys and values over every frame."""
        if self.references == 0:
            return k, v
        b = k.shape[0]
        self.k[:b, self.references :], self.v[:b, self.references :] = k, v
        return self.k[:b], self.v[:b]


@dataclass
class PlanKV:
    """Cross-attention keys and values of a planning signal.

    k, v: (Bc * K, H, M, Dh) for the first Bc clips. The rest are classifier-free guidance's
    unconditional clips, whose plan is copies of the one token Z_uncond: attention over identical keys
    returns that token's value, so each of their queries gets `constant` (D,) and costs nothing.
    """

    k: torch.Tensor
    v: torch.Tensor
    clips: int  # Bc
    constant: torch.Tensor | None = None


class PlanCache:
    """One block's view of a window's plan while the window is sampled: the keys and values are
    computed at the first step and reused at every later one. (Computed inside the block's forward,
    where the weights of a sharded model are gathered.)"""

    def __init__(self, plan: torch.Tensor, unconditional: torch.Tensor | None) -> None:
        self.plan, self.unconditional = plan, unconditional  # (Bc, K, M, Dc); Z_uncond (Dc,) or None
        self.kv: PlanKV | None = None


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

    def plan_kv(self, plan: torch.Tensor, unconditional: torch.Tensor | None = None) -> PlanKV:
        """plan (Bc, K, M, Dc); `unconditional` (Dc,): Z_uncond, for clips after the first Bc."""
        k, v = rearrange(self.kv(plan), "b k m (two h d) -> two (b k) h m d", two=2, h=self.heads)
        constant = None if unconditional is None else self.proj(self.kv(unconditional).chunk(2)[1])
        return PlanKV(self.k_norm(k), v, plan.shape[0], constant)

    def forward(self, x: torch.Tensor, context: torch.Tensor | PlanCache, backend: str) -> torch.Tensor:
        """x (B, K, N, D); context: the planning signal (B, K, M, Dc) or a PlanCache -> (B, K, N, D)."""
        if isinstance(context, PlanCache):
            if context.kv is None:
                context.kv = self.plan_kv(context.plan, context.unconditional)
            kv = context.kv
        else:
            kv = self.plan_kv(context)
        b = kv.clips
        q = rearrange(self.q_norm(rearrange(self.q(x[:b]), "b k n (h d) -> b k n h d", h=self.heads)), "b k n h d -> (b k) h n d")
        out = self.proj(rearrange(attention(q, kv.k, kv.v, backend), "(b k) h n d -> b k n (h d)", b=b))
        if b == x.shape[0]:
            return out
        return torch.cat([out, kv.constant.to(out.dtype).expand(x.shape[0] - b, *out.shape[1:])])


CPU_CHUNK_TOKENS = 1024  # a base model's 4x-wide MLP activation of 1024 tokens is 5 MB: it stays in a CPU's cache


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, ..., D) -> (B, ..., D). Sampling on a CPU runs each clip CPU_CHUNK_TOKENS tokens at a time (the
        same numbers: the MLP is token-wise; and a clip's chunks do not depend on the batch it came in): the
        4x-wide activation and the GELU's passes over it then stay in cache, and no buffer passes glibc's 32 MB
        mmap threshold, above which every fresh one is page-faulted in (1.2-1.4x)."""
        if torch.is_grad_enabled() or x.device.type != "cpu" or x.numel() <= CPU_CHUNK_TOKENS * x.shape[-1]:
            return self.fc2(gelu_tanh(self.fc1(x)))
        clips = x.reshape(x.shape[0], -1, x.shape[-1])  # (B, T, D)
        out = torch.empty_like(clips)
        for clip, result in zip(clips, out):
            for chunk, part in zip(clip.split(CPU_CHUNK_TOKENS), result.split(CPU_CHUNK_TOKENS)):
                part.copy_(self.fc2(gelu_tanh(self.fc1(chunk))))
        return out.view(x.shape)


GELU_C = math.sqrt(2 / math.pi)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh form. Sampling on a CPU computes it as x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3), in
    place on one buffer: the same function (0.5 (1 + tanh u) = sigmoid(2u)), and PyTorch's CPU tanh is about four
    times slower than its sigmoid. Training (autograd keeps the input) and GPUs (one fused kernel) use F.gelu.
    (No addcmul: its vector loop fuses a multiply-add that its tail does not, so a value would depend on where it
    sits in the tensor, and a window batched with others would differ from the window alone.)"""
    if torch.is_grad_enabled() or x.device.type != "cpu":
        return F.gelu(x, approximate="tanh")
    two_u = torch.mul(x, x).mul_(2 * 0.044715 * GELU_C).add_(2 * GELU_C).mul_(x)
    return two_u.sigmoid_().mul_(x)


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
    """AdaLN: x (B, K, N, D) with per-frame shift/scale (B, K, 1, D), in one kernel."""
    return torch.addcmul(shift, x, 1 + scale)


def patchify(z: torch.Tensor, p: int) -> torch.Tensor:
    """(B, K, C, H, W) -> (B, K, H/p, W/p, C*p*p)."""
    return rearrange(z, "b k c (y p1) (x p2) -> b k y x (c p1 p2)", p1=p, p2=p)


def unpatchify(tokens: torch.Tensor, p: int, channels: int) -> torch.Tensor:
    """(B, K, H/p, W/p, C*p*p) -> (B, K, C, H, W)."""
    return rearrange(tokens, "b k y x (c p1 p2) -> b k c (y p1) (x p2)", p1=p, p2=p, c=channels)
