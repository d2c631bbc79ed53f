"""Load MarDini Model: a checkpoint from models/mardini, or the embedded default, ready to run."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePath

import torch

from mardini_core.checkpoint import load_checkpoint
from mardini_core.default_model import load_default
from mardini_core.errors import CheckpointError

from . import comfy_bridge
from .types import MARDINI_MODEL

EMBEDDED_DEFAULT = "(embedded default)"
DTYPES = ("auto", "bf16", "fp16", "fp32")
ATTENTION = ("auto", "sdpa", "xformers")
PLANNER_AFTER_RUN = ("gpu", "cpu")
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

    @property
    def config(self):
        return self.model.config


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """auto = bf16 on GPUs that have it, fp16 on other GPUs, fp32 on the CPU."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def _no_weights_message() -> str:
    return NO_WEIGHTS.format(folders=" or ".join(comfy_bridge.model_folders()))


def check_model_name(name: str) -> None:
    """A checkpoint name must stay inside the model folders: absolute paths and `..` are refused."""
    if os.path.isabs(name) or ".." in PurePath(name.replace("\\", "/")).parts:
        raise CheckpointError(
            f"{name!r} is not a file name inside the model folder ({' or '.join(comfy_bridge.model_folders())}); "
            "absolute paths and '..' are refused: pick a checkpoint from the list"
        )


class MarDiniModelLoader:
    DESCRIPTION = "Loads a MarDini model (planner + generator). " + NO_WEIGHTS.format(folders="ComfyUI/models/mardini")
    CATEGORY = "MarDini"
    RETURN_TYPES = (MARDINI_MODEL,)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ([EMBEDDED_DEFAULT, *comfy_bridge.model_files()], {
                    "tooltip": "A .safetensors checkpoint from models/mardini, or the small model embedded in this pack."}),
                "dtype": (list(DTYPES), {"default": "auto", "tooltip": "auto: bf16 (or fp16) on GPU, fp32 on CPU."}),
                "attention": (list(ATTENTION), {"default": "auto", "tooltip": "auto: xformers on CUDA when installed, else PyTorch SDPA."}),
                "planner_after_run": (list(PLANNER_AFTER_RUN), {"default": "gpu", "tooltip":
                    "Where the planner waits after it ran once: cpu frees GPU memory for the generator's steps."}),
            }
        }

    def load(self, model, dtype, attention, planner_after_run):
        device = comfy_bridge.compute_device()
        torch_dtype = resolve_dtype(dtype, device)
        if model == EMBEDDED_DEFAULT:
            net = load_default(device, torch_dtype)
        else:
            check_model_name(model)
            path = comfy_bridge.model_path(model)
            if path is None:
                raise CheckpointError(f"{model!r} is not in {' or '.join(comfy_bridge.model_folders())}. " + _no_weights_message())
            net = load_checkpoint(path, device=device, dtype=torch_dtype)
        net.eval().requires_grad_(False)
        net.set_attention_backend(attention)
        return (LoadedMarDini(net, device, torch_dtype, planner_after_run == "cpu", model),)
