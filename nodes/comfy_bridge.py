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


def offload_device() -> torch.device:
    """Where ComfyUI parks model weights it is not running (the CPU, or the GPU with --highvram/--gpu-only)."""
    import comfy.model_management

    return comfy.model_management.unet_offload_device()


def default_dtype(device: torch.device, parameters: int) -> torch.dtype:
    """ComfyUI's choice for a diffusion model of this size on this device (honours --fp16-unet, --bf16-unet, ...)."""
    import comfy.model_management

    return comfy.model_management.unet_dtype(device, parameters, [torch.bfloat16, torch.float16, torch.float32])


def vae_placement() -> tuple[torch.device, torch.device]:
    """(run, park) devices ComfyUI uses for VAEs (honours --cpu-vae, --gpu-only)."""
    import comfy.model_management

    return comfy.model_management.vae_device(), comfy.model_management.vae_offload_device()


def managed(module: torch.nn.Module, device: torch.device, parked: torch.device):
    """A ComfyUI ModelPatcher over one of our networks, so ComfyUI's memory manager can load and offload it."""
    import comfy.model_patcher

    return comfy.model_patcher.ModelPatcher(module, load_device=device, offload_device=parked)


def load_on_device(*patchers) -> None:
    """Load networks onto their run device through ComfyUI (it frees memory held by other models first).

    Whole networks (force_full_load): our layers are plain torch modules, not ComfyUI's cast-on-the-fly ops, so
    a partial (--lowvram) load would leave weights on two devices. With --cpu the run device is the CPU.
    """
    import comfy.model_management

    comfy.model_management.load_models_gpu(list(patchers), force_full_load=True)


def release(patcher) -> None:
    """Move one network back to its park device now (planner_after_run = cpu), leaving other models alone."""
    import comfy.model_management

    loaded = comfy.model_management.current_loaded_models
    for i, entry in enumerate(loaded):
        if entry.model is patcher:
            loaded.pop(i).model_unload()
            return


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


class ScheduleProgress:
    """A window schedule on ComfyUI's progress bar: `steps` units per window whatever number of passes a
    window really makes (one at fidelity 1), so the bar always ends full; Cancel is honoured at every step
    and between a window's stages."""

    def __init__(self, windows: int, steps: int):
        self.steps, self.window = steps, 0
        self.report = step_reporter(windows * steps)

    def hooks(self):
        from mardini_core.generation import Hooks

        return Hooks(step=self.step, window=self.on_window, should_stop=self.should_stop)

    def on_window(self, index: int, _window) -> None:
        self.window = index

    def step(self, step: int, total: int, _x0) -> None:
        self.report(self.window * self.steps + step * self.steps // total)

    @staticmethod
    def should_stop() -> bool:
        """Between a window's stages (encode, anchor, plan, decode): Cancel raises ComfyUI's own exception."""
        import comfy.model_management

        comfy.model_management.throw_exception_if_processing_interrupted()
        return False


def input_directory() -> str:
    """ComfyUI's input folder (what LoadImage and LoadVideo list)."""
    import folder_paths

    return folder_paths.get_input_directory()


def comfy_vae(module: torch.nn.Module, latent_channels: int, downscale: int):
    """A real `comfy.sd.VAE` whose network is `module` (encode: [N,3,H,W] in 0..1 -> latents; decode: back).

    It is built as ComfyUI's pixel-space VAE (so every attribute its methods read exists in this ComfyUI
    release) and then given our network, its ModelPatcher and its sizes: VAE Decode, VAE Encode, the tiled
    variants and other packs then treat it like any VAE from a loader, memory management included.
    """
    import comfy.model_management as mm
    import comfy.sd

    vae = comfy.sd.VAE(sd={"pixel_space_vae": torch.tensor(1.0)})
    device, parked = vae_placement()
    dtype = mm.vae_dtype(device, [torch.bfloat16, torch.float32])
    module = module.to(parked, dtype).eval().requires_grad_(False)
    itemsize = mm.dtype_size(dtype)
    width = 64  # activation channels at full resolution, a generous bound for the tiny autoencoders
    vae.first_stage_model = module
    vae.latent_channels = latent_channels
    vae.downscale_ratio = vae.upscale_ratio = downscale
    vae.latent_dim = 2
    vae.output_channels = 3
    vae.process_input = lambda image: image  # the network takes and returns 0..1 images
    vae.process_output = lambda image: image.clamp_(0.0, 1.0)
    vae.memory_used_encode = lambda shape, dt: 6 * width * shape[2] * shape[3] * itemsize
    vae.memory_used_decode = lambda shape, dt: 6 * width * shape[2] * shape[3] * downscale * downscale * itemsize
    vae.working_dtypes = [torch.bfloat16, torch.float32]
    vae.disable_offload = True  # plain torch layers: always loaded whole (see load_on_device)
    vae.device, vae.vae_dtype, vae.size = device, dtype, None
    vae.output_device = mm.intermediate_device()
    vae.patcher = managed(module, device, parked)
    return vae
