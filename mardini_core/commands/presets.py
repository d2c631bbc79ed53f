"""Print every preset's planner and generator parameter counts, built on the meta device (no memory)."""
from __future__ import annotations

import argparse
import json

import torch

from ..config import PAPER_PARAMS, PRESETS
from ..model import MarDini


def preset_table() -> dict[str, dict]:
    table = {}
    for name, config in PRESETS.items():
        with torch.device("meta"):
            model = MarDini(config)
        row = {
            "planner_params": sum(p.numel() for p in model.planner.parameters()),
            "generator_params": sum(p.numel() for p in model.generator.parameters()),
            "generator_attention": config.generator.attention,
            "max_frames": config.max_frames,
            "latent_channels": config.latent_channels,
        }
        if name in PAPER_PARAMS:
            row["paper_planner_params"], row["paper_generator_params"] = (int(x) for x in PAPER_PARAMS[name])
        table[name] = row
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    table = preset_table()
    if args.json:
        print(json.dumps(table, indent=1))
        return 0
    print(f"{'preset':<10}{'planner':>14}{'generator':>14}{'paper planner':>15}{'paper DM':>10}  attn  frames")
    for name, row in table.items():
        paper_p = f"{row['paper_planner_params'] / 1e9:.1f}B" if "paper_planner_params" in row else "-"
        paper_g = f"{row['paper_generator_params'] / 1e6:.0f}M" if "paper_generator_params" in row else "-"
        print(
            f"{name:<10}{row['planner_params'] / 1e6:>13.1f}M{row['generator_params'] / 1e6:>13.1f}M"
            f"{paper_p:>15}{paper_g:>10}  {row['generator_attention']:<5} {row['max_frames']}"
        )
    return 0
