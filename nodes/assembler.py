"""MarDini Frame Assembler: decode the clip, paste the given images back pixel for pixel, restore their detail."""
from __future__ import annotations

from mardini_core.assemble import assemble_frames
from mardini_core.errors import InputError

from .checks import images_for_mask
from .sampler import RESTORE_DETAIL
from .types import MARDINI_MASK


class MarDiniFrameAssembler:
    DESCRIPTION = (
        "Decodes every frame of a MarDini LATENT and puts the given images back exactly where the mask says; "
        "with restore detail on, the detail the VAE drops from the given images is added back to the generated frames."
    )
    CATEGORY = "MarDini"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    FUNCTION = "assemble"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae": ("VAE",),
                "latent": ("LATENT",),
                "images": ("IMAGE", {"tooltip": "The same given images that went into MarDini VAE Encode."}),
                "mask": (MARDINI_MASK,),
            },
            "optional": {"restore_detail": RESTORE_DETAIL},
        }

    def assemble(self, vae, latent, images, mask, restore_detail=True):
        given = images_for_mask(images, mask)
        frames = vae.decode(latent["samples"])
        frames = frames.reshape(-1, *frames.shape[-3:])[..., :3].float().clone()
        if frames.shape[0] != mask.frames:
            raise InputError(
                f"the LATENT holds {frames.shape[0]} frames but mask {mask.pattern} has {mask.frames}; "
                "connect the latent of the MarDini Sampler that used this mask"
            )
        if frames.shape[1:3] != given.shape[1:3]:
            raise InputError(
                f"the given images are {given.shape[2]}x{given.shape[1]} but the decoded frames are "
                f"{frames.shape[2]}x{frames.shape[1]}; connect the same images that were encoded"
            )
        return (assemble_frames(frames, given, mask, restore_detail),)
