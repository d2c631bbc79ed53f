"""MarDini VAE Encode: the given images -> high- and low-resolution model-space latents."""
from __future__ import annotations

from mardini_core.fit import fit_images
from mardini_core.generation import encode, images_from_hwc, size_multiple

from .checks import check_request, images_for_mask
from .fitting import FIT
from .comfy_vae import ComfyVAE
from .preview import rgb_at_latent_size
from .types import MARDINI_LATENTS, MARDINI_MASK, MODEL_INPUT, EncodedFrames, MarDiniNode


class MarDiniVAEEncode(MarDiniNode):
    DESCRIPTION = (
        "Encodes the given frames with ComfyUI's VAE twice: at full size for the generator and downscaled "
        "for the planner. Images: one per given frame of the mask, in order (a loop takes one)."
    )
    RETURN_TYPES = (MARDINI_LATENTS,)
    RETURN_NAMES = ("latents",)
    FUNCTION = "encode"

    REQUIRED = {
        "model": MODEL_INPUT,
        "vae": ("VAE", {"tooltip": "The vae output of Load MarDini Model (nothing to download); taef2 or the "
                                   "FLUX.2 VAE from Load VAE work too."}),
        "images": ("IMAGE", {"tooltip": "Your pictures for the frames marked x in the mask, left to right (a loop "
                                        "takes one). Width and height: multiples of 32 for the embedded default "
                                        "(see 'fit' to adjust them for you)."}),
        "mask": (MARDINI_MASK, {"tooltip": "From MarDini Frame Mask: which frames are yours and which are made."}),
    }
    OPTIONAL = {"fit": FIT}

    def encode(self, model, vae, images, mask, fit="crop"):
        config = model.config
        mask.validate(config.max_frames)
        rgb = images_for_mask(images, mask)
        check_request(mask.frames, config.max_frames, *rgb.shape[1:3], model.device)
        adapter = ComfyVAE(vae, config.latent_channels, config.vae)
        pixels = fit_images(images_from_hwc(rgb), size_multiple(config, adapter.downscale), fit)
        window = encode(model.model, adapter, pixels, mask, model.interpolator())
        preview_rgb = rgb_at_latent_size(pixels, tuple(window.high.shape[-2:]))
        return (EncodedFrames(window=window, packed=adapter.packed, preview_rgb=preview_rgb),)
