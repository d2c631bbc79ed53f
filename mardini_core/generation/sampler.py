"""Sampling of the DM generator on v-prediction, with classifier-free guidance on the plan.

Two samplers go from t = 1 (pure noise) to 0: "ddim" (the paper's, the default), in evenly spaced
times, and "dpmpp_2m", DPM-Solver++(2M) (Lu et al. 2022), a second-order multistep solver of the
same deterministic sampling path that reuses the previous step's clean prediction, in times evenly
spaced in log-SNR, so fewer generator calls reach what 25 DDIM steps reach.

The planner's signal is computed once by the caller and reused at every step (the paper's
asymmetric design: heavy planner once per clip, light generator once per step); what else stays
fixed (the reference frames' states, the plan's cross-attention keys and values) is cached once per
window too (`sampling_cache`), so each step computes only the masked frames.
Reference frames are re-inserted clean after every step, so they come back bit-exact. An anchored
model diffuses masked frames as a residual from their anchor (anchor.py).

Fidelity f in [0, 1] trades the sample's variety for its expected value: the first step's clean
prediction (at t = 1, the model's mean estimate of the residual given the references and the plan)
is blended with the finished sample, f * mean + (1 - f) * sample. f = 0 is the full sample (with
"ddim", the paper's DDIM exactly); f = 1 stops after that first step (one generator call). A
residual sampled with the wrong content costs more than it adds, so anchored models interpolate at
high fidelity (`settings.resolve`).
`mean_scale` < 1 shrinks the mean estimate towards the anchor (an anchored model's calibration
between given frames, `settings.resolve`); at f = 1 with mean_scale 0 the result is the anchor itself
(`Resolved.keeps_anchor`), so the generator is not called at all.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ..anchor import diffusion_offset
from ..errors import GenerationInterrupted, InputError
from ..noise_schedule import alpha_sigma, predict_x0_eps
from .settings import NO_HOOKS, Hooks, Resolved

# dpmpp_2m's times: evenly spaced in log-SNR (DPM-Solver's spacing for few steps) over a span that at 10
# steps is Stable Diffusion's noise range, sigma / alpha from 14.6 to 0.03 (what ComfyUI's dpmpp_2m walks
# there), and widens with the fourth root of the steps so that more steps reach the exact sampling path
# (a fixed span stops short at both ends); the grid's ends then move to t = 1 and 0, where the log-SNR
# is infinite. Chosen on exact Gaussian models (tests/test_sampler.py) and on the model's own converged
# path (DDIM 200 steps), never on the eval's scores.
SPAN_AT_10_STEPS = (-math.log(14.6), -math.log(0.03))
MIN_LOG_SNR = -10.0  # lower ones round to t = 1 (pure noise) in float32


def sampling_times(steps: int, sampler: str = "ddim") -> torch.Tensor:
    """steps + 1 diffusion times from 1 (pure noise) down to 0 (clean): evenly spaced for "ddim"."""
    if sampler == "ddim":
        return torch.linspace(1.0, 0.0, steps + 1)
    low, high = SPAN_AT_10_STEPS
    centre, half = (low + high) / 2, (high - low) / 2 * (steps / 10) ** 0.25
    times = time_of_log_snr(torch.linspace(max(centre - half, MIN_LOG_SNR), centre + half, steps + 1))
    times[0], times[-1] = 1.0, 0.0
    return times


def guidance_active(guidance: float) -> bool:
    """Guidance 1 (the conditional prediction alone) and 0 (the UI convention for "off") skip CFG."""
    return guidance not in (0.0, 1.0)


def _cfg_batch(model, z: torch.Tensor, plan: torch.Tensor | None, masked: torch.Tensor, guidance: float):
    """Generator inputs, doubled into (conditional, unconditional) halves when guidance is active."""
    if plan is None or not guidance_active(guidance):
        return z, plan, masked
    return torch.cat([z, z]), torch.cat([plan, model.generator.uncond_plan_like(plan)]), torch.cat([masked, masked])


def guided_velocity(model, z_t, t, plan, masked, guidance: float, cache=None, anchor=None) -> torch.Tensor:
    """v = v_uncond + g (v_cond - v_uncond), conditional and unconditional in one batched call (the halves share
    latents, times and anchor, so with a cache the generator's first block runs its first sub-layers once for both)."""
    z, p, m = _cfg_batch(model, z_t, plan, masked, guidance)
    a = None if anchor is None else anchor.repeat(z.shape[0] // anchor.shape[0], 1, 1, 1, 1)
    v = model.generator(z, t.repeat(z.shape[0] // t.shape[0]), p, m, cache=cache, anchor=a).float()
    if z.shape[0] == z_t.shape[0]:
        return v
    v_cond, v_uncond = v.chunk(2)
    return v_uncond + guidance * (v_cond - v_uncond)


def draw_noise(shape: torch.Size, generator: torch.Generator | Sequence[torch.Generator] | None) -> torch.Tensor:
    """Standard normal noise (B, ...) on the CPU. A sequence of B generators draws each clip from its own,
    so a batch of windows gets exactly the noise each window gets when sampled alone."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator)
    if len(generator) != shape[0]:
        raise InputError(f"{len(generator)} random generators for a batch of {shape[0]} clips; give one per clip")
    return torch.stack([torch.randn(shape[1:], generator=g) for g in generator])


def sampling_cache(model, reference: torch.Tensor, plan: torch.Tensor | None, masked: torch.Tensor, guidance: float):
    """The generator's cache of what stays fixed across steps (reference frames' states, the plan's
    cross-attention keys and values), or None when the clips of a batch differ in mask.

    Built with the same CFG batching as the steps.
    """
    if (masked != masked[:1]).any():
        return None
    z, p, m = _cfg_batch(model, reference, plan, masked, guidance)
    return model.generator.sampling_cache(z, p, m, unconditional=z.shape[0] - reference.shape[0])


def ddim_step(y0: torch.Tensor, eps: torch.Tensor, t_now, t_next, eta: float, noise: Callable[[], torch.Tensor]) -> torch.Tensor:
    """DDIM (Song et al. 2021) in (alpha, sigma) form; eta = 0 deterministic, eta = 1 DDPM-like."""
    (a_now, s_now), (a_next, s_next) = alpha_sigma(t_now), alpha_sigma(t_next)
    spread = eta * (s_next / s_now) * (1 - (a_now / a_next) ** 2).clamp(min=0).sqrt()
    y = a_next * y0 + (s_next**2 - spread**2).clamp(min=0).sqrt() * eps
    if spread > 0:
        y = y + spread * noise()
    return y


def log_snr(t: torch.Tensor) -> torch.Tensor:
    """lambda = log(alpha / sigma): -inf at t = 1 (alpha is 0 there, -4e-8 in float32) and +inf at t = 0."""
    a, s = alpha_sigma(t)
    return a.clamp(min=0).log() - s.log()


def time_of_log_snr(lam: torch.Tensor) -> torch.Tensor:
    """The time whose log-SNR is lam: sigma / alpha = tan(pi t / 2) = exp(-lam)."""
    return torch.atan(torch.exp(-lam)) * (2 / math.pi)


def dpmpp_2m_step(y: torch.Tensor, y0: torch.Tensor, previous_y0: torch.Tensor | None, times: torch.Tensor, i: int) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) from times[i] to times[i + 1]: z at the next time.

    The data-prediction update is a DDIM step taken with the corrected clean estimate
    D = y0 + h / (2 h_prev) (y0 - previous_y0), h the step in log-SNR. The first step has no history,
    and the second's h_prev is infinite (from t = 1), so both are first order (DDIM's update); so is
    the last (to sigma = 0, an infinite h), which returns D = y0: a plain clean sample.
    """
    (a_now, s_now), (a_next, s_next) = alpha_sigma(times[i]), alpha_sigma(times[i + 1])
    d = y0
    if previous_y0 is not None and s_next > 0:
        lam_prev, lam_now, lam_next = log_snr(times[i - 1 : i + 2])
        d = y0 + (lam_next - lam_now) / (2 * (lam_now - lam_prev)) * (y0 - previous_y0)
    return a_next * d + (s_next / s_now) * (y - a_now * d)


@torch.no_grad()
def denoise(
    model,
    reference: torch.Tensor,
    masked: torch.Tensor,
    plan: torch.Tensor | None,
    settings: Resolved = Resolved(),
    *,
    flow: torch.Tensor | None = None,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    hooks: Hooks = NO_HOOKS,
) -> torch.Tensor:
    """Denoise the masked frames of `reference` (B, K, C, H, W) model-space latents -> same shape.

    `reference` holds the given frames (the content of masked frames is ignored); `masked` (B, K) is
    True for frames to generate; `plan` is the planner's signal (None = unconditional); `flow`: the
    flow anchor's latents, like `reference` (flow-anchored models only). All noise is drawn from
    `generator` (or one generator per clip, `draw_noise`) on the CPU, so a seed gives the same result
    on every device. `settings`: steps, guidance, eta, fidelity, mean_scale and sampler (settings.py).
    """
    steps, guidance, eta, fidelity, mean_scale, sampler = (
        settings.steps, settings.guidance, settings.eta, settings.fidelity, settings.mean_scale, settings.sampler)
    callback, should_stop = hooks.step, hooks.should_stop
    times = sampling_times(steps, sampler)
    reference = reference.float()
    generated = masked[:, :, None, None, None]  # (B, K, 1, 1, 1): True on the frames the sampler writes

    def noise() -> torch.Tensor:
        return draw_noise(reference.shape, generator).to(reference.device)

    offset = diffusion_offset(reference, masked, model.config, flow)  # masked frames are offset + the diffused y

    def clip(y: torch.Tensor) -> torch.Tensor:
        return torch.where(generated, offset + y, reference)

    if settings.keeps_anchor:  # 0 x the mean residual and nothing sampled: the offset, bit for bit, without a model call
        out = clip(torch.zeros_like(reference))
        if callback is not None:
            callback(1, 1, out)
        return out
    y = noise()
    cache = sampling_cache(model, reference, plan, masked, guidance)
    run = 1 if fidelity >= 1 else steps
    previous_y0 = None  # the last step's clean prediction (dpmpp_2m's history)
    for i in range(run):
        if should_stop is not None and should_stop():
            raise GenerationInterrupted(f"generation stopped at step {i} of {run}")
        t_now, t_next = times[i], times[i + 1]
        t = torch.full((y.shape[0],), float(t_now), device=y.device)
        v = guided_velocity(model, clip(y), t, plan, masked, guidance, cache, offset)
        y0, eps = predict_x0_eps(y, v, t)
        if i == 0:
            mean = mean_scale * y0  # the model's mean estimate of the residual (t = 1)
        if fidelity >= 1:
            y = mean
            if callback is not None:
                callback(1, 1, clip(y))
            break
        if sampler == "ddim":
            y = ddim_step(y0, eps, t_now, t_next, eta, noise)
        else:
            y, previous_y0 = dpmpp_2m_step(y, y0, previous_y0, times, i), y0
        if callback is not None:
            callback(i + 1, steps, clip(y0))
    return clip(y if fidelity == 0 else fidelity * mean + (1 - fidelity) * y)
