"""torch.compile for generation, as an option that never breaks a run.

Each transformer block of both networks is compiled on its own (inductor): a block is pure tensor
work plus its sampling state (layers.FrameKV, PlanCache), so its element-wise work (norms,
modulation, gates, RoPE, GELU, biases) fuses around the matmuls and attention, while the Python
around the blocks (input checks, the sampler's loop) stays eager. Where compile cannot run (no C++
compiler for the CPU backend, no Triton for CUDA, e.g. Windows without a toolchain) or fails at
its first call, the block runs eagerly and one warning line says why.
"""
from __future__ import annotations

import shutil
import warnings

import torch
import torch.nn as nn


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot run on `device` here, or None when it can."""
    if device.type == "cuda":
        try:
            from torch.utils._triton import has_triton
        except ImportError:
            return "this torch build has no Triton support"
        return None if has_triton() else "Triton is not installed (pip install triton)"
    if device.type == "cpu":
        return None if any(shutil.which(c) for c in ("g++", "c++", "clang++", "cl")) else "no C++ compiler found"
    return f"torch.compile is not supported on {device.type}"


class CompiledForward:
    """A block's forward compiled, falling back to the eager one for good at the first failure."""

    def __init__(self, block: nn.Module):
        self.eager = block.forward
        self.compiled = torch.compile(self.eager, dynamic=False)
        self.error: str | None = None  # why compile failed, once it has

    def __call__(self, *args, **kwargs):
        if self.error is None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # a compiler error must not lose the user's run
                self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                warnings.warn(f"torch.compile failed ({self.error}); running without compile", stacklevel=2)
        return self.eager(*args, **kwargs)


def compile_blocks(model: nn.Module, device: torch.device | None = None) -> bool:
    """Compile every block of the model's planner and generator in place, for running on `device`
    (default: where the weights are); False (one warning) when compile is unavailable there. The
    weights and their names are untouched."""
    reason = compile_unavailable(device or next(model.parameters()).device)
    if reason is not None:
        warnings.warn(f"compile was asked for but {reason}; running without compile", stacklevel=2)
        return False
    # RoPE is one complex multiply (rope.py), which inductor leaves to its eager kernel: expected, not a problem
    warnings.filterwarnings("ignore", message="Torchinductor does not support code generation for complex operators")
    for network in (model.planner, model.generator):
        for block in network.blocks:
            if not isinstance(block.__dict__.get("forward"), CompiledForward):
                block.forward = CompiledForward(block)
    return True


def compile_errors(model: nn.Module) -> list[str]:
    """Why compiled blocks fell back to eager (empty while they run compiled, or were never compiled)."""
    blocks = [*model.planner.blocks, *model.generator.blocks]
    return [f.error for f in (b.__dict__.get("forward") for b in blocks) if isinstance(f, CompiledForward) and f.error]
