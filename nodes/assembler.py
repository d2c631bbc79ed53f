"""MarDini Frame Assembler: decode the clip, paste the given images back pixel for pixel, restore their detail."""
from __future__ import annotations

import torch

from mardini_core.errors import InputError
from mardini_core.fit import fit_to
from mardini_core.generation import Anchor, Encoded, decode_frames, from_model_space
from mardini_core.generation.window import anchor_kept, assemble, frames_to_decode

from . import comfy_bridge
from .checks import images_for_mask, latent_matches_mask, same_mask
from .comfy_vae import ComfyVAE, pack
from .fitting import FIT
from .sampler import RESTORE_DETAIL
from .types import MASK_INPUT, MarDiniNode


class MarDiniFrameAssembler(MarDiniNode):
    DESCRIPTION = (
        "Decodes every frame of a MarDini LATENT and puts the given images back exactly where the mask says; "
        "with restore detail on, the detail the VAE drops from the given images is added back to the generated frames."
    )
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    FUNCTION = "assemble"

    REQUIRED = {
        "vae": ("VAE", {"tooltip": "The same VAE as in MarDini VAE Encode."}),
        "latent": ("LATENT", {"tooltip": "The clip from MarDini Sampler."}),
        "images": ("IMAGE", {"tooltip": "The same pictures that went into MarDini VAE Encode: they are put back "
                                        "unchanged in their frames."}),
        "mask": MASK_INPUT,
    }
    OPTIONAL = {"restore_detail": RESTORE_DETAIL, "fit": FIT}

    def assemble(self, vae, latent, images, mask, restore_detail=True, fit="crop"):
        latent_matches_mask(latent, mask)
        if not torch.isfinite(latent["samples"]).all():
            raise InputError("the LATENT holds NaN or infinite values; check the node that made it (a sampler or latent math node)")
        given = images_for_mask(images, mask)
        kept = self.kept(latent, mask, restore_detail)
        decoded_at = [k for k in range(latent["samples"].shape[0]) if k not in kept]
        frames = decode_with_progress(vae, latent["samples"], decoded_at)
        frames = frames.reshape(-1, *frames.shape[-3:])[..., :3].float().clone()
        if kept and frames.shape[0] == len(decoded_at):  # one latent per frame (our Sampler's): kept rows stay zero, never read
            frames = frames.new_zeros(mask.frames, *frames.shape[1:]).index_copy_(0, torch.tensor(decoded_at), frames)
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
        window, reconstruct = self.window(vae, latent, given, mask)
        pixels = frames.movedim(-1, 1)
        out = assemble(pixels[frames_to_decode(mask, window.anchor, restore_detail, kept)], window, restore_detail, reconstruct, kept)
        return (out.movedim(1, -1),)

    @staticmethod
    def kept(latent, mask, restore_detail) -> list[int]:
        """Generated frames our Sampler left as their flow anchor's latents (window.anchor_kept), read off the
        LATENT as it arrives (a latent node between may have changed it): they are the anchor's pixels, not decoded."""
        window, samples = latent.get("mardini_window"), latent["samples"]
        if window is None or window.anchor.kind != "flow" or samples.shape[0] != mask.frames or window.mask != mask:
            return []
        raw = from_model_space(window.anchor.latents, latent["mardini_config"])
        form = raw if samples.shape[1:] == raw.shape[1:] else pack(raw)
        return anchor_kept(window, restore_detail, samples, form) if samples.shape[1:] == form.shape[1:] else []

    @staticmethod
    def window(vae, latent, given, mask):
        """(the window, how to decode its anchor's latents): the Sampler's window where the LATENT carries it
        (its anchor and the given frames as encoded), else the given images with no anchor of the model's."""
        if "mardini_window" not in latent:
            empty = torch.empty(0)
            return Encoded(mask, given.movedim(-1, 1), empty, empty, Anchor("none")), None
        window, config = latent["mardini_window"], latent["mardini_config"]
        same_mask(window.mask, mask, "LATENT")
        if window.images.shape[-2:] != given.shape[1:3]:
            raise InputError(f"the LATENT was encoded at {window.images.shape[-1]}x{window.images.shape[-2]} but the given "
                             f"images are {given.shape[2]}x{given.shape[1]}; connect the same images that were encoded")
        adapter = ComfyVAE(vae, config.latent_channels, config.vae) if window.anchor.kind == "flow" else None
        return window, lambda z: decode_frames(adapter, z, config).cpu()


def decode_with_progress(vae, samples, rows):
    """ComfyUI's VAE decode of the latent's `rows`, one at a time, advancing the node's progress bar (and honouring Cancel)."""
    report = comfy_bridge.step_reporter(len(rows))
    parts = []
    for n, i in enumerate(rows):
        parts.append(vae.decode(samples[i : i + 1]))
        report(n + 1)
    return torch.cat(parts)
