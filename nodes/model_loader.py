"""Load MarDini Model: a checkpoint from models/mardini, or the embedded default, ready to run."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePath

import torch

from mardini_core import precision
from mardini_core.checkpoint import load_checkpoint
from mardini_core.default_model import load_default
from mardini_core.errors import CheckpointError
from mardini_core.interpolation import DEFAULT_INTERPOLATOR, DEFAULT_QUALITY, INTERPOLATORS, QUALITIES, Dis, Rife, at_quality
from mardini_core.interpolation.rife import embedded_ifnet
from mardini_core.model.attention import resolve_backend
from mardini_core.model.compiled import compile_blocks

from . import comfy_bridge
from .comfy_interpolator import ComfyInterpolator
from .mardini_vae import embedded_vae
from .types import MARDINI_MODEL, MarDiniNode

EMBEDDED_DEFAULT = "(embedded default)"
ATTENTION = ("auto", "sdpa", "xformers")
PLANNER_AFTER_RUN = ("gpu", "cpu", "auto")  # appended choices only: saved workflows store the value
NO_WEIGHTS = (
    "The paper's authors released no MarDini weights: use this pack's embedded default model, or train your own "
    "(python -m mardini_core train ...) and put the .safetensors file in {folders}."
)


@dataclass
class LoadedMarDini:
    """What flows along a MARDINI_MODEL link: the networks and where/how they run."""

    model: torch.nn.Module
    device: torch.device
    dtype: torch.dtype
    offload_planner: bool  # move the planner to the CPU once it ran, freeing GPU memory for the DM
    name: str
    planner_patcher: object = None  # ComfyUI ModelPatchers: ComfyUI's memory manager loads and offloads the
    generator_patcher: object = None  # two networks (None outside ComfyUI: the networks stay where they are)
    anchor: object = None  # the interpolator of a flow-anchored model's anchor (mardini_core.interpolation)
    anchor_patcher: object = None  # the ModelPatcher of the embedded RIFE network behind it, where it has one

    def interpolator(self):
        """The anchor's interpolator, its network loaded on the run device first (None unless flow-anchored)."""
        if self.anchor_patcher is not None:
            comfy_bridge.load_on_device(self.anchor_patcher)
        return self.anchor

    def load_planner(self) -> None:
        """Put the planner on the run device through ComfyUI's model management (frees other models' memory)."""
        if self.planner_patcher is not None:
            comfy_bridge.load_on_device(self.planner_patcher)

    def load_generator(self) -> None:
        if self.generator_patcher is not None:
            comfy_bridge.load_on_device(self.generator_patcher)

    def load_all(self) -> None:
        patchers = [p for p in (self.planner_patcher, self.generator_patcher, self.anchor_patcher) if p is not None]
        if patchers:
            comfy_bridge.load_on_device(*patchers)

    def planner_done(self) -> None:
        """planner_after_run = cpu: give the planner's memory back at once (auto and gpu leave it to ComfyUI)."""
        if self.offload_planner and self.planner_patcher is not None:
            comfy_bridge.release(self.planner_patcher)

    @property
    def config(self):
        return self.model.config


def resolve_dtype(name: str, device: torch.device, comfy_default: bool = False) -> torch.dtype:
    """auto = ComfyUI's choice for the device (comfy_default; honours --fp16-unet...), else the library's."""
    if name == "auto" and comfy_default:
        return comfy_bridge.default_dtype(device, 0)
    return precision.resolve_dtype(name, device)


def _no_weights_message() -> str:
    return NO_WEIGHTS.format(folders=" or ".join(comfy_bridge.model_folders()))


def check_model_name(name: str) -> None:
    """A checkpoint name must stay inside the model folders: absolute paths and `..` are refused."""
    if os.path.isabs(name) or ".." in PurePath(name.replace("\\", "/")).parts:
        raise CheckpointError(
            f"{name!r} is not a file name inside the model folder ({' or '.join(comfy_bridge.model_folders())}); "
            "absolute paths and '..' are refused: pick a checkpoint from the list"
        )


def checkpoint_path(name: str) -> str:
    """The file of a checkpoint the loader lists, by name only: no path leaves the model folders."""
    check_model_name(name)
    path = comfy_bridge.model_path(name)
    if path is None:
        raise CheckpointError(f"{name!r} is not in {' or '.join(comfy_bridge.model_folders())}. " + _no_weights_message())
    return path


