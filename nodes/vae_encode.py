"""MarDini VAE Encode: the given images -> high- and low-resolution model-space latents."""
from __future__ import annotations

from mardini_core.pipeline import encode_frames, images_from_hwc

from .checks import images_for_mask
from .comfy_vae import ComfyVAE
from .preview import rgb_at_latent_size
from .types import MARDINI_LATENTS, MARDINI_MASK, MARDINI_MODEL, EncodedFrames


class MarDiniVAEEncode:
    DESCRIPTION = (
        "Encodes the given frames with ComfyUI's VAE twice: at full size for the generator and downscaled "
        "for the planner. Images: one per given frame of the mask, in order (a loop takes one)."
    )
    CATEGORY = "MarDini"
    RETURN_TYPES = (MARDINI_LATENTS,)
    RETURN_NAMES = ("latents",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MARDINI_MODEL,),
                "vae": ("VAE", {"tooltip": "The VAE the model was trained with (e.g. taef2 for the embedded default)."}),
                "images": ("IMAGE", {"tooltip": "The given frames, in mask order; sides a multiple of the model's size step."}),
                "mask": (MARDINI_MASK,),
            }
        }

    def encode(self, model, vae, images, mask):
        config = model.config
        mask.validate(config.max_frames)
        rgb = images_for_mask(images, mask)
        adapter = ComfyVAE(vae, config.latent_channels, config.vae)
        pixels = images_from_hwc(rgb)
        high, low = encode_frames(adapter.encode, pixels, config, adapter.downscale)
        preview_rgb = rgb_at_latent_size(pixels, tuple(high.shape[-2:]))
        return (EncodedFrames(high=high.cpu(), low=low.cpu(), mask=mask, packed=adapter.packed, preview_rgb=preview_rgb),)
