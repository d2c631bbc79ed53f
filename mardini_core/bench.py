"""Speed and memory benchmark: a preset with random weights generates one clip, timed by phase.

Speed does not depend on the weights, so random weights of the real presets measure it honestly.
Each row: preset, resolution, frames, steps, guidance, dtype, attention backend, compile, total
latency, seconds per generated frame, planner vs generator time, peak memory, model FLOPs and MFU
(model FLOPs per second over the device's dense bf16 peak; counted with torch's FlopCounterMode).
"""
from __future__ import annotations

import dataclasses
import resource
import time
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import preset
from .masks import from_indices
from .model import MarDini
from .pipeline import plan, sample
from .sampler import guidance_active

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# Dense bf16 tensor-core peaks in FLOP/s for MFU (H100 SXM / H200 and A100 datasheets).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


@dataclass(frozen=True)
class Job:
    preset: str
    size: int = 512  # pixel side of the generated frames (the DM's resolution)
    frames: int = 17
    given: int = 1  # image-to-video: the first `given` frames are references
    steps: int = 25
    guidance: float = 2.5
    dtype: str = "bf16"
    backend: str = "auto"
    compile: bool = False
    offload_planner: bool = False  # move the planner to the CPU once it has run (small-card mode)


@dataclass
class Row:
    job: Job
    total_s: float
    planner_s: float
    generator_s: float
    seconds_per_frame: float
    peak_memory_gb: float | None
    tflops: float
    mfu: float | None

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self.job), **{k: v for k, v in dataclasses.asdict(self).items() if k != "job"}}


def device_peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_FLOPS.items() if key in name), None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(model: MarDini, job: Job, device: torch.device):
    cfg = model.config
    side = job.size // 8
    high = torch.randn(1, job.frames, cfg.latent_channels, side, side, device=device)
    low = torch.randn(1, job.frames, cfg.latent_channels, side // cfg.planner_downscale, side // cfg.planner_downscale, device=device)
    return high, low, from_indices(job.frames, range(job.given)).to_tensor(device=device)


def count_flops(model: MarDini, job: Job, device: torch.device) -> float:
    """Model FLOPs of one generation: one planner call plus `steps` generator calls (x2 with guidance).

    Counted with SDPA on CUDA (whose fused kernels the counter knows) and with the math backend on
    the CPU (where it does not), so the count is the same whatever backend the row times.
    """
    high, low, masked = _inputs(model, job, device)
    model.set_attention_backend("sdpa" if device.type == "cuda" else "math")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        signal = model.planner(low, masked)
        planner_flops = counter.get_total_flops()
        cfg_batch = 2 if guidance_active(job.guidance) else 1
        model.generator(high.repeat(cfg_batch, 1, 1, 1, 1), torch.ones(cfg_batch, device=device),
                        signal.repeat(cfg_batch, 1, 1, 1), masked.repeat(cfg_batch, 1))
        generator_flops = counter.get_total_flops() - planner_flops
    model.set_attention_backend(job.backend)
    return planner_flops + job.steps * generator_flops


def run(job: Job, device: torch.device, repeats: int = 2) -> Row:
    """Build the preset with random weights and time `repeats` generations after one warm-up."""
    cfg = preset(job.preset)
    if job.frames > cfg.max_frames:
        cfg = cfg.replace(max_frames=job.frames)
    with torch.device(device):
        model = MarDini(cfg).to(DTYPES[job.dtype]).eval()
    flops = count_flops(model, job, device)
    if job.compile:
        model.planner.compile()
        model.generator.compile()
    high, low, masked = _inputs(model, job, device)
    timings = []
    for _ in range(repeats + 1):  # the first run warms up kernels (and compiles)
        model.planner.to(device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        _sync(device)
        start = time.perf_counter()
        signal = plan(model, low, masked)
        if job.offload_planner:
            model.planner.to("cpu")
        _sync(device)
        mid = time.perf_counter()
        sample(model, high, masked, signal, steps=job.steps, guidance=job.guidance)
        _sync(device)
        timings.append((mid - start, time.perf_counter() - mid))
    planner_s, generator_s = (min(t[i] for t in timings[1:]) for i in (0, 1))
    total = planner_s + generator_s
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 1e9
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # whole process's peak RSS so far (kB -> GB)
    peak_flops = device_peak_flops(device)
    return Row(
        job=job,
        total_s=total,
        planner_s=planner_s,
        generator_s=generator_s,
        seconds_per_frame=total / (job.frames - job.given),
        peak_memory_gb=peak,
        tflops=flops / 1e12,
        mfu=(flops / total / peak_flops) if peak_flops else None,
    )


def suites(device: torch.device) -> dict[str, list[Job]]:
    """The paper's Table 2 and Table 4 jobs (GPU) and the small presets at 256 (CPU)."""
    table2 = [Job("L/T", 512, 13, 1), Job("L/ST", 512, 13, 1)]
    table4 = [Job(p, s, 17, 1) for p in ("L/T", "S/T") for s in (512, 768, 1024)]
    backends = [dataclasses.replace(table2[0], backend=b) for b in ("sdpa", "xformers", "math")]
    compiled = [dataclasses.replace(table2[0], compile=True)]
    memory = [dataclasses.replace(table2[0], offload_planner=True), dataclasses.replace(table2[0], dtype="fp16")]
    cpu = [Job(p, 256, 9, 1, steps=4, dtype="fp32", backend=b) for p in ("small/T", "small/ST") for b in ("sdpa", "math")]
    return {"table2": table2, "table4": table4, "backends": backends, "compile": compiled, "memory": memory, "cpu": cpu}


def identity_attention_rows(device: torch.device, dtype: torch.dtype) -> list[dict]:
    """Identity Attention fast path against the dense-mask reference: time and peak memory."""
    from .model.attention import FrameGroups, identity_attention, identity_attention_dense

    rows = []
    shapes = [(13, 272, 32, 128)] if device.type == "cuda" else [(9, 64, 4, 64)]
    for frames, tokens, heads, dim in shapes:
        q, k, v = (torch.randn(1, frames, tokens, heads, dim, device=device, dtype=dtype) for _ in range(3))
        masked = torch.ones(1, frames, dtype=torch.bool, device=device)
        masked[:, 0] = False
        for name, fn in (
            ("gather (fast)", lambda: identity_attention(q, k, v, FrameGroups(masked), temporal=False)),
            ("dense mask", lambda: identity_attention_dense(q, k, v, masked, temporal=False)),
        ):
            fn()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            _sync(device)
            start = time.perf_counter()
            for _ in range(5):
                fn()
            _sync(device)
            peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
            rows.append({"impl": name, "frames": frames, "tokens_per_frame": tokens,
                         "ms": (time.perf_counter() - start) / 5 * 1e3, "peak_memory_gb": peak})
    return rows
