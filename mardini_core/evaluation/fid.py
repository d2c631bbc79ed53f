"""Fréchet Inception Distance between the frames a method generated and the true frames.

Features are collected clip by clip (frames are not kept), and the distance between the two
Gaussians fitted to them is computed once at the end:
    d^2 = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).
With a few hundred frames and 2048 features the covariances are rank-deficient and FID is biased
upwards (it falls as frames are added); compare methods on the same clips only, never with the
paper's numbers.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from ..errors import InputError
from .inception import InceptionFeatures
from .protocol import GENERATED

BATCH = 16


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID of two feature sets (N, D) and (M, D), N, M >= 2."""
    if len(a) < 2 or len(b) < 2:
        raise InputError(f"FID needs at least 2 frames per side, got {len(a)} and {len(b)}; evaluate more clips")
    mu_a, mu_b = a.mean(0), b.mean(0)
    # S_a = A^T A and S_b = B^T B with A, B the centred sets over sqrt(N - 1), sqrt(M - 1). The nonzero
    # eigenvalues of S_a S_b are the squared singular values of A B^T, so Tr (S_a S_b)^(1/2) is the sum of
    # those: an (N, M) problem instead of (D, D) ones (a few hundred frames beside 2048 features; 30 s -> ms).
    centred_a = (a - mu_a) / np.sqrt(len(a) - 1)
    centred_b = (b - mu_b) / np.sqrt(len(b) - 1)
    cross = np.linalg.svd(centred_a @ centred_b.T, compute_uv=False).sum()
    return float(((mu_a - mu_b) ** 2).sum() + (centred_a**2).sum() + (centred_b**2).sum() - 2 * cross)


class FeatureBank:
    """Inception features of frames, kept per key (e.g. "interpolation/linear", "interpolation/truth")."""

    def __init__(self, net: InceptionFeatures):
        self.net = net
        self.features: dict[str, list[np.ndarray]] = defaultdict(list)

    @torch.inference_mode()
    def add(self, key: str, frames: np.ndarray) -> None:
        """frames (N, H, W, 3) in [0, 1]."""
        images = torch.from_numpy(np.ascontiguousarray(frames)).float().permute(0, 3, 1, 2)
        for batch in images.split(BATCH):
            self.features[key].append(self.net(batch).double().numpy())

    def distance(self, key: str, reference: str) -> float:
        return frechet_distance(np.concatenate(self.features[key]), np.concatenate(self.features[reference]))

    def add_clip(self, truths: dict[str, np.ndarray], outputs: dict[str, dict[str, np.ndarray]]) -> None:
        """The generated frames of every method of one clip, and the true frames they stand for (per task)."""
        for task, clips in outputs.items():
            frames = GENERATED[task]
            if clips:
                self.add(f"{task}/truth", truths[task][frames])
            for method, clip in clips.items():
                self.add(f"{task}/{method}", clip[frames])

    def scores(self, task: str) -> dict[str, float]:
        """method -> FID against the true frames, for one task."""
        methods = [key.split("/", 1)[1] for key in self.features if key.startswith(f"{task}/") and key != f"{task}/truth"]
        return {method: self.distance(f"{task}/{method}", f"{task}/truth") for method in methods}
