"""Pre-encode a video folder into latent shards for `[data] loader = "shards"` (resumable, split over ranks).

  python -m mardini_core encode --videos my_videos/ --vae taef2 --out shards/ --frames 9 --size 256x256
  torchrun --nproc_per_node=8 -m mardini_core encode --videos my_videos/ --vae taef2 --out shards/ ...

Each process takes every WORLD_SIZE-th video (from torchrun's RANK and WORLD_SIZE; no process group is
made), decodes it once and writes its shards to --out. Run the same command again to continue an
interrupted job: complete shards are kept. The clip options must match the stage's [data] section.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from ..data.clips import ClipConfig
from ..data.encode import encode_videos
from ..errors import InputError
from ..precision import DTYPES
from ..vae import load_vae
from ..schema import flag
from ..training.distributed import launch_env



def size(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' (or one number for a square) -> (height, width)."""
    try:
        width, height = (int(v) for v in (text.lower().split("x") if "x" in text.lower() else (text, text)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT or one number, e.g. 256x256, got {text!r}") from None
    return height, width


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videos", required=True, nargs="+", help="video files or folders (a folder's manifest.json is honoured)")
    parser.add_argument("--out", required=True, help="shard folder (shard-*.safetensors + shard-*.json); the stage's [data] paths")
    parser.add_argument("--vae", default="taef2", help="'taef2', a TAEF2 folder, 'mardini-tae' or a mardini-tae .safetensors (the stage's [data] vae)")
    parser.add_argument("--frames", type=int, default=9, help="frames per clip ([data] frames)")
    parser.add_argument("--stride", type=int, default=1, help="take every stride-th frame ([data] stride)")
    parser.add_argument("--size", type=size, default=(256, 256), help="clip WIDTHxHEIGHT in pixels ([data] width and height)")
    parser.add_argument("--crop", default="center", choices=("center", "random"), help="random: a seeded crop per clip, fixed once encoded")
    parser.add_argument("--hop", type=int, default=0, help="frames between clip starts (0 = one clip length, no overlap)")
    parser.add_argument("--planner-downscale", type=int, default=2, help="the planner's view is this much smaller (the model's planner_downscale)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random crops")
    parser.add_argument("--shard-size", type=int, default=256, help="clips per shard")
    parser.add_argument("--batch", type=int, default=16, help="clips encoded at once")
    parser.add_argument("--dtype", default="fp32", choices=DTYPES, help="stored latent precision (fp16 or bf16 halve the disk)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: cuda when available")
    parser.add_argument("--threads", type=flag(int, 0, 1024), default=0, help="CPU threads per process (0 = torch's default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per process at the end")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world = launch_env("RANK", 0), launch_env("WORLD_SIZE", 1)
    if not 0 <= rank < world:
        raise InputError(f"RANK {rank} is not below WORLD_SIZE {world}; start encode with torchrun or leave both unset")
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = f"cuda:{launch_env('LOCAL_RANK', 0)}" if cuda else "cpu"
    vae = load_vae(args.vae, device=device)
    clip = ClipConfig(args.frames, args.stride, *args.size, args.crop, args.hop, args.planner_downscale)
    report = encode_videos(args.videos, args.out, vae, clip, shard_size=args.shard_size, batch=args.batch,
                           rank=rank, world=world, seed=args.seed, dtype=DTYPES[args.dtype])
    summary = {"rank": rank, "world": world, "shards": report.shards, "clips": report.clips, "complete": report.complete, "skipped": len(report.skipped)}
    print(json.dumps(summary) if args.json else
          f"rank {rank}/{world}: wrote {report.shards} shard(s) of {report.clips} clips to {args.out} "
          f"({report.complete} already complete, {len(report.skipped)} skipped)", file=sys.stdout)
    return 0
