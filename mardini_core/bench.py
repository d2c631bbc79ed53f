"""Speed benchmark: a preset with random weights generates one window, VAE included, timed by phase.

Speed does not depend on the weights, so random weights of the real presets measure it honestly;
they are perturbed with seeded noise because MarDini zero-initialises AdaLN (untouched, every block
would add exactly zero). Each repeat encodes the given frames, runs the window's plan and sample stages (`generation`)
(the planner once, the generator's DDIM steps with the reference-frame cache) and decodes the
generated frames with a random-weight autoencoder of mardini-tae's layout.

FLOPs are counted with torch's FlopCounterMode around that same path, so the work the cache saves
(reference frames computed once, not per step) and fidelity's early stop are not counted. MFU is
taken against the device's matmul peak measured in the same process (on any device), and on CUDA
also against the datasheet. Each time is also given in matmul-times: seconds over one 2048^2 fp32
matmul on the CPU measured just before, the unit that stays comparable on a shared, noisy machine.
"""
from __future__ import annotations

import dataclasses
import re
import resource
import statistics
import time
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import ATTENTION_BACKENDS, MarDiniConfig, preset
from .errors import InputError
from .interpolation import load_interpolator
from .memory import check_fits, window_bytes
from .masks import FrameMask, expansion, from_pattern, image_to_video, interpolation
from .model import MarDini
from .model.compiled import compile_blocks, compile_errors, compile_unavailable
from .precision import DTYPES
from .generation import Sampling, decode, encode, plan, resolve, sample, size_multiple
from .generation.sampler import guidance_active
from .vae import TinyAEConfig, TinyAutoencoder
from .vae.distill import DistillConfig

# Dense bf16/fp16 tensor-core peaks in FLOP/s (H100 SXM / H200 and A100 datasheets).
DATASHEET_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
REFERENCE_SIDE = 2048  # the matmul-time unit: one fp32 matmul of this side on the CPU
CUDA_PEAK_SIDE = 8192
WEIGHT_NOISE = 0.02  # std of the seeded perturbation of every weight
VAE_LAYOUT = TinyAEConfig(width=DistillConfig.width, blocks=DistillConfig.blocks, mid_gn=True)  # mardini-tae's
ANCHORS = ("none", "neighbours")  # "flow" needs flow-warped pixels, which random inputs do not have
GIVEN_HELP = "i2v (first frame), interpolate (first and last), a count N (the first N frames) or a pattern such as x...x"


@dataclass(frozen=True)
class Job:
    """One generation setting."""

    preset: str
    width: int = 512
    height: int = 512
    frames: int = 17
    given: str = "i2v"  # GIVEN_HELP
    steps: int = 25
    guidance: float | None = None  # None: the paper's for the mask (2.5 image-to-video, off when both ends are given)
    fidelity: float | None = None  # None: the model's default (generation.resolve)
    dtype: str = "bf16"
    backend: str = "auto"
    compile: bool = False
    anchor: str = "none"
    paper: str = ""  # the paper's figures for the setting (paper_figure), kept when a job is reduced

    def config(self) -> MarDiniConfig:
        """The preset, widened to the job's frames (speed only: the paper ran L/ST at 13 frames too)."""
        cfg = preset(self.preset)
        return cfg.replace(max_frames=max(cfg.max_frames, self.frames), anchor=self.anchor)

    def mask(self) -> FrameMask:
        return given_mask(self.given, self.frames)

    def resolved(self) -> "Job":
        """The job with guidance and fidelity filled in as generation would choose them."""
        settings = resolve(self.sampling(), self.mask(), self.config())
        return dataclasses.replace(self, guidance=settings.guidance, fidelity=settings.fidelity)

    def sampling(self) -> Sampling:
        return Sampling(steps=self.steps, guidance=self.guidance, fidelity=self.fidelity)


def given_mask(given: str, frames: int) -> FrameMask:
    """--given (GIVEN_HELP) and the clip length -> the frame mask."""
    if given == "i2v":
        return image_to_video(frames)
    if given == "interpolate":
        return interpolation(frames)
    if re.fullmatch(r"[0-9]+", given):
        return expansion(frames, int(given))
    mask = from_pattern(given)
    if mask.frames != frames:
        raise InputError(f"--given pattern {given!r} has {mask.frames} frames but --frames is {frames}; make them agree")
    return mask.validate()


