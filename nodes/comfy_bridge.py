"""The only place the MarDini nodes touch ComfyUI's own modules.

Each import happens inside the function that needs it, so the pack imports (and its node classes can
be inspected) anywhere; the tests put small fakes of these modules on `sys.modules` first.
"""
from __future__ import annotations

import os

import torch

MODEL_FOLDER = "mardini"


def register_model_folder() -> None:
    """Make `models/mardini` a ComfyUI model folder, keeping any paths extra_model_paths.yaml added."""
    import folder_paths

    default = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    paths, _ = folder_paths.folder_names_and_paths.get(MODEL_FOLDER, ([], None))
    if default not in paths:
        folder_paths.folder_names_and_paths[MODEL_FOLDER] = ([default, *paths], folder_paths.supported_pt_extensions)


def model_files() -> list[str]:
    import folder_paths

    register_model_folder()
    return folder_paths.get_filename_list(MODEL_FOLDER)


def model_path(name: str) -> str | None:
    import folder_paths

    register_model_folder()
    return folder_paths.get_full_path(MODEL_FOLDER, name)


def model_folders() -> list[str]:
    import folder_paths

    register_model_folder()
    return list(folder_paths.folder_names_and_paths[MODEL_FOLDER][0])


def compute_device() -> torch.device:
    """The device ComfyUI runs models on (honours --cpu, --gpu-only, ...)."""
    import comfy.model_management

    return comfy.model_management.get_torch_device()


def output_device() -> torch.device:
    """Where ComfyUI keeps tensors between nodes (IMAGE, LATENT)."""
    import comfy.model_management

    return comfy.model_management.intermediate_device()


def previews_enabled() -> bool:
    """ComfyUI's --preview-method (or the frontend's per-run setting) is not "none"."""
    from comfy.cli_args import LatentPreviewMethod, args

    return args.preview_method != LatentPreviewMethod.NoPreviews


def preview_image(rgb: torch.Tensor):
    """(H, W, 3) in [0, 1] -> the ("JPEG", PIL image, max side) triple ComfyUI's progress hook sends.

    None without Pillow (always there inside ComfyUI; absent in the pack's bare test environment).
    """
    try:
        from PIL import Image
    except ImportError:
        return None

    array = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return ("JPEG", Image.fromarray(array), 512)


def step_reporter(total: int):
    """A per-step callback: advances ComfyUI's progress bar (with a preview image if given) and stops at Cancel.

    `throw_exception_if_processing_interrupted` raises ComfyUI's InterruptProcessingException, a
    BaseException that the executor itself handles; nothing in MarDini may catch it.
    """
    import comfy.model_management
    import comfy.utils

    bar = comfy.utils.ProgressBar(total)

    def report(step: int, preview_rgb: torch.Tensor | None = None) -> None:
        bar.update_absolute(step, total, None if preview_rgb is None else preview_image(preview_rgb))
        comfy.model_management.throw_exception_if_processing_interrupted()

    return report


def check_interrupted() -> None:
    import comfy.model_management

    comfy.model_management.throw_exception_if_processing_interrupted()
