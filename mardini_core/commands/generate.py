"""Generate a video from images or a video: image-to-video, interpolation, loops, expansion, any mask.

Examples:
  python -m mardini_core generate --images cat.png --out cat.mp4
  python -m mardini_core generate --task interpolate --images a.png b.png --frames 33 --out ab.gif
  python -m mardini_core generate --task interpolate --images 1.png 2.png 3.png 4.png --frames 128 --out slowmo.mp4
  python -m mardini_core generate --task expand --video clip.mp4 --frames 40 --out longer.mp4
  python -m mardini_core generate --task custom --pattern "x...x...x" --images a.png b.png c.png --out frames/

Clips longer than the model's window are generated hierarchically (keyframes, then interpolation
between neighbours, or overlapping windows past the last given frame); the schedule is printed first.
Images whose sides are not a multiple the model can take are fitted as the ComfyUI nodes' `fit` does
(--fit crop, the default: the largest valid size inside them, centred; resize: the nearest valid size,
scaled), or brought to --size WxH (scaled, then centre-cropped).
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys

import numpy as np
import torch
from einops import rearrange

from .. import masks, precision
from ..checkpoint import load_checkpoint, read_config
from ..default_model import load_default
from ..errors import InputError, MarDiniError
from ..fit import FIT_MODES, fit_images, valid_size
from ..generation import Hooks, Sampling, Window, images_from_hwc, resolve, run_schedule, schedule_windows, size_multiple
from ..generation.settings import SAMPLERS
from ..interpolation import DEFAULT_INTERPOLATOR, DEFAULT_QUALITY, QUALITIES, load_interpolator
from ..vae import load_vae
from ..memory import check_fits, generation_bytes
from ..model.compiled import compile_blocks
from ..video_io import check_fps, check_frame_size, check_output, read_images, read_video, resize_and_crop, write_frames
from ..outputs import exclusive

MAX_SIDE = 8192  # pixels; --size 320000x320000 failed inside OpenCV asking for 1.2 TB
MAX_GUIDANCE = 100.0  # far past any useful value (the paper uses 2.5); larger ones overflow the sampler to NaN


def add_arguments(parser: argparse.ArgumentParser) -> None:
    task = parser.add_argument_group("what to generate")
    task.add_argument("--task", choices=masks.TASKS, default="i2v",
                      help="i2v: animate one image; interpolate: frames between images (spread evenly); loop: a "
                           "seamless loop from one image; expand: continue a clip; custom: --pattern (default: i2v)")
    source = task.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", nargs="+", metavar="IMAGE", help="input image files (PNG, JPG)")
    source.add_argument("--video", metavar="VIDEO", help="input video; its frames are the given frames")
    task.add_argument("--video-frames", type=int, metavar="N",
                      help="read only the first N frames of --video (default: all; the first for i2v and loop)")
    task.add_argument("--frames", type=int, help="output length; may exceed the model's window "
                                                 "(default: the window, one frame less for a loop)")
    task.add_argument("--pattern", help="custom task: one character per frame, x = given, . = generated (e.g. x...x)")
    task.add_argument("--position", default="first",
                      help="i2v: where the image goes: first, middle, last or a frame index (default: first)")
    task.add_argument("--size", metavar="WxH", help="resize and centre-crop the inputs to this size first")
    task.add_argument("--fit", choices=FIT_MODES, default="crop",
                      help="without --size, inputs whose sides the model cannot take: crop (the largest valid size inside, "
                           "centred; default), resize (the nearest valid size, scaled) or off (refused), as the nodes' fit")
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--steps", type=int, default=25, help="sampling steps (default: 25, as in the paper)")
    sampling.add_argument("--sampler", choices=SAMPLERS, default="ddim",
                          help="ddim: the paper's (default); dpmpp_2m: DPM-Solver++(2M), closer in 10 steps to the fully converged "
                               "result than ddim in 25 (eta must be 0)")
    sampling.add_argument("--guidance", type=float,
                          help="classifier-free guidance on the plan; 1 = off (default: 2.5 for i2v and expand, "
                               "off when the first and last frames are given: interpolate, loop)")
    sampling.add_argument("--eta", type=float, default=0.0, help="DDIM noise: 0 deterministic, 1 DDPM-like (default: 0)")
    sampling.add_argument("--fidelity", type=float,
                          help="0 = the full sample .. 1 = the model's mean estimate, one step (default: the model's own: "
                               "0 for the paper's formulation; for anchored models 1 between given frames)")
    sampling.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same video")
    sampling.add_argument("--interpolator", default=DEFAULT_INTERPOLATOR, metavar="NAME_OR_PATH",
                          help="what makes a flow-anchored model's anchor: rife (the embedded RIFE 4.x, default), dis (OpenCV DIS "
                               "flow: no network, fastest), or the path of a RIFE 4.x checkpoint (.safetensors or .pth)")
    sampling.add_argument("--anchor-quality", choices=QUALITIES, default=DEFAULT_QUALITY, dest="anchor_quality",
                          help=f"best = the interpolator asked four ways and averaged (about 3x the time, higher PSNR on "
                               f"nearly every clip, a little softer), fast = once (default: {DEFAULT_QUALITY})")
    sampling.add_argument("--overlap", type=int, help="known frames each expansion window continues from "
                                                      "(default: a quarter of the window)")
    model = parser.add_argument_group("model")
    model.add_argument("--model", metavar="CHECKPOINT", help="a MarDini .safetensors checkpoint (default: the embedded model)")
    model.add_argument("--vae", help="autoencoder to use instead of the one the checkpoint names")
    model.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    model.add_argument("--dtype", choices=precision.CHOICES, default="auto",
                       help="model precision (default: auto = bf16 on a GPU that has it, fp16 on other GPUs, fp32 on the CPU)")
    model.add_argument("--compile", action="store_true",
                       help="torch.compile the transformer blocks (faster from the second window on; needs a C++ compiler "
                            "on the CPU or Triton on CUDA, and runs uncompiled with a warning where it cannot)")
    output = parser.add_argument_group("output")
    output.add_argument("--out", required=True, help="output: name.mp4, name.gif, or a folder for PNG frames")
    output.add_argument("--fps", type=float, default=8.0, help="frames per second of the output (default: 8)")
    output.add_argument("--overwrite", action="store_true", help="replace an existing output")
    output.add_argument("--dry-run", action="store_true", help="print the schedule of model calls and stop")
    output.add_argument("--no-restore-detail", dest="restore_detail", action="store_false",
                        help="decode generated frames as they are, without adding back the detail the VAE drops from the given frames")


def run(args: argparse.Namespace) -> int:
    sampling = Sampling(steps=args.steps, guidance=args.guidance, fidelity=args.fidelity, eta=args.eta, sampler=args.sampler, seed=args.seed)
    if args.dry_run:
        return make_video(args, sampling)
    check_output(args.out, args.overwrite)  # a refusal before the lock and any work
    with exclusive(args.out):  # a second command writing the same output gets one line
        return make_video(args, sampling)


def make_video(args: argparse.Namespace, sampling: Sampling) -> int:
    inputs = read_inputs(args)  # (N, H, W, 3) float in [0, 1]
    if args.dry_run and args.model:  # the schedule needs only the checkpoint's config
        config, model = read_config(args.model), None
    else:
        if not args.dry_run:
            check_output(args.out, args.overwrite)
            check_fps(args.fps)
        device = resolve_device(args.device)
        model = load_model(args.model, device, precision.resolve_dtype(args.dtype, device))
        if args.compile:
            compile_blocks(model)
        config = model.config
    mask = build_mask(args, len(inputs), config.max_frames)
    schedule = schedule_windows(mask.frames, mask.given_indices, config.max_frames, args.overlap)
    schedule_text = schedule.describe()
    if args.task == "loop":
        schedule_text += f"\n  frame {mask.frames - 1} closes the loop (it is frame 0 again) and is not written: {mask.frames - 1} frames out"
    if args.dry_run:
        print(schedule_text)
        return 0
    if len(schedule) > 1:
        print(schedule_text, file=sys.stderr)
    if args.guidance is not None and args.guidance > MAX_GUIDANCE:
        raise InputError(f"--guidance {args.guidance:g} is far too strong (at most {MAX_GUIDANCE:g}; the paper uses 2.5): the sampler would overflow")
    vae = resolve_vae(args.vae or config.vae, device)
    multiple = size_multiple(config, vae.downscale)
    check_budget(args.out, mask.frames, config.max_frames, vae, device, *target_size(*inputs.shape[1:3], multiple, args.size, args.fit))
    images = fit_size(inputs, multiple, args.size, args.fit)[list(mask.sources)]
    interpolator = load_interpolator(args.interpolator, args.anchor_quality, device) if config.anchor == "flow" else None
    guidance = resolve(sampling, mask, config).guidance  # the whole request's, for every window (as printed)
    progress = TextProgress(len(schedule))
    frames = run_schedule(
        schedule, model, vae, images, dataclasses.replace(sampling, guidance=guidance),
        hooks=Hooks(step=progress.step, window=progress.window), restore_detail=args.restore_detail, interpolator=interpolator,
    )
    progress.close()
    if args.task == "loop":
        frames = frames[:-1]  # the last frame repeats the first: drop it so the clip loops seamlessly
    path = write_frames(rearrange(frames, "n c h w -> n h w c").numpy(), args.out, fps=args.fps, overwrite=args.overwrite)
    print(f"wrote {path} ({len(frames)} frames, {frames.shape[-1]}x{frames.shape[-2]}, guidance {guidance:g}, seed {args.seed})")
    return 0


def read_inputs(args: argparse.Namespace) -> np.ndarray:
    if args.images:  # --size applies to each image before their sizes are compared
        return read_images(args.images, size=parse_size(args.size) if args.size else None)
    if args.video_frames is not None and args.video_frames < 1:
        raise InputError(f"--video-frames must be at least 1, got {args.video_frames}")
    frames, _ = read_video(args.video, max_frames=1 if args.task in ("i2v", "loop") else args.video_frames)
    return frames


def build_mask(args: argparse.Namespace, inputs: int, window: int) -> masks.FrameMask:
    """The mask of the whole output (any length); a loop gets one extra frame showing the image again."""
    if args.frames is not None:
        frames = args.frames
    else:  # one model call by default (a loop's extra closing frame included)
        frames = window - 1 if args.task == "loop" else window
    if args.task == "custom":
        mask = masks.for_task("custom", 0, pattern=args.pattern)
        if args.frames is not None and args.frames != mask.frames:
            raise InputError(f"--frames {args.frames} disagrees with the {mask.frames}-frame --pattern; drop --frames")
    else:
        if args.pattern:
            raise InputError("--pattern is for --task custom; drop it or use --task custom")
        if frames < 2:
            raise InputError("give --frames (the output length) of at least 2")
        position = int(args.position) if re.fullmatch(r"-?[0-9]+", args.position) else args.position
        mask = masks.for_task(args.task, frames + (args.task == "loop"), images=inputs, position=position)
    if inputs != mask.images_needed:
        raise InputError(f"--task {args.task} needs {mask.images_needed} input image(s) here, got {inputs}")
    return mask.validate()


def parse_size(size: str) -> tuple[int, int]:
    """--size WxH -> (width, height), each from 1 to MAX_SIDE."""
    try:
        tw, th = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise InputError(f"--size {size!r} must look like 512x512 (width x height)") from None
    if tw <= 0 or th <= 0:
        raise InputError(f"--size {size} must be positive on both sides")
    if max(tw, th) > MAX_SIDE:
        raise InputError(f"--size {size} is too large; at most {MAX_SIDE} pixels a side")
    return tw, th


def target_size(h: int, w: int, multiple: int, size: str | None, fit: str = "crop") -> tuple[int, int]:
    """(width, height) the inputs are brought to: --size, or what --fit makes of them (fit.valid_size)."""
    if size:
        tw, th = parse_size(size)
        if tw % multiple or th % multiple:
            raise InputError(f"--size {size} must be a multiple of {multiple} on both sides for this model")
        return tw, th
    th, tw = valid_size(h, w, multiple, fit)
    return tw, th


def check_budget(out: str, frames: int, window: int, vae, device, width: int, height: int) -> None:
    """Before any resizing or model call: the output format holds the size, and the memory estimate fits."""
    check_frame_size(out, width, height)
    vae_width = getattr(getattr(vae, "config", None), "width", 64)
    check_fits(generation_bytes(frames, min(frames, window), height, width, vae_width), f"generating {frames} frames of {width}x{height}",
               "pass a smaller --size WxH (or fewer --frames)", device)


def fit_size(inputs: np.ndarray, multiple: int, size: str | None, fit: str = "crop") -> torch.Tensor:
    """(N, H, W, 3) -> (N, 3, H', W'): resized and centre-cropped to --size, or fitted as the nodes' `fit`
    does (fit.fit_images: the same pixels from the CLI and from ComfyUI)."""
    if size:
        tw, th = target_size(*inputs.shape[1:3], multiple, size)
        return images_from_hwc(inputs if (th, tw) == inputs.shape[1:3] else resize_and_crop(inputs, tw, th))
    images = images_from_hwc(inputs)
    fitted = fit_images(images, multiple, fit)
    if fitted.shape[-2:] != images.shape[-2:]:
        print(f"note: inputs of {images.shape[-1]}x{images.shape[-2]} are fitted to {fitted.shape[-1]}x{fitted.shape[-2]} "
              f"(--fit {fit}; a multiple of {multiple})", file=sys.stderr)
    return fitted


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"--device {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise InputError(f"--device {name} does not exist; this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def load_model(path: str | None, device: torch.device, dtype: torch.dtype):
    model = load_checkpoint(path, device=device, dtype=dtype) if path else load_default(device, dtype)
    return model.eval()


def resolve_vae(name: str, device: torch.device):
    """The autoencoder named by the checkpoint's config (or --vae), from `mardini_core.vae`."""
    if not name:
        raise MarDiniError(
            "the model does not name the VAE it was trained with; pass --vae taef2 (or a TAEF2 folder, "
            "or a mardini-tae .safetensors file)"
        )
    return load_vae(name, device=device)


class TextProgress:
    """Progress on stderr: a bar redrawn in place on a terminal, one line per window otherwise (logs)."""

    def __init__(self, windows: int, width: int = 30):
        self.windows, self.width, self.current = windows, width, 0
        self.tty = sys.stderr.isatty()

    def window(self, index: int, window: Window) -> None:
        self.current = index + 1

    def step(self, step: int, total: int, _preview) -> None:
        if self.tty:
            bar = "#" * (self.width * step // total)
            print(f"\rwindow {self.current}/{self.windows} [{bar:.<{self.width}}] step {step}/{total}",
                  end="", file=sys.stderr, flush=True)
        elif step == total:
            print(f"window {self.current}/{self.windows} done ({total} steps)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            print(file=sys.stderr)
