"""What flows along the links between MarDini nodes.

The type names are stored in users' workflows: never rename them. Core ComfyUI types are used where
they fit: VAE, IMAGE, LATENT, STRING.

LATENT layout of a MarDini clip: frames are the batch dimension, `samples` is [K, C, H, W] in the
VAE's own latent layout (so core VAEDecode decodes it to K images), and `noise_mask` is [K, 1, H, W]
with 0 on given frames and 1 on generated ones (core's convention for frames a sampler must keep).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mardini_core.masks import FrameMask
from mardini_core.generation import Encoded

MARDINI_MODEL = "MARDINI_MODEL"
MARDINI_MASK = "MARDINI_MASK"
MARDINI_LATENTS = "MARDINI_LATENTS"
MARDINI_PLAN = "MARDINI_PLAN"


@dataclass(frozen=True)
class EncodedFrames:
    """MARDINI_LATENTS: the window's first stage (mardini_core.generation.encode: the given images' latents at
    both scales and the anchor), with what ComfyUI needs beside it."""

    window: Encoded
    packed: bool  # the VAE packs 2x2 latent patches into channels (see nodes/comfy_vae.py)
    preview_rgb: torch.Tensor  # (S, 3, H, W) the given images at latent size, for the live preview

    @property
    def mask(self) -> FrameMask:
        return self.window.mask


@dataclass(frozen=True)
class Plan:
    """MARDINI_PLAN: the planner's signal for one clip, computed once and reused at every DM step."""

    signal: torch.Tensor  # (1, K, N_low, D_planner)
    mask: FrameMask


# Inputs that several nodes take, with one tooltip each (a ComfyUI input spec: type, options).
MODEL_INPUT = (MARDINI_MODEL, {"tooltip": "From Load MarDini Model."})
VAE_INPUT = ("VAE", {"tooltip": "The vae output of Load MarDini Model (or taef2 / the FLUX.2 VAE from Load VAE)."})
MODEL_AND_VAE = {"model": MODEL_INPUT, "vae": VAE_INPUT}  # the first inputs of the nodes that encode and decode themselves
MASK_INPUT = (MARDINI_MASK, {"tooltip": "The same MarDini Frame Mask as the rest of the clip."})
LATENTS_INPUT = (MARDINI_LATENTS, {"tooltip": "From MarDini VAE Encode: your pictures, ready for the model."})


class MarDiniNode:
    """What every MarDini node declares alike: its menu category, and its inputs as two dicts that ComfyUI
    reads through INPUT_TYPES (required first, then optional: the widget order saved workflows store)."""

    CATEGORY = "MarDini"
    REQUIRED: dict = {}
    OPTIONAL: dict = {}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": cls.REQUIRED, **({"optional": cls.OPTIONAL} if cls.OPTIONAL else {})}
