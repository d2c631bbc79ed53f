"""Speed table: presets with random weights generate one window (VAE included), timed per phase.

A custom job from flags runs as one row:
  python -m mardini_core bench --preset small/T --size 448x256 --frames 9 --given interpolate --steps 10
Suites (the flags you also give replace those fields in every job of the suite):
  table2   the paper's Table 2 jobs (L/T-13 and L/ST-13, L/ST-9 at 512), its figures beside ours
  table4   the paper's Table 4 jobs (/T-17 at 512/768/1024, /ST-9 at 512), its s/frame beside ours
  backends, compile, memory   L/T-13 at 512 with sdpa / xformers / math, torch.compile, fp16
  cpu      small presets at 256, sdpa and math
  window   issue 12's bar: small/T, neighbours anchor, 9 frames with both ends given, 448x256, 10 steps, fp32
  efficiency  that window as interpolation, image to video with guidance 2.5, and expansion from 3 frames
           (a long video's windows); the floor column is the model's FLOPs at the matmul's rate over its time
  identity Identity Attention fast path vs dense mask at the generator's real shapes of the other jobs
  anchor   each interpolator (DIS, RIFE 4.x fast and best) making a window's anchor, both ends given:
           seconds, matmul-times and GFLOP per generated frame, share of its FLOP floor (--size, --frames)
--reduced shrinks the jobs, after the flags, for a CPU try (L -> small, S -> tiny presets, sides / 8;
the paper's figures stay beside them). Jobs run in bf16 on CUDA, fp32 on the CPU, unless --dtype says.
Columns: min / median / max total seconds over the repeats (after one warm-up), VAE and planner
shares, the time in matmul-times (seconds over one 2048^2 fp32 CPU matmul measured just before:
comparable across machines and loads), model TFLOP counted along the same path (the reference cache's
savings show), MFU against the matmul peak measured in this run and, on CUDA, the datasheet's.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re

import torch

from .. import bench
from ..config import ATTENTION_BACKENDS
from ..errors import BackendUnavailableError, InputError
from ..schema import flag
from .generate import resolve_device

GPU_SUITES = ("table2", "table4", "backends", "compile", "memory")
SUITES = (*GPU_SUITES, "cpu", "window", "efficiency", "identity", "anchor")
ANCHOR_SIZE, ANCHOR_FRAMES = (448, 256), 9  # the anchor suite's window unless --size / --frames say otherwise
JOB_FLAGS = ("preset", "size", "frames", "given", "steps", "guidance", "fidelity", "dtype", "backend", "compile", "anchor")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", nargs="+", choices=SUITES, default=None,
                        help="named rows (default: the job from flags when --preset is given; otherwise every GPU "
                             "suite and identity on CUDA, 'cpu identity' on the CPU)")
    job = parser.add_argument_group("the job (one row; with --suite, replaces that field in every suite job)")
    job.add_argument("--preset", help="model preset, e.g. L/T, small/T (see `presets`)")
    job.add_argument("--size", metavar="WxH", help="frame size in pixels, WxH or one side for a square (default 512)")
    job.add_argument("--frames", type=int, help="clip length K (default 17)")
    job.add_argument("--given", help=f"which frames are given: {bench.GIVEN_HELP} (default i2v)")
    job.add_argument("--steps", type=int, help="DDIM steps (default 25)")
    job.add_argument("--guidance", type=float, help="guidance (default: 2.5 for i2v, off when both ends are given)")
    job.add_argument("--fidelity", type=float, help="sampler fidelity, 0..1 (default: the model's; 0 runs every step)")
    job.add_argument("--dtype", choices=bench.DTYPES, help="model and VAE precision (default: bf16 on CUDA, fp32 on the CPU)")
    job.add_argument("--backend", choices=ATTENTION_BACKENDS, help="attention backend (default auto)")
    job.add_argument("--compile", action="store_true", default=None, help="torch.compile planner and generator (eager if it fails)")
    job.add_argument("--anchor", choices=bench.ANCHORS, help="what masked latents are diffused around (default: the preset's, none)")
    parser.add_argument("--reduced", action="store_true", help="shrink the jobs (after the flags) for a CPU try: L -> small, S -> tiny presets, sides / 8")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--threads", type=flag(int, 1, 1024), help="CPU threads for torch (default: torch's; on a busy shared CPU, 1 "
                                                     "avoids threads spinning while they wait for each other)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row after one warm-up (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def parse_size(size: str) -> tuple[int, int]:
    """--size '448x256' or '512' -> (width, height)."""
    match = re.fullmatch(r"\s*([0-9]+)\s*(?:[xX]\s*([0-9]+)\s*)?", size)
    if not match:
        raise InputError(f"--size {size!r} must be WIDTHxHEIGHT or one side in pixels, e.g. 448x256 or 512")
    width = int(match[1])
    height = int(match[2]) if match[2] else width
    if not (0 < width <= 8192 and 0 < height <= 8192):
        raise InputError(f"--size {size!r} must be from 1 to 8192 pixels a side")
    return width, height


def overrides(args: argparse.Namespace) -> dict:
    """The job fields the user gave, as Job keyword arguments."""
    given = {name: getattr(args, name) for name in JOB_FLAGS if getattr(args, name) is not None}
    if "size" in given:
        given["width"], given["height"] = parse_size(given.pop("size"))
    for name, low in (("frames", 2), ("steps", 1)):
        if name in given and given[name] < low:
            raise InputError(f"--{name} must be at least {low}, got {given[name]}")
    for name in ("guidance", "fidelity"):
        if name in given and not (0 <= given[name] < float("inf")):
            raise InputError(f"--{name} must be a finite number >= 0, got {given[name]}")
    if given.get("fidelity", 0) > 1:
        raise InputError(f"--fidelity must lie in 0..1, got {given['fidelity']}")
    return given


def chosen_suites(args: argparse.Namespace, device: torch.device, fields: dict) -> list[str]:
    if args.suite is not None:
        return args.suite
    if fields:  # job flags without a suite: the job from flags
        return ["custom", "identity"]
    return [*GPU_SUITES, "identity"] if device.type == "cuda" else ["cpu", "identity"]


def chosen_jobs(args: argparse.Namespace, device: torch.device) -> tuple[list[str], list[tuple[str, bench.Job]]]:
    """The suites, and their (suite, job) rows: the job from flags, or suite jobs with the flags' fields replaced."""
    if args.repeats < 1:
        raise InputError(f"--repeats must be at least 1, got {args.repeats}")
    fields = overrides(args)
    suites = chosen_suites(args, device, fields)
    if device.type != "cuda":
        fields.setdefault("dtype", "fp32")  # CPUs have no fast bf16 matmuls
    rows = [(name, job) for name in suites if name not in ("custom", "identity", "anchor") for job in bench.suites()[name]]
    if not rows and suites == ["anchor"]:
        return suites, []
    if not rows:  # the job from flags (alone, or for the identity rows)
        if "preset" not in fields:
            raise InputError("a job from flags needs --preset (e.g. --preset small/T), or choose a --suite")
        rows = [("custom", bench.Job(fields.pop("preset")))]
    rows = [(name, dataclasses.replace(job, **fields)) for name, job in rows]
    rows = [(name, dataclasses.replace(job, paper=bench.paper_figure(job))) for name, job in rows]
    if args.reduced:
        rows = [(name, bench.reduced(job)) for name, job in rows]
    return suites, [(name, bench.check_job(job)) for name, job in rows]


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device or "auto")  # one line for a device that is unknown or absent
    suites, jobs = chosen_jobs(args, device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    timed = [(name, job) for name, job in jobs if suites != ["identity"]]
    fields = overrides(args)
    anchor = []
    if "anchor" in suites:
        size = (fields["width"], fields["height"]) if "width" in fields else ANCHOR_SIZE
        anchor = bench.anchor_rows(*size, fields.get("frames", ANCHOR_FRAMES), device, args.repeats)
    rows, skipped = [], []
    for suite, job in timed:
        try:
            rows.append({"suite": suite, **bench.run(job, device, args.repeats).as_dict()})
        except (BackendUnavailableError, torch.OutOfMemoryError) as exc:
            skipped.append({"suite": suite, "job": job.preset, "backend": job.backend, "reason": str(exc).splitlines()[0]})
    identity = []
    if "identity" in suites:  # once per distinct shape
        shapes = {(j.preset, j.width, j.height, j.frames, j.given, j.dtype): j for _, j in jobs}
        identity = [r for job in shapes.values() for r in bench.identity_attention_rows(job, device)]
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "repeats": args.repeats, "rows": rows, "identity_attention": identity, "anchor": anchor, "skipped": skipped}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_table(report)
    return 0


