"""MarDini core library: masked auto-regressive diffusion for video, independent of ComfyUI.

Model (`mardini_core.model`), configs and presets (`config`), checkpoints (`checkpoint`), the
diffusion schedule (`schedule`), generation, training and evaluation; CLI: `python -m mardini_core`.
"""

__version__ = "0.1.0"
