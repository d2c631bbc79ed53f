"""ComfyUI entry point of the MarDini node pack (this folder goes in ComfyUI/custom_nodes/).

ComfyUI imports this file by location, so the pack's own `mardini_core` library is made importable by
name here; the nodes live in `nodes/` (imported relatively: ComfyUI has a top-level `nodes` module).
"""
import os
import sys

_ROOT = os.path.dirname(os.path.abspath(__file__))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, register_model_folder  # noqa: E402
from .nodes.examples import install_examples_into_comfy  # noqa: E402
from .nodes.model_window import register_routes  # noqa: E402

register_model_folder()
install_examples_into_comfy()  # the templates' example images and video, never replacing a user's file
register_routes()  # /mardini/model_window: the Frame Mask node checks its frame count against the model's window

WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
