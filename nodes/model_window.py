"""GET /mardini/model_window?model=NAME -> {"frames": N}: the window of a model in the loader's list.

The Frame Mask's timeline asks it to say on the node, before a run, when a clip is longer than the
connected model's window. Only the file's header is read (no weights), and only names the loader lists.
"""
from __future__ import annotations

from mardini_core.checkpoint import read_config
from mardini_core.embedded import MODEL_FILE
from mardini_core.errors import MarDiniError

from .model_loader import EMBEDDED_DEFAULT, checkpoint_path


def model_window(name: str) -> int:
    """The clip length (frames) the named model takes in one window; CheckpointError for an unknown name."""
    return read_config(MODEL_FILE if name == EMBEDDED_DEFAULT else checkpoint_path(name)).max_frames


def register_routes() -> None:
    """Adds the route to ComfyUI's server (a no-op outside a running ComfyUI)."""
    try:
        from aiohttp import web
        from server import PromptServer
    except ImportError:
        return

    @PromptServer.instance.routes.get("/mardini/model_window")
    async def _model_window(request):
        try:
            return web.json_response({"frames": model_window(request.query.get("model", ""))})
        except MarDiniError as error:  # an unknown or unreadable model: the timeline makes no claim
            return web.json_response({"error": str(error)}, status=404)
