"""MarDini Frame Assembler: decode the clip, paste the given images back pixel for pixel, restore their detail."""
from __future__ import annotations

from mardini_core.assemble import assemble_frames, neighbour_anchor
from mardini_core.errors import InputError
from mardini_core.fit import fit_to

from . import comfy_bridge
from .checks import images_for_mask, latent_matches_mask
from .fitting import FIT
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
                "vae": ("VAE", {"tooltip": "The same VAE as in MarDini VAE Encode."}),
                "latent": ("LATENT", {"tooltip": "The clip from MarDini Sampler."}),
                "images": ("IMAGE", {"tooltip": "The same pictures that went into MarDini VAE Encode: they are put back "
                                                "unchanged in their frames."}),
                "mask": (MARDINI_MASK, {"tooltip": "The same MarDini Frame Mask as the rest of the clip."}),
            },
            "optional": {"restore_detail": RESTORE_DETAIL, "fit": FIT},
        }

    def assemble(self, vae, latent, images, mask, restore_detail=True, fit="crop"):
        latent_matches_mask(latent, mask)
        given = images_for_mask(images, mask)
        frames = decode_with_progress(vae, latent["samples"])
        frames = frames.reshape(-1, *frames.shape[-3:])[..., :3].float().clone()
        if fit != "off" and frames.shape[1:3] != given.shape[1:3] and frames.shape[0] == mask.frames:
            given = fit_to(given.movedim(-1, 1), tuple(frames.shape[1:3]), fit).movedim(1, -1)  # as VAE Encode fitted them
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
        return (assemble_frames(frames, given, mask, self.anchor(vae, latent, frames, given, mask, restore_detail)),)

    @staticmethod
    def anchor(vae, latent, frames, given, mask, restore_detail):
        """(A, R(A)) to put generated frames back around (assemble.py): the flow anchor the Sampler passed
        along in the LATENT, else the neighbour blend of the given images; None when restoration is off."""
        if not restore_detail:
            return None
        if "mardini_flow_pixels" not in latent:
            return neighbour_anchor(frames, given, mask)
        pixels = latent["mardini_flow_pixels"].float().cpu()
        if pixels.shape != frames.shape:
            raise InputError(f"the LATENT's flow anchor is {tuple(pixels.shape)} but the decoded frames are {tuple(frames.shape)}; "
                             "connect the latent of the MarDini Sampler that made these frames")
        reconstruction = vae.decode(latent["mardini_flow_latents"])
        return pixels, reconstruction.reshape(-1, *reconstruction.shape[-3:])[..., :3].float().cpu()


def decode_with_progress(vae, samples):
    """ComfyUI's VAE decode one frame at a time, advancing the node's progress bar (and honouring Cancel)."""
    import torch

    report = comfy_bridge.step_reporter(samples.shape[0])
    parts = []
    for i in range(samples.shape[0]):
        parts.append(vae.decode(samples[i : i + 1]))
        report(i + 1)
    return torch.cat(parts)
