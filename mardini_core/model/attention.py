"""Attention backends behind one function, and Identity Attention (paper §2.3.2).

`attention(q, k, v, backend)` takes (B, H, L, D) tensors and runs PyTorch SDPA (default), xformers
(CUDA only, when installed) or a plain float32 math reference used by tests.

Identity Attention: queries of reference frames attend only to themselves, so their output is their
own value vector; queries of masked frames attend to every token. Two exact ways to run it, chosen
once per forward pass by `FrameGroups`:
- split (sampling, evaluation): the batch is split by distinct masks on the host; each group gathers
  its masked queries, runs one dense call over all keys and scatters the result into a copy of v, so
  reference queries cost nothing. Knowing the masked frames costs one host sync per forward.
- one masked call (training, where every clip draws its own mask): a boolean mask built on the device
  (masked queries see every key, reference queries only themselves), one SDPA call per layer and no
  host sync; reference queries are computed and come out as exactly their value vectors.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

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


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str = "sdpa", mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Attention. q: (B, H, Lq, D); k, v: (B, H, Lk, D) -> (B, H, Lq, D). `mask`: bool, broadcastable
    to (B, H, Lq, Lk), True = may attend; xformers takes no boolean mask, so a masked call runs SDPA."""
    if backend == "sdpa" or (backend == "xformers" and mask is not None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    if backend == "xformers":
        xops = _xformers_ops()
        out = xops.memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
    if backend == "math":
        scores = q.float() @ k.float().transpose(-1, -2) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return (scores.softmax(dim=-1) @ v.float()).to(q.dtype)
    raise ConfigError(f"attention backend {backend!r} must be resolved first (see resolve_backend)")


class FrameGroups:
    """How Identity Attention runs for one forward pass, decided once and shared by all layers.

    masked: (B, K) bool, True = frame to generate. `split` (default: when no gradient is recorded,
    i.e. sampling) syncs the mask to the host here, never inside the layers, and keeps `groups`:
    (batch indices or None for the whole batch, masked frame indices) per distinct mask. Otherwise
    the mask stays on the device and every layer makes one masked attention call.
    """

    def __init__(self, masked: torch.Tensor, *, split: bool | None = None):
        self.batch = masked.shape[0]
        self.masked = masked
        self.split = not torch.is_grad_enabled() if split is None else split
        self.groups: list[tuple[torch.Tensor | None, torch.Tensor]] = []
        self._masks: dict[tuple[int, bool], torch.Tensor] = {}  # built by the first layer, reused by the rest
        if not self.split:
            return
        rows = masked.detach().cpu()
        unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
        device = masked.device
        for u, pattern in enumerate(unique):
            frames = pattern.nonzero().flatten()
            if len(frames) == 0:
                continue  # all frames are references: identity everywhere
            batch_idx = (inverse == u).nonzero().flatten()
            whole = len(unique) == 1
            self.groups.append((None if whole else batch_idx.to(device), frames.to(device)))

    def attention_mask(self, tokens: int, *, temporal: bool) -> torch.Tensor:
        """Bool SDPA mask: masked queries see every key, reference queries only themselves.

        Spatio-temporal: (B, 1, K*N, K*N) over frame-major tokens; temporal: (B, 1, K, K), the same
        K x K mask at every spatial position and head (the layout of `frame_attention`)."""
        key = (tokens, temporal)
        if key not in self._masks:
            k, device = self.masked.shape[1], self.masked.device
            if temporal:
                self._masks[key] = (self.masked[:, :, None] | torch.eye(k, dtype=torch.bool, device=device))[:, None]
            else:
                query = repeat(self.masked, "b k -> b (k n)", n=tokens)
                self._masks[key] = query[:, None, :, None] | torch.eye(k * tokens, dtype=torch.bool, device=device)
        return self._masks[key]


def frame_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, temporal: bool, backend: str, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Queries of some frames attend to the tokens of other (or all) frames.

    q: (B, Kq, N, H, D); k, v: (B, Kk, N, H, D) -> (B, Kq, N, H, D). temporal=True: each query sees
    the Kk tokens at its own spatial position; otherwise all Kk * N tokens. Key order is irrelevant
    (positions are already rotated into q and k). `mask`: see `FrameGroups.attention_mask`.
    """
    if temporal:  # one call per clip, a view of q, k and v, never a copy: its positions as SDPA's batch, and on a CPU its
        # heads too: SDPA runs such 3-D inputs through batched matmuls, 3x faster than its flash kernel for these tiny
        # problems on two threads, as fast on one (a GPU keeps them apart, as one grid dimension of its kernels holds
        # at most 65535, and xformers, GPU-only, takes 4-D inputs)
        batch = "(n h)" if q.device.type == "cpu" else "n h"
        o = torch.stack([attention(*(rearrange(x[i], f"k n h d -> {batch} k d") for x in (q, k, v)), backend,
                                   None if mask is None else mask[i]) for i in range(q.shape[0])])
        return rearrange(o, f"b {batch} k d -> b k n h d", h=q.shape[3])
    o = attention(*(rearrange(x, "b k n h d -> b h (k n) d") for x in (q, k, v)), backend, mask)
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
    if not groups.split:
        return frame_attention(q, k, v, temporal=temporal, backend=backend, mask=groups.attention_mask(q.shape[2], temporal=temporal))
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