def _fmt(value, spec: str) -> str:
    width = spec.rstrip("f%").split(".")[0]
    return format("-", f">{width or 0}") if value is None else format(value, spec)


def print_table(report: dict) -> None:
    print(f"device: {report['device']}; times over {report['repeats']} repeats after one warm-up; "
          f"mm = matmul-times (one 2048^2 fp32 CPU matmul)")
    if report["rows"]:
        print_rows(report["rows"])
    for r in report["identity_attention"]:
        ms = r["ms"]
        print(f"identity attention {r['impl']:<14} {r['preset']}: {r['batch']}x{r['frames']} frames x {r['tokens_per_frame']} tokens, "
              f"{r['heads']} heads of {r['head_dim']}{' (temporal)' if r['temporal'] else ''}: "
              f"{ms['min']:.2f}/{ms['median']:.2f}/{ms['max']:.2f} ms, peak {_fmt(r['peak_memory_gb'], '.3f')} GB")
    for r in report["anchor"]:
        print(f"anchor {r['interpolator']:<5}{r['quality']:<5} {r['width']}x{r['height']}, {r['frames']} frames: "
              f"{r['seconds_per_frame']:.3f} s = {r['matmul_times_per_frame']:.1f} mm per frame, {r['gflop_per_frame']:.1f} GFLOP, "
              f"floor share {_fmt(r['floor_share'], '.2f')}")
    for s in report["skipped"]:
        print(f"skipped {s['suite']} {s['job']} ({s['backend']}): {s['reason']}")