def check_job(job: Job) -> Job:
    """Raise InputError / ConfigError / MaskError naming the fix for a job that cannot run; returns it resolved."""
    cfg = job.config()
    job.mask().validate()
    multiple = size_multiple(cfg)
    if job.width % multiple or job.height % multiple or min(job.width, job.height) < multiple:
        fit = lambda side: max(multiple, side // multiple * multiple)
        raise InputError(f"size {job.width}x{job.height} must be a multiple of {multiple} on both sides for {job.preset}; "
                         f"try {fit(job.width)}x{fit(job.height)}")
    if job.dtype not in DTYPES:
        raise InputError(f"dtype {job.dtype!r} is unknown; choose one of {', '.join(DTYPES)}")
    if job.backend not in ATTENTION_BACKENDS:
        raise InputError(f"attention backend {job.backend!r} is unknown; choose one of {', '.join(ATTENTION_BACKENDS)}")
    if job.anchor not in ANCHORS:
        raise InputError(f"the bench runs anchors {', '.join(ANCHORS)}, not {job.anchor!r}")
    return job.resolved()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_seconds(device: torch.device, dtype: torch.dtype, side: int, best_of: int) -> float:
    """Best time of one side x side matmul (after a warm-up)."""
    a, b = (torch.randn(side, side, device=device, dtype=dtype) for _ in range(2))
    a @ b
    times = []
    for _ in range(best_of):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def reference_seconds(best_of: int = 3) -> float:
    """One matmul-time: a 2048^2 fp32 matmul on the CPU."""
    return matmul_seconds(torch.device("cpu"), torch.float32, REFERENCE_SIDE, best_of)


def cuda_peak(device: torch.device, dtype: torch.dtype) -> float:
    """The GPU's matmul FLOP/s now, in the job's dtype at 8192 (on the CPU the peak is the matmul-time's own)."""
    return 2 * CUDA_PEAK_SIDE**3 / matmul_seconds(device, dtype, CUDA_PEAK_SIDE, 10)


def datasheet_peak(device: torch.device, dtype: torch.dtype) -> float | None:
    """Dense tensor-core peak of a known GPU for bf16/fp16 jobs; None elsewhere."""
    if device.type != "cuda" or dtype == torch.float32:
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in DATASHEET_PEAK.items() if key in name), None)


def random_model(job: Job, device: torch.device, seed: int = 0) -> MarDini:
    """The job's preset with default init plus seeded noise on every weight (AdaLN starts at zero)."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = MarDini(job.config())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * WEIGHT_NOISE)
    model = model.to(DTYPES[job.dtype]).eval()
    model.set_attention_backend(job.backend)
    return model


def random_vae(latent_channels: int, device: torch.device, dtype: torch.dtype) -> TinyAutoencoder:
    """mardini-tae's layout with random weights in the model's latent width (speed only)."""
    config = dataclasses.replace(VAE_LAYOUT, latent_channels=latent_channels)
    return TinyAutoencoder("bench", config).to(device, dtype).eval()


@dataclass
class Inputs:
    """Random given frames of a job, and where they go."""

    images: torch.Tensor  # (S, 3, H, W) in [0, 1]
    mask: FrameMask

    @staticmethod
    def of(job: Job, device: torch.device) -> "Inputs":
        mask = job.mask()
        g = torch.Generator().manual_seed(1)
        images = torch.rand(mask.images_needed, 3, job.height, job.width, generator=g)
        return Inputs(images.to(device), mask)


class Stopwatch:
    """Seconds spent in a module's forward calls (forward hooks; CUDA synchronised at both ends)."""

    def __init__(self, module: torch.nn.Module, device: torch.device):
        self.device, self.seconds, self._start = device, 0.0, 0.0
        self.handles = [module.register_forward_pre_hook(self.start), module.register_forward_hook(self.stop)]

    def start(self, *_):
        sync(self.device)
        self._start = time.perf_counter()

    def stop(self, *_):
        sync(self.device)
        self.seconds += time.perf_counter() - self._start

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def generate_once(model: MarDini, vae: TinyAutoencoder, job: Job, inputs: Inputs) -> tuple[float, float]:
    """The window's stages: encode; plan and sample; decode the generated frames -> (vae seconds, model seconds)."""
    device = inputs.images.device
    sync(device)
    start = time.perf_counter()
    window = encode(model, vae, inputs.images, inputs.mask)
    sync(device)
    encoded = time.perf_counter()
    z = sample(model, [window], plan(model, [window]), job.sampling())[0]
    sync(device)
    generated = time.perf_counter()
    decode(vae, z, window, model.config, restore_detail=False)
    sync(device)
    return encoded - start + time.perf_counter() - generated, generated - encoded


