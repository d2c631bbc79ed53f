"""MarDini Planner: runs the heavy MAR planner once for the clip (low resolution)."""
from __future__ import annotations

from mardini_core.generation import plan

from .checks import same_mask
from .types import MARDINI_LATENTS, MARDINI_MASK, MARDINI_PLAN, MODEL_INPUT, Plan


class MarDiniPlanner:
    DESCRIPTION = "Runs the MAR planner once over the clip; its planning signal guides every sampler step."
    CATEGORY = "MarDini"
    RETURN_TYPES = (MARDINI_PLAN,)
    RETURN_NAMES = ("plan",)
    FUNCTION = "plan"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": MODEL_INPUT,
            "latents": (MARDINI_LATENTS, {"tooltip": "From MarDini VAE Encode: your pictures, ready for the model."}),
            "mask": (MARDINI_MASK, {"tooltip": "The same MarDini Frame Mask as the rest of the clip."}),
        }}

    def plan(self, model, latents, mask):
        same_mask(latents.mask, mask, "encoded latents")
        model.load_planner()
        signal = plan(model.model, [latents.window])
        model.planner_done()
        return (Plan(signal=signal, mask=mask),)
