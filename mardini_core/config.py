"""Model configurations as dataclasses, and the presets of the paper's Table 5 plus small CPU ones.

A `MarDiniConfig` is stored inside every checkpoint (as JSON metadata), so it is the single source of
truth for building a model: `MarDini(config)`.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
from dataclasses import dataclass, field

from .errors import ConfigError



class Attention(enum.StrEnum):
    """What a self-attention mixes, by the paper's letters (its presets are S/ST, L/T...): tokens within
    each frame (S), or across frames with Identity Attention, at one position (T, temporal) or at every
    position (ST, spatio-temporal). A generator config names its frame mixing by the value, "ST" or "T"."""

    SPATIAL = "S"
    TEMPORAL = "T"
    SPATIOTEMPORAL = "ST"


ATTENTION_MODES = (Attention.SPATIOTEMPORAL.value, Attention.TEMPORAL.value)  # a generator's frame mixing, as configs store it
ATTENTION_BACKENDS = ("auto", "sdpa", "xformers", "math")
ANCHORS = ("none", "neighbours", "flow")  # what the DM diffuses masked latents around (see anchor.py)


@dataclass(frozen=True)
class TransformerConfig:
    """One transformer's size: blocks, width, MLP width, attention heads, and its patch side on the latents."""

    depth: int = 8
    hidden: int = 1024
    mlp: int = 4096
    heads: int = 16
    patch: int = 2


@dataclass(frozen=True)
class PlannerConfig(TransformerConfig):
    """MAR planner: heavy Llama-style transformer at low resolution (Table 5, left half)."""

    hidden: int = 4096
    heads: int = 32


@dataclass(frozen=True)
class GeneratorConfig(TransformerConfig):
    """DM generator: light DiT-style transformer at high resolution (Table 5, right half)."""

    attention: str = "T"  # "ST" (spatio-temporal) or "T" (temporal) frame-mixing attention


@dataclass(frozen=True)
class MarDiniConfig:
    """Everything needed to build a MarDini and to feed it latents."""

    name: str = "custom"
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    latent_channels: int = 16
    max_frames: int = 17  # the model's window K
    planner_downscale: int = 2  # the planner sees frames at 1/planner_downscale of the DM's side
    latent_scale: float = 1.0  # model latent = (vae latent - latent_shift) * latent_scale
    latent_shift: float = 0.0
    vae: str = ""  # name of the autoencoder whose latents the model was trained on ("" = unknown)
    anchor: str = "none"  # "none": masked latents diffused from noise (the paper); "neighbours" / "flow": as a residual from an anchor (anchor.py)
    mean_scale: float = 1.0  # anchored models: the share of their mean residual estimate kept between given frames (generation.resolve), calibrated on training clips
    open_fidelity: float = 1.0  # anchored models: the sampler's default fidelity where a generated frame's anchor is a still copy of a given frame (generation.resolve), calibrated so clips move as much as true ones

    def __post_init__(self) -> None:
        validate(self)

    def replace(self, **changes) -> "MarDiniConfig":
        """A copy with top-level fields changed; `generator_attention="T"` changes the DM's mode."""
        if "generator_attention" in changes:
            mode = changes.pop("generator_attention")
            changes["generator"] = dataclasses.replace(self.generator, attention=mode)
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "MarDiniConfig":
        try:
            raw = json.loads(text)
            planner = PlannerConfig(**raw.pop("planner"))
            generator = GeneratorConfig(**raw.pop("generator"))
            return MarDiniConfig(planner=planner, generator=generator, **raw)
        except ConfigError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"unreadable model config ({exc}); the file was not written by MarDini") from exc


