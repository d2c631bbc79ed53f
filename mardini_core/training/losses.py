"""The paper's training objectives (eq. 1-3) on model-space latents.

Masked diffusion loss: v-prediction regressed on the masked frames only (reference frames enter
clean and are not scored), the plan either the planner's (eq. 3, swapped per clip for Z_uncond with
probability `uncond_prob`) or Z_uncond alone (eq. 1, generator trained by itself). Masked
reconstruction loss (eq. 2): the planner's signal, mapped back to latents by a throw-away projection
head, regresses the low-resolution latents of the masked frames. Pixel loss (flow-anchored models,
our addition): the mean residual (t = 1) is scored on the frame the user sees, A + D(E(A) + r) - D(E(A))
against the true pixels, through the stage VAE's frozen decoder, as a log ratio to the anchor's own
error; a latent regression alone let the residual point the right way yet decode into artifacts.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange

from ..config import MarDiniConfig
from ..anchor import between_given, diffusion_offset
from ..generation.latents import from_model_space
from ..noise_schedule import add_noise, v_target


class PlannerHead(nn.Module):
    """f_zeta of eq. 2: planning signal (B, K, N_low, D) -> latents (B, K, C, h, w). Not part of the saved model."""

    def __init__(self, config: MarDiniConfig):
        super().__init__()
        self.patch, self.channels = config.planner.patch, config.latent_channels
        self.proj = nn.Linear(config.planner.hidden, config.latent_channels * self.patch**2)

    def forward(self, plan: torch.Tensor, rows: int) -> torch.Tensor:
        p = self.patch
        return rearrange(self.proj(plan), "b k (y x) (c p q) -> b k c (y p) (x q)", y=rows, p=p, q=p)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked frames only. pred, target (B, K, C, H, W); masked (B, K)."""
    weight = masked[:, :, None, None, None].to(pred.dtype)
    per_frame = target[0, 0].numel()
    return ((pred.float() - target.float()).pow(2) * weight).sum() / (weight.sum() * per_frame).clamp_min(1)


def reconstruction_loss(model, head: PlannerHead, z_low: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Eq. 2. z_low (B, K, C, h, w) model-space; masked frames reach the planner as [MASK] only."""
    plan = model.planner(z_low, masked)
    rows = z_low.shape[-2] // model.config.planner.patch
    return masked_mse(head(plan, rows), z_low, masked)


def diffusion_loss(
    model,
    z_high: torch.Tensor,
    z_low: torch.Tensor | None,
    masked: torch.Tensor,
    t: torch.Tensor,
    eps: torch.Tensor,
    drop_plan: torch.Tensor,
    flow: torch.Tensor | None = None,
    plan: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 3 (z_low given: the planner plans, clips with drop_plan get Z_uncond) or eq. 1 (z_low None: Z_uncond).

    z_high (B, K, C, H, W) clean model-space latents; t (B,) in [0, 1]; eps like z_high; drop_plan (B,) bool;
    flow: the flow anchor's latents like z_high (flow-anchored models); plan: the planner's signal for
    z_low when the caller has it already (before any Z_uncond swap).
    """
    if z_low is None:
        plan = None
    else:
        plan = model.planner(z_low, masked) if plan is None else plan
        plan = torch.where(drop_plan[:, None, None, None], model.generator.uncond_plan_like(plan), plan)
    frame_mask = masked[:, :, None, None, None]
    offset = diffusion_offset(z_high, masked, model.config, flow)  # zero, the neighbour blend or the flow anchor (anchor.py)
    residual = z_high - offset
    z_t = torch.where(frame_mask, offset + add_noise(residual, eps, t), z_high)  # references stay clean
    v = model.generator(z_t, t, plan, masked, anchor=offset)
    return masked_mse(v, v_target(residual, eps, t), masked)


PIXEL_FLOOR = 1 / (12 * 255**2)  # MSE floor of the pixel loss's log ratio: 8-bit quantisation noise (59 dB), below it nothing shows in a saved video


def pixel_loss(model, decoder: nn.Module, z_high, plan, masked, eps, flow, pixels, anchor_pixels) -> torch.Tensor:
    """Mean over generated frames between given frames of ln((MSE(frame) + floor) / (MSE(A) + floor)), the
    frame assembled as A + D(E(A) + r) - D(E(A)) with r the mean residual at t = 1: 0 for a zero residual,
    -0.23 per dB gained. A log ratio, not the MSE: the eval averages PSNR over clips, and a plain MSE lets
    the hard frames drown the nearly still ones, where a residual that is not zero costs dB the model
    never saw. Frames with a given frame on one side only are left to the diffusion loss: there the
    residual is the motion, and a pixel regression would only teach it to stand still.

    z_high, eps, flow model-space like the diffusion loss; plan the planner's signal (B, K, N, D);
    pixels, anchor_pixels (B, K, 3, H, W) in [0, 1]."""
    rows = between_given(masked).flatten()
    frame_mask = masked[:, :, None, None, None]
    offset = diffusion_offset(z_high, masked, model.config, flow)
    z_1 = torch.where(frame_mask, offset + eps, z_high)
    residual = -model.generator(z_1, torch.ones(masked.shape[0], device=masked.device), plan, masked, anchor=offset)  # x0 = -v at t = 1
    decode = lambda z: decoder(from_model_space(z.flatten(0, 1)[rows], model.config).to(next(decoder.parameters()).dtype)).float()
    truth, anchor = pixels.flatten(0, 1)[rows], anchor_pixels.flatten(0, 1)[rows]
    with torch.no_grad():
        reconstruction = decode(offset)
        anchor_error = (anchor - truth).pow(2).mean((1, 2, 3))
    frames = anchor + decode(offset + residual) - reconstruction
    error = (frames - truth).pow(2).mean((1, 2, 3))
    ratio = torch.log((error + PIXEL_FLOOR) / (anchor_error + PIXEL_FLOOR))
    return ratio.sum() / rows.sum().clamp_min(1)  # 0 (no frame between given ones) without a host sync


class TrainModules(nn.Module):
    """What the optimizer updates (the MarDini model and, in stage 1, the planner head) and the stage's
    losses as its forward, so a sharded wrapper (FSDP2) sees one root forward per step."""

    def __init__(self, model: nn.Module, head: PlannerHead | None, losses: tuple[str, ...], decoder: nn.Module | None = None):
        super().__init__()
        self.model, self.head, self.losses, self.decoder = model, head, losses, decoder

    def forward(self, z_high, z_low, masked, t, eps, drop_plan, flow=None, pixels=None, anchor_pixels=None) -> dict[str, torch.Tensor]:
        out = {}
        plan = self.model.planner(z_low, masked) if "pixel" in self.losses else None  # once for both losses that read it
        if "reconstruction" in self.losses:
            out["reconstruction"] = reconstruction_loss(self.model, self.head, z_low, masked)
        if "diffusion" in self.losses:
            out["diffusion"] = diffusion_loss(self.model, z_high, z_low, masked, t, eps, drop_plan, flow, plan)
        if "diffusion_uncond" in self.losses:
            out["diffusion_uncond"] = diffusion_loss(self.model, z_high, None, masked, t, eps, drop_plan, flow)
        if "pixel" in self.losses:
            out["pixel"] = pixel_loss(self.model, self.decoder, z_high, plan, masked, eps, flow, pixels, anchor_pixels)
        return out
