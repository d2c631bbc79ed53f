"""Distil mardini-tae, the project's own small autoencoder, into TAEF2's 32-channel latent space.

Encoder: MSE to TAEF2's latents of real frames; decoder: L1 to the frames from TAEF2's latents. The
result is one fp16 .safetensors file (a few MB) that `load_vae` reads; its reconstruction PSNR next
to TAEF2's is printed at the end. Files given to --exclude, and with --held-out the project's held-out
files, are left out of training (and marked in the table).
"""
from __future__ import annotations

import argparse
import dataclasses
import json

import torch

from ..data.split import HELD_OUT_FILES
from ..outputs import check_new_file, exclusive
from ..vae import load_mardini_tae, load_taef2, save_mardini_tae
from ..vae.distill import DistillConfig, crop_bank, distil
from ..vae.quality import Crossed, evaluation_frames, psnr_table
from ..schema import field_flag, flag
from .vae_psnr import print_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, nargs="+", help="video files or folders to take training frames from")
    parser.add_argument("--out", required=True, help="output .safetensors path")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--teacher", default=None, help="TAEF2 weights folder (default: $MARDINI_TAEF2_DIR or ../shared/weights/taef2)")
    parser.add_argument("--init", help="continue training this mardini-tae .safetensors (its width and blocks are kept)")
    parser.add_argument("--exclude", action="append", default=[], help="file name held out of training (repeatable)")
    parser.add_argument("--held-out", action="store_true",
                        help="also leave out the project's held-out files (mardini_core/data/split.py), as a stage's `[data] held_out = true` does")
    parser.add_argument("--threads", type=flag(int, 0, 1024), default=0, help="CPU threads (0 = torch's default)")
    parser.add_argument("--eval-per-segment", type=flag(int, 0, 1000), default=2, help="frames per segment for the final PSNR (0 = skip)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the PSNR table")
    for f in dataclasses.fields(DistillConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=field_flag(f), default=f.default, help=f"default {f.default}")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.out.endswith(".safetensors"):
        args.out += ".safetensors"
    check_new_file(args.out, args.overwrite)  # before any training: a refusal costs nothing
    with exclusive(args.out):  # a second command writing the same file gets one line
        check_new_file(args.out, args.overwrite)  # again under the lock: a finished twin is not replaced
        return distil_and_save(args)


def distil_and_save(args: argparse.Namespace) -> int:
    exclude = set(args.exclude) | (HELD_OUT_FILES if args.held_out else set())
    cfg = DistillConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DistillConfig)})
    teacher = load_taef2(args.teacher)
    start = load_mardini_tae(args.init) if args.init else None
    student = distil(teacher, crop_bank(args.data, cfg, exclude), cfg, student=start)
    save_mardini_tae(args.out, student, {"distilled_from": "taef2", "training": json.dumps(dataclasses.asdict(cfg))})
    result = {"out": args.out, "params": sum(p.numel() for p in student.parameters())}
    if args.eval_per_segment:
        vaes = {"taef2": teacher, "mardini-tae": student, "enc:ours>dec:taef2": Crossed(student, teacher), "enc:taef2>dec:ours": Crossed(teacher, student)}
        table = psnr_table(vaes, evaluation_frames(args.data, args.eval_per_segment))
        result.update(psnr_db=table, held_out=sorted(exclude))
        if not args.json:
            print_table(table, exclude)
    print(json.dumps(result) if args.json else f"wrote {args.out} ({result['params']} parameters)")
    return 0
