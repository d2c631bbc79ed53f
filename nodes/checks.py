"""Input checks shared by the nodes, with messages that say how to fix the wiring."""
from __future__ import annotations

import torch

from mardini_core.errors import InputError, MaskError
from mardini_core.masks import FrameMask


def same_mask(expected: FrameMask, got: FrameMask, what: str) -> None:
    """Links from different Frame Mask nodes (or an edited mask) must not be mixed in one clip."""
    if expected.given != got.given or expected.sources != got.sources:
        raise MaskError(
            f"the {what} was made for mask {expected.pattern} but this node got mask {got.pattern}; "
            "connect the same MarDini Frame Mask node to every node of the clip"
        )


def images_for_mask(images: torch.Tensor, mask: FrameMask) -> torch.Tensor:
    """IMAGE [S,H,W,C] holding one image per given frame, in mask order -> its RGB channels."""
    if images.dim() != 4:
        raise InputError(f"expected an IMAGE batch [frames, height, width, channels], got shape {tuple(images.shape)}")
    needed = mask.images_needed
    if images.shape[0] != needed:
        how = "one image used as first and last frame" if mask.sources and len(set(mask.sources)) < len(mask.sources) \
            else "one per x in the pattern, left to right"
        raise InputError(
            f"mask {mask.pattern} takes {needed} input image(s) ({how}) but got {images.shape[0]}; "
            "batch the right images with Batch Images, or change the mask"
        )
    return images[..., :3]