def print_rows(rows: list[dict]) -> None:
    print(f"{'suite':<11}{'preset':<9}{'size':>9}{'K':>3} {'given':<12}{'steps':>5}{'cfg':>5}{'fid':>4} {'dtype':<6}{'attn':<9}{'comp':<5}"
          f"{'total s min/med/max':>22}{'s/frame':>8}{'VAE s':>7}{'plan s':>7}{'model mm':>9}{'total mm':>9}"
          f"{'TFLOP':>8}{'peak TF/s':>10}{'MFU':>6}{'floor':>6}{'MFU ds':>7}{'peak GB':>8}")
    for r in rows:
        t = r["total_s"]
        print(f"{r['suite']:<11}{r['preset']:<9}{r['width']:>5}x{r['height']:<3}{r['frames']:>3} {r['given']:<12}{r['steps']:>5}"
              f"{r['guidance']:>5.1f}{r['fidelity']:>4.1f} {r['dtype']:<6}{r['backend']:<9}{r['compiled'][:4]:<5}"
              f"{t['min']:>8.3f}/{t['median']:.3f}/{t['max']:<6.3f}{r['seconds_per_frame']:>8.3f}{r['vae_s']:>7.3f}"
              f"{r['planner_s']:>7.3f}{r['model_matmul_times']['median']:>9.1f}{r['total_matmul_times']['median']:>9.1f}"
              f"{r['model_tflop'] + r['vae_tflop']:>8.3f}{r['peak_tflops']:>10.2f}{r['mfu']:>6.1%}{r['model_floor_share']:>6.2f}{_fmt(r['mfu_datasheet'], '7.1%')}"
              f"{_fmt(r['peak_memory_gb'], '8.2f')}")
        if r["paper"]:
            print(f"{'':<9}paper: {r['paper']}")
        if r["compiled"].startswith("failed"):
            print(f"{'':<9}compile {r['compiled']}")