class MarDiniModelLoader(MarDiniNode):
    SEARCH_ALIASES = ["video model", "image to video", "frame interpolation", "rife"]  # what artists type in node search (ComfyUI core's convention)
    DESCRIPTION = (
        "Loads a MarDini model (planner + generator) and the autoencoder it was trained with, ready for MarDini VAE "
        "Encode, the Frame Assembler and ComfyUI's VAE Decode: nothing to download. "
        + NO_WEIGHTS.format(folders="ComfyUI/models/mardini")
    )
    RETURN_TYPES = (MARDINI_MODEL, "VAE")  # outputs are appended only: saved links name the output slot
    RETURN_NAMES = ("model", "vae")
    OUTPUT_TOOLTIPS = (
        "The MarDini model: connect it to VAE Encode, Planner, Sampler or Long Video.",
        "The pack's own small autoencoder (mardini-tae, the FLUX.2 latent space): connect it wherever a VAE is asked "
        "for. taef2 or the FLUX.2 VAE from Load VAE also work, a little sharper.",
    )
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ([EMBEDDED_DEFAULT, *comfy_bridge.model_files()], {"tooltip":
                    "Which MarDini model to use. '(embedded default)' is the small demo model that comes with this pack; "
                    "models you train go in ComfyUI/models/mardini."}),
                "dtype": (list(precision.CHOICES), {"default": "auto", "tooltip":
                    "Number precision. auto lets ComfyUI pick for your hardware (half precision on a GPU, full on a CPU)."}),
                "attention": (list(ATTENTION), {"default": "auto", "tooltip":
                    "Speed-up library for the model's attention. auto uses xformers when it is installed on an NVIDIA GPU."}),
                "planner_after_run": (list(PLANNER_AFTER_RUN), {"default": "auto", "tooltip":
                    "auto: ComfyUI moves the planner (the big half of the model) off the GPU when memory is needed. "
                    "cpu: always right after it ran, leaving the most memory for the frames. gpu: keep it loaded."}),
            },
            "optional": {
                "compile": ("BOOLEAN", {"default": False, "tooltip":
                    "torch.compile the model: the first run takes a minute longer to compile, later steps run faster. "
                    "Needs Triton on an NVIDIA GPU (a C++ compiler on the CPU); where it is missing the model runs "
                    "uncompiled with a warning."}),
                "interpolator": (list(INTERPOLATORS), {"default": DEFAULT_INTERPOLATOR, "tooltip":
                    "The first guess of every frame made between your frames, which the model then corrects. rife: the "
                    "RIFE 4.x network that comes with this pack (best). dis: optical flow, no network, fastest. "
                    "Ignored when interp_model is connected."}),
                "anchor_quality": (list(QUALITIES), {"default": DEFAULT_QUALITY, "tooltip":
                    "best: the interpolator is asked four ways (mirrored and reversed) and the answers averaged: sharper "
                    "and steadier on nearly every video, about 3x the interpolator's time. fast: asked once."}),
                "interp_model": ("INTERP_MODEL", {"tooltip":
                    "Optional: a RIFE or FILM model from core's Load Frame Interpolation Model, used instead of the "
                    "pack's own interpolator."}),
            },
        }

    def load(self, model, dtype, attention, planner_after_run, compile=False, interpolator=DEFAULT_INTERPOLATOR,
             anchor_quality=DEFAULT_QUALITY, interp_model=None):
        device = comfy_bridge.compute_device()
        parked = comfy_bridge.offload_device()
        torch_dtype = resolve_dtype(dtype, device, comfy_default=True)
        if model == EMBEDDED_DEFAULT:
            net = load_default(parked, torch_dtype)
        else:
            net = load_checkpoint(checkpoint_path(model), device=parked, dtype=torch_dtype)
        net.eval().requires_grad_(False)
        resolve_backend(attention, device)  # checked against the device it runs on (the weights wait parked)
        net.planner.attention_backend = net.generator.attention_backend = attention
        if compile:
            compile_blocks(net, device)
        anchor, anchor_patcher = anchor_interpolator(net.config, interpolator, anchor_quality, interp_model, device, parked)
        loaded = LoadedMarDini(
            net, device, torch_dtype, planner_after_run == "cpu", model,
            planner_patcher=comfy_bridge.managed(net.planner, device, parked),
            generator_patcher=comfy_bridge.managed(net.generator, device, parked),
            anchor=anchor, anchor_patcher=anchor_patcher,
        )
        return (loaded, embedded_vae())


def anchor_interpolator(config, name: str, quality: str, interp_model, device, parked):
    """(interpolator, its ModelPatcher or None) for a flow-anchored model; (None, None) for others."""
    if name not in INTERPOLATORS or quality not in QUALITIES:
        raise CheckpointError(f"interpolator must be one of {', '.join(INTERPOLATORS)} and anchor_quality one of "
                              f"{', '.join(QUALITIES)}, got {name!r} and {quality!r}")
    if config.anchor != "flow":
        return None, None
    if interp_model is not None:
        return at_quality(ComfyInterpolator(interp_model), quality), None
    if name == "dis":
        return at_quality(Dis(), quality), None
    net = embedded_ifnet(parked)
    return at_quality(Rife(net), quality), comfy_bridge.managed(net, device, parked)
