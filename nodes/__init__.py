"""The MarDini ComfyUI nodes. The mapping keys are node ids stored in users' workflows: never rename one."""
from .assembler import MarDiniFrameAssembler
from .comfy_bridge import register_model_folder
from .frame_mask import MarDiniFrameMask
from .long_video import MarDiniLongVideo
from .model_loader import MarDiniModelLoader
from .planner import MarDiniPlanner
from .sampler import MarDiniSampler
from .smoother import MarDiniSmootherVideo
from .vae_encode import MarDiniVAEEncode

NODE_CLASS_MAPPINGS = {
    "MarDiniModelLoader": MarDiniModelLoader,
    "MarDiniFrameMask": MarDiniFrameMask,
    "MarDiniVAEEncode": MarDiniVAEEncode,
    "MarDiniPlanner": MarDiniPlanner,
    "MarDiniSampler": MarDiniSampler,
    "MarDiniFrameAssembler": MarDiniFrameAssembler,
    "MarDiniLongVideo": MarDiniLongVideo,
    "MarDiniSmootherVideo": MarDiniSmootherVideo,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "MarDiniModelLoader": "Load MarDini Model",
    "MarDiniFrameMask": "MarDini Frame Mask",
    "MarDiniVAEEncode": "MarDini VAE Encode",
    "MarDiniPlanner": "MarDini Planner",
    "MarDiniSampler": "MarDini Sampler",
    "MarDiniFrameAssembler": "MarDini Frame Assembler",
    "MarDiniLongVideo": "MarDini Long Video",
    "MarDiniSmootherVideo": "MarDini Smoother / Slower Video",
}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "register_model_folder"]