def _positive_ints(owner: str, obj, names) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{owner}.{name} must be a positive integer, got {value!r}")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(cfg: MarDiniConfig) -> None:
    """Raise ConfigError naming the first inconsistent field (also guards against forged configs)."""
    _positive_ints("planner", cfg.planner, ("depth", "hidden", "mlp", "heads", "patch"))
    _positive_ints("generator", cfg.generator, ("depth", "hidden", "mlp", "heads", "patch"))
    _positive_ints("config", cfg, ("latent_channels", "max_frames", "planner_downscale"))
    for owner, part in (("planner", cfg.planner), ("generator", cfg.generator)):
        if part.hidden % part.heads:
            raise ConfigError(f"{owner}.hidden ({part.hidden}) must be divisible by {owner}.heads ({part.heads})")
        if (part.hidden // part.heads) % 2:
            raise ConfigError(f"{owner} head size {part.hidden // part.heads} must be even for rotary embeddings")
    if cfg.generator.attention not in ATTENTION_MODES:
        raise ConfigError(f"generator.attention must be one of {ATTENTION_MODES}, got {cfg.generator.attention!r}")
    if cfg.anchor not in ANCHORS:
        raise ConfigError(f"config.anchor must be one of {ANCHORS}, got {cfg.anchor!r}")
    if not (_number(cfg.mean_scale) and 0 <= cfg.mean_scale <= 1 and (cfg.mean_scale == 1 or cfg.anchor != "none")):
        raise ConfigError(f"mean_scale must lie in 0..1, and be 1 for a model without an anchor, got {cfg.mean_scale!r}")
    if not (_number(cfg.open_fidelity) and 0 <= cfg.open_fidelity <= 1 and (cfg.open_fidelity == 1 or cfg.anchor != "none")):
        raise ConfigError(f"open_fidelity must lie in 0..1, and be 1 for a model without an anchor, got {cfg.open_fidelity!r}")
    if not (_number(cfg.latent_scale) and cfg.latent_scale > 0 and math.isfinite(cfg.latent_scale)):
        raise ConfigError(f"latent_scale must be a positive finite number, got {cfg.latent_scale!r}")
    if not (_number(cfg.latent_shift) and math.isfinite(cfg.latent_shift)):
        raise ConfigError(f"latent_shift must be a finite number, got {cfg.latent_shift!r}")
    for name in ("name", "vae"):
        if not isinstance(getattr(cfg, name), str):
            raise ConfigError(f"config.{name} must be a string, got {getattr(cfg, name)!r}")
    if cfg.planner.depth > 1024 or cfg.generator.depth > 1024:
        raise ConfigError("config depths are implausibly large; the file's config looks forged or corrupt")
    parts = (cfg.planner, cfg.generator)
    if max(p.patch for p in parts) > 64 or max(p.mlp for p in parts) > 1 << 20 or cfg.latent_channels > 4096 or cfg.planner_downscale > 64:
        raise ConfigError("config patch, MLP, latent or downscale sizes are implausibly large; the file's config looks forged or corrupt")
    if cfg.max_frames > 1024 or cfg.planner.hidden > 65536 or cfg.generator.hidden > 65536:
        raise ConfigError("config sizes are implausibly large; the file's config looks forged or corrupt")


def _paper(name: str, planner_depth: int, planner_mlp: int, attention: str, frames: int) -> MarDiniConfig:
    return MarDiniConfig(
        name=name,
        planner=PlannerConfig(depth=planner_depth, hidden=4096, mlp=planner_mlp, heads=32),
        generator=GeneratorConfig(depth=8, hidden=1024, mlp=4096, heads=16, attention=attention),
        latent_channels=16,
        max_frames=frames,
    )


def _cpu(size: str, attention: str, depth: int, planner: tuple[int, int], generator: tuple[int, int], mlp_ratio: int):
    """Small presets for CPU tests and demos, in the 32-channel TAEF2 / FLUX.2 latent space.

    planner / generator: (hidden, heads).
    """
    return MarDiniConfig(
        name=f"{size}/{attention}",
        planner=PlannerConfig(depth=depth, hidden=planner[0], mlp=mlp_ratio * planner[0], heads=planner[1]),
        generator=GeneratorConfig(
            depth=depth, hidden=generator[0], mlp=mlp_ratio * generator[0], heads=generator[1], attention=attention
        ),
        latent_channels=32,
        max_frames=9,
    )


# Table 5 of the paper: (planner params, generator params) as printed there.
PAPER_PARAMS = {
    "S/ST": (1.3e9, 288e6),
    "L/ST": (3.1e9, 288e6),
    "S/T": (1.3e9, 288e6),
    "L/T": (3.1e9, 288e6),
}

PRESETS: dict[str, MarDiniConfig] = {
    "S/ST": _paper("S/ST", 8, 4096, "ST", 9),
    "L/ST": _paper("L/ST", 16, 8192, "ST", 9),
    "S/T": _paper("S/T", 8, 4096, "T", 17),
    "L/T": _paper("L/T", 16, 8192, "T", 17),
    **{f"tiny/{m}": _cpu("tiny", m, depth=2, planner=(64, 2), generator=(64, 2), mlp_ratio=2) for m in ATTENTION_MODES},
    **{f"small/{m}": _cpu("small", m, depth=4, planner=(256, 4), generator=(192, 3), mlp_ratio=3) for m in ATTENTION_MODES},
    **{f"base/{m}": _cpu("base", m, depth=6, planner=(320, 5), generator=(320, 5), mlp_ratio=4) for m in ATTENTION_MODES},
}


def preset(name: str, **changes) -> MarDiniConfig:
    """The named preset, optionally with top-level fields changed (e.g. latent_channels=32)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**changes) if changes else PRESETS[name]
