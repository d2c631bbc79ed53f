"""Plumbing shared by the planner and the generator: input checks, backend choice, checkpointing."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from ..config import MarDiniConfig
from ..errors import InputError
from .attention import resolve_backend


def check_latents(z: torch.Tensor, masked: torch.Tensor, config: MarDiniConfig, patch: int, what: str) -> None:
    """Raise InputError naming the problem when latents or the frame mask do not fit the model."""
    if z.dim() != 5:
        raise InputError(f"{what} latents must have shape (batch, frames, channels, height, width), got {tuple(z.shape)}")
    b, k, c, h, w = z.shape
    if c != config.latent_channels:
        raise InputError(
            f"{what} latents have {c} channels but the model expects {config.latent_channels}; "
            f"encode with the VAE the model was trained with ({config.vae or 'see its config'})"
        )
    if k > config.max_frames:
        raise InputError(f"{k} frames exceed the model's window of {config.max_frames}; use hierarchical generation")
    if h % patch or w % patch or h == 0 or w == 0:
        raise InputError(f"{what} latent size {h}x{w} must be a positive multiple of the patch size {patch}")
    if masked.shape != (b, k) or masked.dtype != torch.bool:
        raise InputError(f"frame mask must be a bool tensor of shape ({b}, {k}), got {masked.dtype} {tuple(masked.shape)}")


class FrameTransformer(nn.Module):
    """Base of both networks: a stack of blocks over (B, K, N, D) tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.attention_backend = "auto"
        self.gradient_checkpointing = False
        self.blocks = nn.ModuleList()

    def backend_for(self, device: torch.device) -> str:
        return resolve_backend(self.attention_backend, device)

    def run_blocks(self, x: torch.Tensor, *args) -> torch.Tensor:
        use_checkpoint = self.gradient_checkpointing and torch.is_grad_enabled()
        for block in self.blocks:
            x = checkpoint(block, x, *args, use_reentrant=False) if use_checkpoint else block(x, *args)
        return x
