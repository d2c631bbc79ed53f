"""A window's output: the given images back pixel for pixel, generated frames put back around their anchor.

Decoding through an autoencoder loses what the encoder dropped: a generated frame comes back softer
than the given frame beside it, and the clip flickers between the two. So a generated frame is
assembled around its anchor A (anchor.py) in pixel space,
    frame = A + D(z) - R(A),
where D(z) is the decoded frame and R(A) what the autoencoder makes of the anchor. A residual z that
equals the anchor's latent returns A exactly; otherwise only the change the model made passes
through the autoencoder. For a flow-anchored model A is the flow frame and R(A) = D(E(A)). For the
other models (detail restoration) A is the neighbour blend of the given images and R(A) the same
blend of their decodings: static regions then match the given frames exactly, moving ones gain at
most the residual's fine detail.
"""
from __future__ import annotations

import torch

from ..anchor import neighbour_weights
from ..masks import FrameMask


def assemble_frames(decoded: torch.Tensor, images: torch.Tensor, mask: FrameMask, anchor: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """decoded (K, ...) pixels decoded from the window's latents, images (S, ...) one per mask source -> (K, ...).

    `anchor`: (pixels A, reconstruction R(A)), both (K, ...), read on the generated frames; None keeps
    the decoded frames as they are. Any layout with frames first ((K, 3, H, W) or ComfyUI's
    (K, H, W, 3)); values in [0, 1].
    """
    given, generated = list(mask.given_indices), list(mask.generated_indices)
    frames = decoded.clone()
    if anchor is not None and generated:
        pixels, reconstruction = (a.to(decoded) for a in anchor)
        frames[generated] = (pixels[generated] + decoded[generated] - reconstruction[generated]).clamp(0, 1)
    frames[given] = images[list(mask.sources)].to(decoded)
    return frames


def neighbour_anchor(decoded: torch.Tensor, images: torch.Tensor, mask: FrameMask) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, R(A)) of detail restoration: the neighbour blends of the given images and of their decodings (K, ...).

    decoded must hold the given frames' decodings (decoded[mask.given_indices]); its other rows are
    never read, as neighbour weights are zero on generated frames (anchor.neighbour_weights)."""
    weights = neighbour_weights(mask.to_tensor())[0].to(decoded)  # (K, K)
    sources = torch.zeros_like(decoded)
    sources[list(mask.given_indices)] = images[list(mask.sources)].to(decoded)
    blend = lambda x: torch.einsum("kj,j...->k...", weights, x)
    return blend(sources), blend(decoded)
