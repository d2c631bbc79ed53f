"""MarDini Sampler: the light DM generator's steps (DDIM or DPM-Solver++(2M)), guided by the plan, -> a standard LATENT."""
from __future__ import annotations

import torch

from mardini_core.errors import InputError
from mardini_core.generation import Hooks, Sampling, from_model_space, sample
from mardini_core.generation.window import reads_plan
from mardini_core.generation.settings import SAMPLERS

from . import comfy_bridge
from .checks import same_mask
from .comfy_vae import pack
from .preview import fit_projection, strip
from .types import LATENTS_INPUT, MARDINI_PLAN, MASK_INPUT, MODEL_INPUT, MarDiniNode

SEED_MAX = 0xFFFFFFFFFFFFFFFF


def frame_noise_mask(mask, latent: torch.Tensor) -> torch.Tensor:
    """[K, 1, H, W]: 0 on given frames (keep), 1 on generated ones, as core samplers read it."""
    keep = torch.tensor([0.0 if g else 1.0 for g in mask.given])
    return keep[:, None, None, None].expand(-1, 1, *latent.shape[-2:]).contiguous()


RESTORE_DETAIL = ("BOOLEAN", {"default": True, "tooltip":
    "Keeps the new frames as crisp as your pictures: fine detail the model's compression loses is taken from your "
    "pictures (exact where nothing moves). Turn off to see the model's own output."})


GUIDANCE_FOLLOWS_MASK = ("BOOLEAN", {"default": True, "label_on": "auto", "label_off": "always", "tooltip":
    "auto: guidance is used when your pictures give only one end of the clip (e.g. image-to-video, 2.5), and turned "
    "off when both ends are given (interpolation, loop), as in the paper. Switch to 'always' to use the value as set."})


def sampling_inputs(guidance_default: float = 2.5) -> dict:
    """steps, guidance, seed, eta: shared with MarDini Long Video, in this order."""
    return {
        "steps": ("INT", {"default": 25, "min": 1, "max": 1000, "tooltip":
            "How many refinement passes each new frame gets. More is cleaner and slower: 25 is the paper's choice, "
            "8 to 12 is a quick draft on a CPU."}),
        "guidance": ("FLOAT", {"default": guidance_default, "min": 0.0, "max": 20.0, "step": 0.1, "round": 0.01, "tooltip":
            "How strongly the new frames follow the model's plan of the motion. 1 = off. 2.5 suits a clip made from one "
            "picture; with pictures at both ends it is best off."}),
        "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True, "tooltip":
            "The random start of the new frames: change it for a different take of the same shot."}),
        "eta": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
            "Randomness added on the way: 0 = the same result for the same seed and a steady look, up to 1 = more varied "
            "detail."}),
    }


FIDELITY = ("FLOAT", {"default": -1.0, "min": -1.0, "max": 1.0, "step": 0.05, "round": 0.01, "tooltip":
    "How far the new frames may wander from the model's best guess. 1 = its best single guess (closest to your "
    "pictures, one pass: fast), 0 = a free take (more movement and variety). -1 = the model's own choice for this mask."})


SAMPLER = (list(SAMPLERS), {"default": "ddim", "tooltip":
    "How each pass refines the new frames. ddim: the paper's way, made for 25 steps. dpmpp_2m: a smarter pass that "
    "gets closer to the finished frames in 10 steps than ddim in 25 (set steps to 10: 2.5x faster); it needs eta at 0. "
    "With fidelity 1 (one pass) both give the same frames."})


def sampling_from_widgets(steps, guidance, seed, eta, fidelity=-1.0, sampler="ddim", guidance_follows_mask=False) -> Sampling:
    """The widgets' Sampling: fidelity -1 (auto) is None, the model's own default for each window's mask."""
    return Sampling(steps=steps, guidance=guidance, fidelity=None if fidelity < 0 else fidelity, eta=eta, sampler=sampler,
                    seed=seed, guidance_follows_mask=guidance_follows_mask)


class MarDiniSampler(MarDiniNode):
    SEARCH_ALIASES = ["image to video", "i2v", "animate image", "interpolation", "loop", "extend", "video sampler"]  # what artists type in node search (ComfyUI core's convention)
    DESCRIPTION = (
        "Generates the clip's masked frames with the DM generator (DDIM or DPM-Solver++(2M), v-prediction). Output: a LATENT "
        "with frames as the batch, given frames marked kept by its noise_mask; decode it with VAE Decode "
        "or MarDini Frame Assembler."
    )
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    FUNCTION = "sample"

    REQUIRED = {
        "model": MODEL_INPUT,
        "plan": (MARDINI_PLAN, {"lazy": True, "tooltip": "From MarDini Planner. Not run where the new frames are their "
                                "anchor whatever the model says (the embedded model between given frames)."}),
        "latents": LATENTS_INPUT,
        "mask": MASK_INPUT,
        **sampling_inputs(),
    }
    OPTIONAL = {"guidance_follows_mask": GUIDANCE_FOLLOWS_MASK, "fidelity": FIDELITY, "sampler": SAMPLER}

    def check_lazy_status(self, model, plan, latents, mask, steps, guidance, seed, eta, guidance_follows_mask=True,
                          fidelity=-1.0, sampler="ddim"):
        """ComfyUI asks which lazy inputs to compute: the plan only where the sampler reads it (`reads_plan`), so the
        Planner node is not run where the window's sample is its anchor."""
        if plan is not None:
            return []
        try:
            sampling = sampling_from_widgets(steps, guidance, seed, eta, fidelity, sampler, guidance_follows_mask)
        except InputError:
            return ["plan"]  # sample() names the bad widget
        return ["plan"] if reads_plan(sampling, mask, model.config) else []

    def sample(self, model, plan, latents, mask, steps, guidance, seed, eta, guidance_follows_mask=True, fidelity=-1.0,
               sampler="ddim"):
        sampling = sampling_from_widgets(steps, guidance, seed, eta, fidelity, sampler, guidance_follows_mask)
        if plan is None and reads_plan(sampling, mask, model.config):
            raise InputError("this clip's sampler reads the plan: connect MarDini Planner's plan")
        if plan is not None:
            same_mask(plan.mask, mask, "plan")
        same_mask(latents.mask, mask, "encoded latents")
        model.load_generator()
        report = comfy_bridge.step_reporter(steps)
        projection = fit_projection(latents.window.high, latents.preview_rgb) if comfy_bridge.previews_enabled() else None
        hooks = Hooks(step=lambda step, total, x0: report(step * steps // total, None if projection is None else strip(x0[0], projection)))  # one pass (fidelity 1) fills the bar
        z = sample(model.model, [latents.window], None if plan is None else plan.signal, sampling, hooks=hooks)[0]
        raw = from_model_space(z, model.config)
        samples = (pack(raw) if latents.packed else raw).to(comfy_bridge.output_device())
        # the window rides along for MarDini Frame Assembler: the given frames and the anchor to put the new ones back around
        return ({"samples": samples, "noise_mask": frame_noise_mask(mask, samples), "mardini_window": latents.window,
                 "mardini_config": model.config},)