def count_flops(model: MarDini, vae: TinyAutoencoder, job: Job, inputs: Inputs) -> tuple[float, float]:
    """(model FLOPs, VAE FLOPs) of one generation along the timed path.

    Counted with SDPA on CUDA (whose fused kernels the counter knows) and with the math backend on
    the CPU (whose flash kernels it does not see), whatever backend the row times.
    """
    device = inputs.images.device
    model.set_attention_backend("sdpa" if device.type == "cuda" else "math")
    with FlopCounterMode(display=False) as counter:
        window = encode(model, vae, inputs.images, inputs.mask)
        encoded = counter.get_total_flops()
        z = sample(model, [window], plan(model, [window]), job.sampling())[0]
        generate = counter.get_total_flops() - encoded
        decode(vae, z, window, model.config, restore_detail=False)
    model.set_attention_backend(job.backend)
    return generate, counter.get_total_flops() - generate


@dataclass(frozen=True)
class Spread:
    """min / median / max over the repeats."""

    min: float
    median: float
    max: float

    @staticmethod
    def of(values: list[float]) -> "Spread":
        return Spread(min(values), statistics.median(values), max(values))


@dataclass
class Row:
    job: Job
    total_s: Spread  # VAE + model
    model_s: Spread  # the plan and sample stages: planner + generator steps
    planner_s: float  # medians from here on
    vae_s: float
    seconds_per_frame: float  # median total over generated frames
    total_matmul_times: Spread
    model_matmul_times: Spread
    model_tflop: float
    vae_tflop: float
    peak_tflops: float  # the device's matmul peak measured in this run (CPU: median of the repeats' references)
    mfu: float  # median over repeats of (model + VAE) FLOPs / seconds / measured peak
    model_floor_share: float  # median over repeats of model FLOPs / measured peak / model seconds: how near its FLOP floor
    mfu_datasheet: float | None
    peak_memory_gb: float | None
    compiled: str  # "no", "yes" or "failed: reason" (the row then ran uncompiled)

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self.job), **{k: v for k, v in dataclasses.asdict(self).items() if k != "job"}}


def run(job: Job, device: torch.device, repeats: int = 5) -> Row:
    """Time `repeats` generations after one warm-up; matmul-times are per repeat against a fresh reference."""
    job = check_job(job)
    check_fits(window_bytes(job.frames, job.height, job.width, VAE_LAYOUT.width, job.config().generator.hidden),
               f"a {job.preset} window of {job.frames} frames at {job.width}x{job.height}", "lower --size or --frames", device, whole=True)
    dtype = DTYPES[job.dtype]
    model = random_model(job, device)
    vae = random_vae(model.config.latent_channels, device, dtype)
    inputs = Inputs.of(job, device)
    model_flops, vae_flops = count_flops(model, vae, job, inputs)
    compiled = "no"
    if job.compile:
        compiled = "yes" if compile_blocks(model, device) else f"failed: {compile_unavailable(device)}"
    generate_once(model, vae, job, inputs)  # warm-up (and compilation; a block that fails runs eagerly)
    if compile_errors(model):
        compiled = f"failed: {compile_errors(model)[0]}"[:200]
    gpu_peak = cuda_peak(device, dtype) if device.type == "cuda" else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    clock = Stopwatch(model.planner, device)
    samples = []  # (reference, vae, model, planner) seconds per repeat
    for _ in range(repeats):
        reference = reference_seconds()
        clock.seconds = 0.0
        vae_s, model_s = generate_once(model, vae, job, inputs)
        samples.append((reference, vae_s, model_s, clock.seconds))
    clock.remove()
    if device.type == "cuda":
        peak_memory = torch.cuda.max_memory_allocated(device) / 1e9
    else:
        peak_memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # the process's peak RSS so far (kB -> GB)
    totals = [v + m for _, v, m, _ in samples]
    total = statistics.median(totals)
    flops = model_flops + vae_flops
    # the CPU's peak is its fp32 2048^2 matmul, measured just before each repeat (the load drifts)
    peaks = [gpu_peak or 2 * REFERENCE_SIDE**3 / r for r, *_ in samples]
    sheet = datasheet_peak(device, dtype)
    return Row(
        job=job,
        total_s=Spread.of(totals),
        model_s=Spread.of([m for _, _, m, _ in samples]),
        planner_s=statistics.median(p for *_, p in samples),
        vae_s=statistics.median(v for _, v, _, _ in samples),
        seconds_per_frame=total / len(inputs.mask.generated_indices),
        total_matmul_times=Spread.of([(v + m) / r for r, v, m, _ in samples]),
        model_matmul_times=Spread.of([m / r for r, _, m, _ in samples]),
        model_tflop=model_flops / 1e12,
        vae_tflop=vae_flops / 1e12,
        peak_tflops=statistics.median(peaks) / 1e12,
        mfu=statistics.median(flops / t / p for t, p in zip(totals, peaks)),
        model_floor_share=statistics.median(model_flops / m / p for (_, _, m, _), p in zip(samples, peaks)),
        mfu_datasheet=flops / total / sheet if sheet else None,
        peak_memory_gb=peak_memory,
        compiled=compiled,
    )


