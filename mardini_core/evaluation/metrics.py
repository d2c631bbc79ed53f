"""Reconstruction metrics of a generated frame against the ground truth: PSNR and SSIM.

Frames are (H, W, 3) float RGB in [0, 1] (the video readers' layout), so the data range is 1.
SSIM follows Wang et al. (2004): an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
filtered over the valid region only (no padding), computed per RGB channel and averaged over the
three channels (the convention of most frame-interpolation papers, and of scikit-image with
`channel_axis=-1, gaussian_weights=True`).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..errors import InputError

PSNR_CAP = 100.0  # dB reported for identical frames, so averages over clips stay finite (and JSON-valid)
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
_C1, _C2 = 0.01**2, 0.03**2  # (K1 * L)^2, (K2 * L)^2 with data range L = 1


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 3:
        raise InputError(f"metrics compare two (height, width, 3) frames of one size, got {a.shape} and {b.shape}")
    return a, b


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels, capped at PSNR_CAP."""
    a, b = _pair(a, b)
    mse = float(np.mean((a - b) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, -10.0 * math.log10(mse))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """(size,) normalised 1-D Gaussian; the 2-D window is its outer product (separable filtering)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity, per channel averaged; 1 for identical frames, symmetric in a and b."""
    a, b = _pair(a, b)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise InputError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {a.shape[1]}x{a.shape[0]}")
    g, crop = gaussian_window(), SSIM_WINDOW // 2

    def blur(x: np.ndarray) -> np.ndarray:  # (H, W, 3) -> (H - 10, W - 10, 3): the valid region only
        return cv2.sepFilter2D(x, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)[crop:-crop, crop:-crop]

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + _C1) * (2 * cov + _C2)) / ((mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2))
    return float(ssim_map.mean())  # the mean over pixels of each channel, then over channels, equals this mean
