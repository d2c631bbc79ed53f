"""Train one stage of the paper's progressive recipe from a stage config (TOML), resumable.

  python -m mardini_core train --config configs/stages/tiny_stage1.toml --out runs/s1
  python -m mardini_core train --config configs/stages/tiny_stage2.toml --init runs/s1/model.safetensors --out runs/s2
  torchrun --nproc_per_node=8 -m mardini_core train --config stage3.toml --init runs/s2/model.safetensors --out runs/s3
  python -m mardini_core train --config configs/stages/stage3_joint_task.toml --plan --gpus 256 --gpu h100 --mfu 0.4

<out>/checkpoints holds atomic training states (--resume continues from the newest), <out>/log.jsonl
one JSON object per logged step (step, loss, lr, frames_per_s, ...), <out>/samples previews, and
<out>/model.safetensors the final model (EMA weights when EMA is on).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys

import torch

from ..errors import InputError
from ..training.config import load_stage
from ..training.distributed import SHARDINGS
from ..training.capacity import GPUS, plan_phases
from ..training.trainer import RunOptions, Trainer
from ..schema import flag
from ..outputs import exclusive
from ..training.distributed import launch_env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="stage config (.toml), e.g. configs/stages/tiny_stage1.toml")
    parser.add_argument("--out", help="run folder (checkpoints, log.jsonl, samples, model.safetensors); not needed with --plan")
    parser.add_argument("--init", help="start from this MarDini checkpoint (the previous stage's model.safetensors)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a run already in --out (its model.safetensors, log and checkpoints); without it such a folder is refused")
    parser.add_argument("--data", nargs="+", help="video files or folders, replacing the config's [data] paths")
    parser.add_argument("--steps", type=int, help="replace the config's step count")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="replace one config value (repeatable), e.g. --set optim.batch=24 --set data.height=256")
    parser.add_argument("--cache-dir", help="latent cache folder, shareable between runs and stages (default <out>/latents)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: cuda when available")
    parser.add_argument("--sharding", default="fsdp", choices=SHARDINGS, help="with torchrun: FSDP2 (default) or replicate + all-reduce")
    parser.add_argument("--threads", type=flag(int, 0, 1024), default=0, help="CPU threads per process (0 = torch's default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument("--plan", action="store_true",
                        help="train nothing: print the stage's memory per GPU, FLOPs and time per step and per stage for --gpus x --gpu at --mfu")
    parser.add_argument("--gpus", type=int, default=1, help="with --plan: GPUs of the run, FSDP2 shards over them (default 1)")
    parser.add_argument("--gpu", default="h100", choices=sorted(GPUS), help="with --plan: the GPU (datasheet bf16 peak and memory)")
    parser.add_argument("--mfu", type=float, default=0.4, help="with --plan: model FLOPs utilisation the time assumes (default 0.4)")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_stage(args.config, [*args.set, *([f"stage.steps={args.steps}"] if args.steps is not None else [])])  # --steps: the last word
    if args.data:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, paths=tuple(args.data)))
    if args.plan:
        return print_plan(cfg, args)
    if not args.out:
        raise InputError("train needs --out, the run folder (only --plan runs without one)")
    opts = RunOptions(args.out, args.init, args.resume, args.device, args.cache_dir, args.sharding, overwrite=args.overwrite)
    with exclusive(args.out) if launch_env("RANK", 0) == 0 else contextlib.nullcontext():  # one command per run folder
        trainer = Trainer(cfg, opts)
        main = trainer.d.main
        path = trainer.run()
    if main:
        summary = {"model": str(path), "steps": cfg.steps, "stage": cfg.name}
        print(json.dumps(summary) if args.json else f"wrote {path}", file=sys.stdout)
    return 0


def print_plan(cfg, args: argparse.Namespace) -> int:
    if args.gpus < 1 or not 0 < args.mfu <= 1:
        raise InputError(f"--gpus must be at least 1 and --mfu in (0, 1], got {args.gpus} and {args.mfu}")
    plans = plan_phases(cfg, args.gpus, GPUS[args.gpu], args.mfu, args.init)
    if args.json:
        derived = lambda p: {"total_bytes": p.total_bytes, "fits": p.fits, "step_seconds": p.step_seconds, "traffic_bytes": p.traffic_bytes}
        print(json.dumps({"phases": [{**dataclasses.asdict(p), **derived(p)} for p in plans]}))
        return 0
    print("\n\n".join("\n".join(p.lines()) for p in plans))
    if len(plans) > 1:
        hours = sum(p.steps * p.step_seconds for p in plans) / 3600
        print(f"\nstage {cfg.name!r}: {hours:.1f} h ({hours / 24:.1f} days) for its {cfg.steps} steps over {len(plans)} phases")
    return 0
