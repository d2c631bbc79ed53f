"""Speed and memory table: presets with random weights generate a clip, timed per phase.

Suites: table2 (paper Table 2: 13 frames, 1 given, at 512), table4 (L/T-17 and S/T-17 at 512/768/1024),
backends (sdpa / xformers / math), compile (torch.compile), memory (planner offload, fp16), identity
(Identity Attention fast path vs dense mask), cpu (small presets at 256, with each row's time as a
ratio to the math-backend reference run in the same process).
"""
from __future__ import annotations

import argparse
import json

import torch

from .. import bench
from ..errors import BackendUnavailableError, InputError

GPU_SUITES = ("table2", "table4", "backends", "compile", "memory")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", nargs="+", default=None,
                        choices=[*GPU_SUITES, "identity", "cpu"],
                        help="which rows to run (default: every GPU suite on CUDA, 'cpu identity' otherwise)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per row after one warm-up")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _fmt(value, spec: str) -> str:
    width = spec.rstrip("f%").split(".")[0]
    return format("-", f">{width or 0}") if value is None else format(value, spec)


def run(args: argparse.Namespace) -> int:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA device is visible; use --device cpu")
    chosen = args.suite or ([*GPU_SUITES, "identity"] if device.type == "cuda" else ["cpu", "identity"])
    all_jobs = bench.suites(device)
    rows, skipped = [], []
    for suite in chosen:
        if suite == "identity":
            continue
        for job in all_jobs[suite]:
            try:
                rows.append({"suite": suite, **bench.run(job, device, args.repeats).as_dict()})
            except (BackendUnavailableError, torch.OutOfMemoryError) as exc:
                skipped.append({"suite": suite, "job": job.preset, "backend": job.backend, "reason": str(exc).splitlines()[0]})
    _add_cpu_ratios(rows)
    identity = bench.identity_attention_rows(device, torch.bfloat16 if device.type == "cuda" else torch.float32) if "identity" in chosen else []
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "rows": rows, "identity_attention": identity, "skipped": skipped}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"device: {report['device']}")
    print(f"{'suite':<9}{'preset':<9}{'size':>5}{'K':>4}{'steps':>6}{'cfg':>5} {'dtype':<6}{'attn':<9}{'comp':<5}"
          f"{'total s':>9}{'s/frame':>9}{'plan s':>8}{'DM s':>8}{'peak GB':>8}{'TFLOP':>8}{'MFU':>6}{'vs ref':>7}")
    for r in rows:
        print(f"{r['suite']:<9}{r['preset']:<9}{r['size']:>5}{r['frames']:>4}{r['steps']:>6}{r['guidance']:>5} "
              f"{r['dtype']:<6}{r['backend']:<9}{'yes' if r['compile'] else 'no':<5}{r['total_s']:>9.3f}"
              f"{r['seconds_per_frame']:>9.3f}{r['planner_s']:>8.3f}{r['generator_s']:>8.3f}"
              f"{_fmt(r['peak_memory_gb'], '8.2f')}{r['tflops']:>8.2f}{_fmt(r['mfu'], '6.1%')}"
              f"{_fmt(r.get('time_vs_reference'), '7.2f')}")
    for r in identity:
        print(f"identity attention {r['impl']:<14} {r['frames']} frames x {r['tokens_per_frame']} tokens: "
              f"{r['ms']:.2f} ms, peak {_fmt(r['peak_memory_gb'], '.3f')} GB")
    for s in skipped:
        print(f"skipped {s['suite']} {s['job']} ({s['backend']}): {s['reason']}")
    return 0


def _add_cpu_ratios(rows: list[dict]) -> None:
    """CPU rows: time relative to the math-backend reference of the same preset (machine-independent)."""
    reference = {r["preset"]: r["total_s"] for r in rows if r["suite"] == "cpu" and r["backend"] == "math"}
    for r in rows:
        if r["suite"] == "cpu" and r["preset"] in reference:
            r["time_vs_reference"] = r["total_s"] / reference[r["preset"]]
