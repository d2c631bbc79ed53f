"""MarDini: the planner and the generator under one module, with model-wide switches."""
from __future__ import annotations

import torch.nn as nn

from ..config import MarDiniConfig
from ..errors import ConfigError
from .attention import resolve_backend
from .generator import Generator
from .planner import Planner


RELABELLABLE = {"name", "vae", "latent_scale", "latent_shift", "max_frames", "generator_attention", "anchor", "mean_scale", "open_fidelity"}


class MarDini(nn.Module):
    def __init__(self, config: MarDiniConfig):
        super().__init__()
        self.config = config
        self.planner = Planner(config)
        self.generator = Generator(config)

    def set_generator_attention(self, mode: str) -> None:
        """Switch the generator between `/ST` and `/T` (training stage 2); weights are kept.

        A preset-style name follows the switch ("small/ST" becomes "small/T")."""
        self.generator.set_attention(mode)
        name, old = self.config.name, "/" + self.config.generator.attention
        self.relabel(generator_attention=mode, name=name[: -len(old)] + "/" + mode if name.endswith(old) else name)

    def relabel(self, **changes) -> None:
        """Change config fields that leave the weights' shapes alone (name, vae, latent scale/shift...)."""
        shaping = set(changes) - RELABELLABLE
        if "anchor" in changes and "flow" in (changes["anchor"], self.config.anchor) and changes["anchor"] != self.config.anchor:
            shaping.add("anchor to or from 'flow' (the generator reads the flow anchor as extra input channels)")
        if shaping:
            raise ConfigError(f"{', '.join(sorted(shaping))} change the weights' shapes; build a new model instead")
        self.config = self.planner.config = self.generator.config = self.config.replace(**changes)

    def set_attention_backend(self, name: str) -> None:
        """auto | sdpa | xformers | math; checked now against the model's device, resolved at each call."""
        device = next(self.parameters()).device
        resolve_backend(name, device)
        self.planner.attention_backend = self.generator.attention_backend = name

    @property
    def gradient_checkpointing(self) -> bool:
        return self.planner.gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, on: bool) -> None:
        self.planner.gradient_checkpointing = self.generator.gradient_checkpointing = bool(on)
