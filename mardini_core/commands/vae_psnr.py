"""Reconstruction PSNR (decode(encode(x)) vs x) of autoencoders on real frames of a folder of videos."""
from __future__ import annotations

import argparse
import json

from ..schema import flag
from ..vae import load_vae
from ..vae.quality import evaluation_frames, psnr_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, nargs="+", help="video files or folders (a folder's manifest.json is honoured)")
    parser.add_argument("--vae", action="append", help="'taef2', a TAEF2 folder or a mardini-tae .safetensors (repeatable; default taef2)")
    parser.add_argument("--per-segment", type=flag(int, 1, 1000), default=4, help="evenly spaced frames taken from each video segment")
    parser.add_argument("--size", type=flag(int, 8, 4096), default=256, help="frames are center-cropped to size x size (multiple of 8)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def print_table(table: dict[str, dict[str, float]], held_out: set[str] = frozenset()) -> None:
    names = list(next(iter(table.values())))
    print(f"{'file':<44}" + "".join(f"{v:>20}" for v in table))
    for n in names:
        label = n + (" (held out)" if n in held_out else "")
        print(f"{label:<44}" + "".join(f"{table[v][n]:>20.2f}" for v in table))


def run(args: argparse.Namespace) -> int:
    frames = evaluation_frames(args.data, args.per_segment, args.size)
    vaes = {name: load_vae(name) for name in (args.vae or ["taef2"])}
    table = psnr_table(vaes, frames)
    if args.json:
        print(json.dumps({"psnr_db": table, "frames": {k: len(v) for k, v in frames.items()}, "size": args.size}))
    else:
        print_table(table)
    return 0
