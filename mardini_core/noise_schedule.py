"""The diffusion noise schedule and v-prediction algebra, shared by training and sampling.

Continuous time t in [0, 1] with the cosine (variance-preserving) schedule
    alpha_t = cos(pi/2 * t),  sigma_t = sin(pi/2 * t),  z_t = alpha_t * z + sigma_t * eps,
and the velocity target of the paper (eq. 1, after Salimans & Ho 2022)
    v = alpha_t * eps - sigma_t * z.
t = 0 is clean data, t = 1 pure noise. Reference frames are always at t = 0.
"""
from __future__ import annotations

import math

import torch


def alpha_sigma(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_t, sigma_t) for times t of any shape, in float32."""
    angle = t.float() * (math.pi / 2)
    return torch.cos(angle), torch.sin(angle)


def _expand(coef: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast per-sample (B,) or per-frame (B, K) coefficients over latents (B, K, C, H, W)."""
    while coef.dim() < like.dim():
        coef = coef.unsqueeze(-1)
    return coef.to(like.dtype)


def add_noise(z: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """z_t = alpha_t z + sigma_t eps."""
    a, s = alpha_sigma(t)
    return _expand(a, z) * z + _expand(s, z) * eps


def v_target(z: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """v = alpha_t eps - sigma_t z (the regression target of the masked diffusion loss)."""
    a, s = alpha_sigma(t)
    return _expand(a, z) * eps - _expand(s, z) * z


def predict_x0_eps(z_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean latent and noise implied by a v prediction: x0 = a z_t - s v, eps = s z_t + a v."""
    a, s = alpha_sigma(t)
    a, s = _expand(a, z_t), _expand(s, z_t)
    return a * z_t - s * v, s * z_t + a * v
