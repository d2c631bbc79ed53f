"""MarDini Sampler: the light DM generator's DDIM steps, guided by the plan, -> a standard LATENT."""
from __future__ import annotations

import torch

from mardini_core.pipeline import arrange, from_model_space, sample

from . import comfy_bridge
from .checks import same_mask
from .comfy_vae import pack
from .preview import fit_projection, strip
from .types import MARDINI_LATENTS, MARDINI_MASK, MARDINI_MODEL, MARDINI_PLAN

SEED_MAX = 0xFFFFFFFFFFFFFFFF


def frame_noise_mask(mask, latent: torch.Tensor) -> torch.Tensor:
    """[K, 1, H, W]: 0 on given frames (keep), 1 on generated ones, as core samplers read it."""
    keep = torch.tensor([0.0 if g else 1.0 for g in mask.given])
    return keep[:, None, None, None].expand(-1, 1, *latent.shape[-2:]).contiguous()


RESTORE_DETAIL = ("BOOLEAN", {"default": True, "tooltip":
    "Add the detail the VAE drops from the given images back to the generated frames (exact in static regions)."})


def sampling_inputs(guidance_default: float = 2.5) -> dict:
    """steps, guidance, seed, eta: shared with MarDini Long Video, in this order."""
    return {
        "steps": ("INT", {"default": 25, "min": 1, "max": 1000, "tooltip": "DDIM steps (the paper uses 25)."}),
        "guidance": ("FLOAT", {"default": guidance_default, "min": 0.0, "max": 20.0, "step": 0.1, "round": 0.01,
                               "tooltip": "Classifier-free guidance on the plan: 2.5 for image-to-video, 1 (off) for interpolation."}),
        "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True}),
        "eta": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                          "tooltip": "0 = deterministic DDIM, 1 = DDPM-like fresh noise at every step."}),
    }


class MarDiniSampler:
    DESCRIPTION = (
        "Generates the clip's masked frames with the DM generator (DDIM, v-prediction). Output: a LATENT "
        "with frames as the batch, given frames marked kept by its noise_mask; decode it with VAE Decode "
        "or MarDini Frame Assembler."
    )
    CATEGORY = "MarDini"
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MARDINI_MODEL,),
                "plan": (MARDINI_PLAN,),
                "latents": (MARDINI_LATENTS,),
                "mask": (MARDINI_MASK,),
                **sampling_inputs(),
            }
        }

    def sample(self, model, plan, latents, mask, steps, guidance, seed, eta):
        same_mask(plan.mask, mask, "plan")
        same_mask(latents.mask, mask, "encoded latents")
        model.load_generator()
        report = comfy_bridge.step_reporter(steps)
        projection = fit_projection(latents.high, latents.preview_rgb) if comfy_bridge.previews_enabled() else None
        z = sample(
            model.model, arrange(mask, latents.high), mask.to_tensor(), plan.signal,
            steps=steps, guidance=guidance, eta=eta, seed=seed,
            callback=lambda step, total, x0: report(step, None if projection is None else strip(x0[0], projection)),
        )[0]
        config = model.config
        raw = from_model_space(z, config)
        samples = (pack(raw) if latents.packed else raw).to(comfy_bridge.output_device())
        return ({"samples": samples, "noise_mask": frame_noise_mask(mask, samples)},)
