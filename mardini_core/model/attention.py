"""Attention backends behind one function, and Identity Attention (paper §2.3.2).

`attention(q, k, v, backend)` takes (B, H, L, D) tensors and runs PyTorch SDPA (default), xformers
(CUDA only, when installed) or a plain float32 math reference used by tests.

Identity Attention: queries of reference frames attend only to themselves, so their output is their
own value vector; queries of masked frames attend to every token. The fast path gathers the masked
queries, runs one dense attention call over all keys and scatters the result back into a copy of v:
reference queries cost nothing and no K x K mask is ever materialised.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from einops import rearrange

from ..config import ATTENTION_BACKENDS
from ..errors import BackendUnavailableError, ConfigError


@functools.lru_cache(maxsize=1)
def _xformers_ops():
    try:
        import xformers.ops as xops  # optional fast path on CUDA
    except Exception:  # any import failure (missing, or built for another torch) means "unavailable"
        return None
    return xops


def resolve_backend(name: str, device: torch.device) -> str:
    """The concrete backend for `name` on `device`; errors clearly when a requested one cannot run."""
    if name not in ATTENTION_BACKENDS:
        raise ConfigError(f"unknown attention backend {name!r}; choose one of {', '.join(ATTENTION_BACKENDS)}")
    if name == "auto":
        return "xformers" if device.type == "cuda" and _xformers_ops() is not None else "sdpa"
    if name == "xformers":
        if device.type != "cuda":
            raise BackendUnavailableError(
                "the xformers attention backend has no CPU kernels; use 'sdpa' or 'auto' on this device"
            )
        if _xformers_ops() is None:
            raise BackendUnavailableError("xformers is not installed (pip install xformers), or use 'sdpa' / 'auto'")
    return name


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "sdpa") -> torch.Tensor:
    """Full (unmasked) attention. q: (B, H, Lq, D); k, v: (B, H, Lk, D) -> (B, H, Lq, D)."""
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v)
    if backend == "xformers":
        xops = _xformers_ops()
        out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
    if backend == "math":
        scores = q.float() @ k.float().transpose(-1, -2) / math.sqrt(q.shape[-1])
        return (scores.softmax(dim=-1) @ v.float()).to(q.dtype)
    raise ConfigError(f"attention backend {backend!r} must be resolved first (see resolve_backend)")


class FrameGroups:
    """The batch split by identical frame masks, computed once per forward pass and shared by all layers.

    masked: (B, K) bool, True = frame to generate. Each group is (batch indices, masked frame indices);
    the mask is synced to the host once here, never inside the layers.
    """

    def __init__(self, masked: torch.Tensor):
        self.batch = masked.shape[0]
        rows = masked.detach().cpu()
        unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
        device = masked.device
        self.groups: list[tuple[torch.Tensor | None, torch.Tensor]] = []
        for u, pattern in enumerate(unique):
            frames = pattern.nonzero().flatten()
            if len(frames) == 0:
                continue  # all frames are references: identity everywhere
            batch_idx = (inverse == u).nonzero().flatten()
            whole = len(unique) == 1
            self.groups.append((None if whole else batch_idx.to(device), frames.to(device)))


def frame_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, temporal: bool, backend: str) -> torch.Tensor:
    """Queries of some frames attend to the tokens of other (or all) frames.

    q: (B, Kq, N, H, D); k, v: (B, Kk, N, H, D) -> (B, Kq, N, H, D). temporal=True: each query sees
    the Kk tokens at its own spatial position; otherwise all Kk * N tokens. Key order is irrelevant
    (positions are already rotated into q and k).
    """
    if temporal:
        o = attention(*(rearrange(x, "b k n h d -> (b n) h k d") for x in (q, k, v)), backend)
        return rearrange(o, "(b n) h k d -> b k n h d", b=q.shape[0])
    o = attention(*(rearrange(x, "b k n h d -> b h (k n) d") for x in (q, k, v)), backend)
    return rearrange(o, "b h (k n) d -> b k n h d", n=q.shape[2])


def identity_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    groups: FrameGroups,
    *,
    temporal: bool,
    backend: str = "sdpa",
) -> torch.Tensor:
    """Identity Attention over frames. q, k, v: (B, K, N, H, D) -> (B, K, N, H, D).

    temporal=False: spatio-temporal, a masked query sees all K*N tokens.
    temporal=True: temporal, a masked query sees the K tokens at its own spatial position.
    """
    out = v.clone()  # reference queries: identity projection
    for batch_idx, frames in groups.groups:
        qb, kb, vb = (q, k, v) if batch_idx is None else (q[batch_idx], k[batch_idx], v[batch_idx])
        o = frame_attention(qb[:, frames], kb, vb, temporal=temporal, backend=backend)
        if batch_idx is None:
            out[:, frames] = o
        else:
            out[batch_idx[:, None], frames[None, :]] = o
    return out


def identity_attention_dense(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, masked: torch.Tensor, *, temporal: bool
) -> torch.Tensor:
    """Reference implementation with an explicit dense mask (Fig. 3), for tests and benchmarks.

    Same shapes as `identity_attention`; masked is the (B, K) bool frame mask.
    """
    b, k_frames, n, h, d = q.shape
    frame_of = torch.arange(k_frames, device=q.device).repeat_interleave(n)  # token -> frame
    pos_of = torch.arange(n, device=q.device).repeat(k_frames)  # token -> spatial position
    eye = torch.eye(k_frames * n, dtype=torch.bool, device=q.device)
    query_masked = masked[:, frame_of]  # (B, L)
    allowed = query_masked[:, :, None] | eye[None]  # masked queries see all, references only themselves
    if temporal:
        allowed = allowed & (pos_of[:, None] == pos_of[None, :])[None]
    flat = [rearrange(t, "b k n h d -> b h (k n) d") for t in (q, k, v)]
    out = F.scaled_dot_product_attention(*flat, attn_mask=allowed[:, None])
    return rearrange(out, "b h (k n) d -> b k n h d", n=n)
