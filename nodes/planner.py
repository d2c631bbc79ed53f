"""MarDini Planner: runs the heavy MAR planner once for the clip (low resolution)."""
from __future__ import annotations

from mardini_core.generation import plan

from .checks import same_mask
from .types import LATENTS_INPUT, MARDINI_PLAN, MASK_INPUT, MODEL_INPUT, MarDiniNode, Plan


class MarDiniPlanner(MarDiniNode):
    DESCRIPTION = "Runs the MAR planner once over the clip; its planning signal guides every sampler step."
    RETURN_TYPES = (MARDINI_PLAN,)
    RETURN_NAMES = ("plan",)
    FUNCTION = "plan"

    REQUIRED = {
        "model": MODEL_INPUT,
        "latents": LATENTS_INPUT,
        "mask": MASK_INPUT,
    }

    def plan(self, model, latents, mask):
        same_mask(latents.mask, mask, "encoded latents")
        model.load_planner()
        signal = plan(model.model, [latents.window])
        model.planner_done()
        return (Plan(signal=signal, mask=mask),)