def reduced(job: Job) -> Job:
    """A paper job shrunk for a CPU try: its planner size's small preset (L -> small, S -> tiny), sides / 8."""
    size, mode = job.preset.split("/")
    small = {"L": "small", "S": "tiny"}.get(size, size)
    shrink = lambda side: max(64, side // 8 // 32 * 32)
    return dataclasses.replace(job, preset=f"{small}/{mode}", width=shrink(job.width), height=shrink(job.height))


# The paper's figures for image-to-video jobs (first frame given) by (preset, frames, side), quoted
# with their setting. Table 2 names no preset: its asymmetric attention is the DM's /T against the
# planner's ST (paper §4: "MarDini-L/T employs an asymmetric attention mechanism"); the 3B planner is assumed.
TABLE2 = {
    ("L/T", 13, 512): "asymmetric attention and resolution, 13 (1 to 12) frames at [512x512]: 6.05 s, 42.57 G",
    ("L/ST", 13, 512): "symmetric attention, asymmetric resolution, 13 (1 to 12) frames at [512x512]: 34.58 s, 62.51 G",
    ("L/ST", 9, 512): "symmetric attention, asymmetric resolution, 9 (1 to 8) frames at [512x512]: 17.91 s, 41.03 G",
}
TABLE4 = {  # latency in s/frame
    ("L/ST", 9, 512): 2.24, ("S/ST", 9, 512): 2.24, ("L/T", 17, 512): 0.48, ("S/T", 17, 512): 0.46,
    ("L/T", 17, 768): 1.01, ("S/T", 17, 768): 0.98, ("L/T", 17, 1024): 1.80, ("S/T", 17, 1024): 1.77,
}


def paper_figure(job: Job) -> str:
    """The paper's figures for the job's setting ('' if it has none)."""
    if job.given != "i2v" or job.width != job.height:
        return ""
    key = (job.preset, job.frames, job.width)
    figures = []
    if key in TABLE2:
        figures.append(f"Table 2 (one A100, bf16, DDIM 25), {TABLE2[key]}")
    if key in TABLE4:
        figures.append(f"Table 4 (VBench i2v latency), MarDini-{job.preset}-{job.frames} [{job.width}x{job.width}]: {TABLE4[key]:.2f} s/frame")
    return "; ".join(figures)


def suites() -> dict[str, list[Job]]:
    """Named job lists: the paper's Tables 2 and 4 (GPU), attention backends, compile, fp16, small CPU
    presets, issue 12's bar window, and that window's three masks (interpolation, image to video with
    guidance, expansion from 3 frames: the windows a long video is made of) for the generator's floor share."""
    table2 = [Job(p, s, s, k) for p, k, s in TABLE2]
    window = Job("small/T", 448, 256, 9, "interpolate", steps=10, fidelity=0.0, dtype="fp32", anchor="neighbours")
    lt = table2[0]
    return {
        "table2": table2,
        "table4": [Job(p, s, s, k) for p, k, s in TABLE4],
        "backends": [dataclasses.replace(lt, backend=b) for b in ("sdpa", "xformers", "math")],
        "compile": [dataclasses.replace(lt, compile=True)],
        "memory": [dataclasses.replace(lt, dtype="fp16")],
        "cpu": [Job(p, 256, 256, 9, steps=4, dtype="fp32", backend=b) for p in ("small/T", "small/ST") for b in ("sdpa", "math")],
        "window": [window],
        "efficiency": [window, dataclasses.replace(window, given="i2v", guidance=2.5), dataclasses.replace(window, given="3")],
    }


def identity_attention_rows(job: Job, device: torch.device, calls: int = 5) -> list[dict]:
    """Identity Attention fast path against the dense-mask reference at the generator's real shapes
    for the job (tokens per frame from the size, heads and head size from the preset, CFG batch)."""
    from .model.attention import FrameGroups, identity_attention, identity_attention_dense

    g = job.config().generator
    tokens = (job.height // 8 // g.patch) * (job.width // 8 // g.patch)
    heads, head_dim = g.heads, g.hidden // g.heads
    batch = 2 if guidance_active(job.resolved().guidance) else 1
    temporal = g.attention == "T"
    dtype = DTYPES[job.dtype]
    q, k, v = (torch.randn(batch, job.frames, tokens, heads, head_dim, device=device, dtype=dtype) for _ in range(3))
    masked = job.mask().to_tensor(batch, device)
    rows = []
    for name, fn in (
        ("gather (fast)", lambda: identity_attention(q, k, v, FrameGroups(masked, split=True), temporal=temporal)),
        ("dense mask", lambda: identity_attention_dense(q, k, v, masked, temporal=temporal)),
    ):
        fn()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(calls):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - start)
        rows.append({"impl": name, "preset": job.preset, "batch": batch, "frames": job.frames, "tokens_per_frame": tokens,
                     "heads": heads, "head_dim": head_dim, "temporal": temporal, "ms": dataclasses.asdict(Spread.of([t * 1e3 for t in times])),
                     "peak_memory_gb": torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None})
    return rows


ANCHOR_CHOICES = (("dis", "fast"), ("rife", "fast"), ("rife", "best"))  # (interpolator, quality) rows of the anchor suite


def anchor_rows(width: int, height: int, frames: int, device: torch.device, repeats: int) -> list[dict]:
    """Each interpolator making the anchor of a window with both ends given (frames - 2 generated frames):
    seconds and matmul-times per generated frame, GFLOP per frame (the networks' convolutions, counted with
    FlopCounterMode; DIS runs in OpenCV and counts none) and the share of its FLOP floor at the measured peak."""
    g = torch.Generator().manual_seed(2)
    first, last = (torch.rand(height, width, 3, generator=g).numpy() for _ in range(2))
    times = [k / (frames - 1) for k in range(1, frames - 1)]
    rows = []
    for name, quality in ANCHOR_CHOICES:
        interpolator = load_interpolator(name, quality, device)
        make = lambda: interpolator.pair(first, last).at(times)  # noqa: E731
        with FlopCounterMode(display=False) as counter:
            make()  # also the warm-up
        samples = []
        for _ in range(repeats):
            reference = reference_seconds()
            sync(device)
            start = time.perf_counter()
            make()
            sync(device)
            samples.append((reference, (time.perf_counter() - start) / len(times)))
        seconds = statistics.median(s for _, s in samples)
        flops = counter.get_total_flops() / len(times)
        peak = cuda_peak(device, torch.float32) if device.type == "cuda" else statistics.median(2 * REFERENCE_SIDE**3 / r for r, _ in samples)
        rows.append({"interpolator": name, "quality": quality, "width": width, "height": height, "frames": len(times),
                     "seconds_per_frame": seconds, "matmul_times_per_frame": statistics.median(s / r for r, s in samples),
                     "gflop_per_frame": flops / 1e9, "floor_share": flops / peak / seconds if flops else None})
    return rows
