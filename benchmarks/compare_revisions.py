"""Time one generation window with two revisions of mardini_core in one process, interleaved.

Shared machines are noisy, so a speed change is measured as a ratio: both revisions run the same
job (same seeded random weights, same inputs) turn by turn, each timed in CPU time and in
matmul-times (one fp32 2048^2 matmul, measured just before). The other revision is any checkout,
e.g. `git worktree add /tmp/base <commit>`; its package is loaded under another name.

    python benchmarks/compare_revisions.py /tmp/base [--preset small/T] [--guidance 2.5] [--repeats 5]
"""
from __future__ import annotations

import argparse
import importlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load_revision(checkout: Path, name: str):
    """Import `checkout`/mardini_core as a package called `name` (its imports are relative)."""
    target = Path(tempfile.mkdtemp()) / name
    shutil.copytree(checkout / "mardini_core", target)
    sys.path.insert(0, str(target.parent))
    return importlib.import_module(name)


def window_job(package: str, args):
    """A seeded random model of the preset (perturbed: AdaLN starts at zero) and its window call."""
    config = importlib.import_module(f"{package}.config")
    model_module = importlib.import_module(f"{package}.model")
    masks = importlib.import_module(f"{package}.masks")
    torch.manual_seed(0)
    model = model_module.MarDini(config.preset(args.preset).replace(anchor=args.anchor)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    given = [0, args.frames - 1] if args.guidance == 1.0 else [0]
    mask = masks.from_indices(args.frames, given)
    g = torch.Generator().manual_seed(1)
    w, h = args.width // 8, args.height // 8
    high, low = torch.randn(len(given), 32, h, w, generator=g), torch.randn(len(given), 32, h // 2, w // 2, generator=g)
    return window_call(package, model, mask, high, low, args)


def window_call(package: str, model, mask, high, low, args):
    """The revision's plan-and-sample call of one window: the generation stages, or, in revisions from
    before the generation package, `pipeline.generate_latents`."""
    try:
        gen = importlib.import_module(f"{package}.generation")
    except ModuleNotFoundError:
        old = importlib.import_module(f"{package}.pipeline").generate_latents
        return lambda: old(model, mask, high, low, steps=args.steps, fidelity=0.0, guidance=args.guidance)
    window = gen.Encoded(mask, torch.zeros(0), high, low, gen.Anchor(model.config.anchor))
    sampling = gen.Sampling(steps=args.steps, fidelity=0.0, guidance=args.guidance)
    return lambda: gen.sample(model, [window], gen.plan(model, [window]), sampling)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path, help="a checkout of the revision to compare with")
    parser.add_argument("--preset", default="small/T")
    parser.add_argument("--anchor", default="neighbours")
    parser.add_argument("--width", type=int, default=448)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=1.0, help="1: interpolation (both ends given); else i2v with CFG")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_revision(args.base, "mardini_base")
    jobs = {"base": window_job("mardini_base", args), "this": window_job("mardini_core", args)}
    outputs = {name: job() for name, job in jobs.items()}  # warm-up
    print(f"max |this - base| = {(outputs['this'] - outputs['base']).abs().max().item():.2e}")
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)

    def seconds(fn) -> float:
        start = time.process_time()
        fn()
        return time.process_time() - start

    ratios = {name: [] for name in jobs}
    for _ in range(args.repeats):
        for name, job in jobs.items():
            matmul = min(seconds(lambda: a @ b) for _ in range(3))
            ratios[name].append(seconds(job) / matmul)
    for name, values in ratios.items():
        print(f"{name}: {statistics.median(values):.1f} matmul-times (min {min(values):.1f}, max {max(values):.1f})")
    print(f"this / base: {statistics.median(ratios['this']) / statistics.median(ratios['base']):.3f}")


if __name__ == "__main__":
    main()
