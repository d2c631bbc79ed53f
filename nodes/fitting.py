"""The optional `fit` input shared by the nodes that take images: fit them to a size the model takes."""
from __future__ import annotations

from mardini_core.fit import FIT_MODES

FIT = (list(FIT_MODES), {"default": "crop", "tooltip":
    "When your pictures are not a size the model takes (multiples of 32 for the embedded default): crop trims "
    "the edges evenly, resize scales the whole picture slightly, off stops with a message saying the nearest size. "
    "Use the same choice in MarDini Frame Assembler."})
