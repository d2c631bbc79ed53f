"""Model precision by name, and the default a user gets: bf16 on GPUs that have it, fp16 on other
GPUs, fp32 on the CPU (where half precision is slower and bf16 matmuls are emulated on many CPUs)."""
from __future__ import annotations

import torch

from .errors import InputError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
CHOICES = ("auto", *DTYPES)


def default_dtype(device: torch.device) -> torch.dtype:
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """"auto" | "bf16" | "fp16" | "fp32" -> the torch dtype to run in on `device`."""
    if name == "auto":
        return default_dtype(device)
    if name not in DTYPES:
        raise InputError(f"unknown precision {name!r}; choose one of {', '.join(CHOICES)}")
    return DTYPES[name]
