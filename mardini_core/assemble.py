"""A window's output: the given images back pixel for pixel, and their lost detail restored.

Decoding through an autoencoder blurs what the encoder dropped: a static background comes back
softer in a generated frame than in the given frame beside it, and the clip flickers between the
two. Detail restoration adds to each generated frame the given frames' reconstruction residual
(given image - its decoded latent), weighted like the frame's neighbour blend (anchor.py). Where the
generated frame matches its neighbours (static regions) it then matches them exactly; where things
move it adds at most the residual's high frequencies, a few intensity levels with a small VAE.
"""
from __future__ import annotations

import torch

from .anchor import neighbour_weights
from .masks import FrameMask


def assemble_frames(decoded: torch.Tensor, images: torch.Tensor, mask: FrameMask, restore_detail: bool = True) -> torch.Tensor:
    """decoded (K, ...) pixels decoded from the window's latents, images (S, ...) one per mask source -> (K, ...).

    Any layout with frames first ((K, 3, H, W) or ComfyUI's (K, H, W, 3)); values in [0, 1]. The
    decoded given frames are read only when `restore_detail` is on.
    """
    given, generated = list(mask.given_indices), list(mask.generated_indices)
    sources = images[list(mask.sources)].to(decoded)
    frames = decoded.clone()
    if restore_detail and generated:
        residual = torch.zeros_like(decoded)
        residual[given] = sources - decoded[given]
        weights = neighbour_weights(mask.to_tensor())[0, generated].to(decoded)  # (generated, K)
        frames[generated] = (decoded[generated] + torch.einsum("kj,j...->k...", weights, residual)).clamp(0, 1)
    frames[given] = sources
    return frames
