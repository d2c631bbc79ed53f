"""How a window is sampled, as one value, and the one place a model's per-mask defaults are decided.

`Sampling` is made (and validated) once where a request enters (CLI flags, node widgets, eval, bench)
and passed down whole; `None` in it means "the model's own default for the window's mask", which
`resolve` decides. `Hooks` carries what the caller wants to hear (progress) and say (stop).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable

import torch

from ..config import MarDiniConfig
from ..errors import InputError
from ..masks import FrameMask

SAMPLERS = ("ddim", "dpmpp_2m")  # ComfyUI's names for the same solvers (sampler.py)
MAX_STEPS = 10_000  # more would only allocate (steps=10**12 asked torch for 4 TB) and never finish
PAPER_GUIDANCE = 2.5  # the paper's guidance where a generated end has no given frame beyond it (Appendix B)

# callback(step, total, x0_preview (B, K, C, H, W) model-space latents with references in place; None for a long
# video's window made in pixels (window.made_in_pixels), which has no latents and reports one pass)
StepCallback = Callable[[int, int, torch.Tensor | None], None]


def check(settings: "Sampling | Resolved") -> None:
    """Raise InputError for settings that cannot run, where they are made (before any model work);
    None (the model's default) passes."""
    steps, sampler, eta = settings.steps, settings.sampler, settings.eta
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise InputError(f"steps must be a positive integer up to {MAX_STEPS}, got {steps!r}; the paper uses 25")
    defaults = {"guidance", "fidelity"} if isinstance(settings, Sampling) else set()  # None: the model's own
    for name in ("guidance", "eta", "fidelity") + (("mean_scale",) if isinstance(settings, Resolved) else ()):
        value = getattr(settings, name)
        if value is None and name in defaults:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise InputError(f"{name} must be >= 0 and finite, got {value!r}")
    if settings.fidelity is not None and settings.fidelity > 1:
        raise InputError(f"fidelity must lie in 0..1 (0 = the full sample, 1 = the model's mean estimate), got {settings.fidelity!r}")
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise InputError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if sampler != "ddim" and eta != 0:
        raise InputError(f"eta must be 0 with sampler {sampler} (it adds no noise on the way); use sampler ddim for eta > 0")


def check_seed(seed) -> None:
    """Raise InputError for a seed no random generator takes (a request's, or a long video's window's)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**64:
        raise InputError(f"seed must be an integer from -2**63 to 2**64 - 1, got {seed!r}")


@dataclass(frozen=True)
class Sampling:
    """The sampler's settings for one request. guidance, fidelity: None = the model's default for each
    window's mask (`resolve`); seed: the first window's (window i of a long video uses seed + i)."""

    steps: int = 25
    guidance: float | None = None
    fidelity: float | None = None  # 0 = the full sample, 1 = the model's mean estimate (sampler.py)
    eta: float = 0.0
    sampler: str = "ddim"
    seed: int = 0

    guidance_follows_mask: bool = False  # guidance off (1.0) where both ends are given, as set elsewhere (the Sampler node's)

    def __post_init__(self) -> None:
        check(self)
        check_seed(self.seed)


@dataclass(frozen=True)
class Hooks:
    """What a caller hears and says while a request runs: `step` after every sampler step (progress, previews),
    `window` before each window of a long video, `should_stop` asked between steps and stages (True = stop)."""

    step: StepCallback | None = None
    window: Callable[[int, object], None] | None = None
    should_stop: Callable[[], bool] | None = None


NO_HOOKS = Hooks()


@dataclass(frozen=True)
class Resolved:
    """A window's sampling with every default decided: what the sampler runs (sampler.denoise; the noise
    comes from the generators the caller seeds)."""

    steps: int = 25
    guidance: float = 1.0
    fidelity: float = 0.0
    mean_scale: float = 1.0  # the share of an anchored model's mean residual kept (sampler.py)
    eta: float = 0.0
    sampler: str = "ddim"

    def __post_init__(self) -> None:
        check(self)

    @property
    def keeps_anchor(self) -> bool:
        """The sample is its anchor whatever the networks say: none of the mean residual is kept and nothing
        sampled is mixed in (fidelity 1, mean_scale 0: the default model wherever its anchor moves), so neither
        the planner nor the generator runs (sampler.denoise, window.plan_for)."""
        return self.fidelity >= 1 and self.mean_scale == 0


def closed(mask: FrameMask) -> bool:
    """Both ends given: every generated frame lies between given frames (interpolation, loop)."""
    return mask.given[0] and mask.given[-1]


def moving_anchor(mask: FrameMask, config: MarDiniConfig) -> bool:
    """Every generated frame's anchor carries motion: between given frames, or, for the flow anchor, past
    an end the motion of the two given frames nearest it continued (interpolation/anchors.py). Around a
    still copy of a given frame (image-to-video; past the ends for the neighbour blend) it does not."""
    return closed(mask) or (config.anchor == "flow" and len(mask.given_indices) >= 2)


def resolve(sampling: Sampling, mask: FrameMask, config: MarDiniConfig) -> Resolved:
    """The one place a model's per-mask defaults are decided (a new one touches only this function).

    - guidance: the paper's 2.5 where an end is generated; none (1.0) when both ends are given (also for
      a set guidance that follows the mask).
    - fidelity: 0 (the paper's DDIM) for models without an anchor. Where the anchor moves
      (`moving_anchor`) an anchored model returns its mean residual (1): a sampled residual with the
      wrong content costs more than it adds (on 16 training clips, expansion from 3 given frames scored
      34.85 dB at 1 and 32.40 at 0.8, below the last frame held still). Around a still copy of the one
      given frame (image-to-video) the residual is the motion, and the mean of many futures stands still,
      so there the model's calibrated `open_fidelity` mixes in the sample.
    - mean_scale: the model's calibrated `mean_scale` where the anchor moves; all of the mean residual
      around a still copy, where the residual is the motion.
    """
    moving = moving_anchor(mask, config)
    if sampling.guidance is None:
        guidance = 1.0 if closed(mask) else PAPER_GUIDANCE
    else:
        guidance = 1.0 if sampling.guidance_follows_mask and closed(mask) else sampling.guidance
    if sampling.fidelity is not None:
        fidelity = sampling.fidelity
    elif config.anchor == "none":
        fidelity = 0.0
    else:
        fidelity = 1.0 if moving else config.open_fidelity
    return Resolved(
        steps=sampling.steps,
        guidance=guidance,
        fidelity=fidelity,
        mean_scale=config.mean_scale if moving else 1.0,
        eta=sampling.eta,
        sampler=sampling.sampler,
    )
