"""Minimal fakes of the ComfyUI modules the MarDini nodes touch, and a loader for the pack itself.

`load_pack()` puts `folder_paths`, `comfy.utils` and `comfy.model_management` fakes on `sys.modules`
(unless a real ComfyUI is importable there already) and imports the repository root as a package,
exactly as ComfyUI does (by file location, under the custom-node folder's name).
"""
import importlib.util
import sys
from pathlib import Path

FAKES = Path(__file__).resolve().parent
REPO = FAKES.parents[1]
PACK_NAME = "comfyui_mardini_pack"


def install() -> None:
    if str(FAKES) not in sys.path:
        sys.path.insert(0, str(FAKES))
    import comfy.model_management  # noqa: F401  (the fakes, now importable)
    import comfy.utils  # noqa: F401
    import folder_paths  # noqa: F401


def load_pack():
    """The pack's root `__init__` module (NODE_CLASS_MAPPINGS...), imported once per session."""
    install()
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(
        PACK_NAME, REPO / "__init__.py", submodule_search_locations=[str(REPO)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module
