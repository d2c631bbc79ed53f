"""Training-state checkpoints: weights, optimizer moments, EMA and step in one safetensors file.

Full (gathered) state dicts via `torch.distributed.checkpoint.state_dict`, so the same file comes
from one process, gloo all-reduce ranks or FSDP2 shards, and loads into any of them. Files are
written atomically (temporary file, fsync, rename) by rank 0: a run killed at any moment leaves the
previous checkpoint intact; the newest file that opens is the one `--resume` uses.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor, distribute_tensor

from ..checkpoint import atomic_save_safetensors
from ..errors import CheckpointError
from .distributed import Dist
from .optim import EMA

FORMAT = "mardini-train-state"
_NAME = re.compile(r"state-(\d{8})\.safetensors$")
_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)
_SCATTER = StateDictOptions(full_state_dict=True)


def _full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if isinstance(t, DTensor) else t).detach().cpu().contiguous()


def gather_model(modules: nn.Module, ema: EMA | None, prefer_ema: bool) -> dict[str, torch.Tensor]:
    """Full weights of the MarDini model (EMA when asked and on); collective: every rank calls it."""
    state = {k[len("model.") :]: v for k, v in get_model_state_dict(modules, options=_GATHER).items() if k.startswith("model.")}
    if prefer_ema and ema is not None:
        averaged = {name: _full(t) for name, t in ema.shadow.items()}
        state.update({k: v for k, v in averaged.items() if k in state})
    return state


def save_state(folder: Path, step: int, modules: nn.Module, optimizer, ema: EMA | None, meta: dict, d: Dist, keep: int) -> None:
    """Gather everything (all ranks) and write `state-<step>.safetensors` (rank 0), keeping the newest `keep`."""
    tensors = {f"w/{k}": v.contiguous() for k, v in get_model_state_dict(modules, options=_GATHER).items()}
    optim = get_optimizer_state_dict(modules, optimizer, options=_GATHER)
    shadow = {f"ema/{n}": _full(t) for n, t in ema.shadow.items()} if ema else {}
    if not d.main:
        return
    for fqn, moments in optim["state"].items():
        for key, value in moments.items():
            tensors[f"o/{fqn}/{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors.update(shadow)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in optim["param_groups"]]
    metadata = {**{k: str(v) for k, v in meta.items()}, "format": FORMAT, "step": str(step), "param_groups": json.dumps(groups)}
    for stale in folder.glob(".state-*.tmp"):  # half-written states of a killed run (each as big as a state)
        stale.unlink(missing_ok=True)
    atomic_save_safetensors(folder / f"state-{step:08d}.safetensors", tensors, metadata)
    for old in sorted(folder.glob("state-*.safetensors"))[:-keep]:
        old.unlink(missing_ok=True)


def read_meta(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a MarDini training state")
    return meta


def latest_state(folder: Path) -> Path | None:
    """The newest training state that opens (a damaged newest file is reported and passed over)."""
    for path in sorted(folder.glob("state-*.safetensors"), reverse=True):
        if not _NAME.search(path.name):
            continue
        try:
            read_meta(path)
            return path
        except Exception as exc:  # unreadable header of a user file: fall back to the previous one
            warnings.warn(f"skipping damaged training state {path} ({exc})", stacklevel=2)
    return None


def load_state(path: Path, modules: nn.Module, optimizer, ema: EMA | None) -> int:
    """Restore weights, optimizer and EMA from `path` on every rank; returns the step to continue from."""
    meta = read_meta(path)
    tensors = load_file(str(path))
    set_model_state_dict(modules, {k[2:]: v for k, v in tensors.items() if k.startswith("w/")}, options=_SCATTER)
    moments: dict[str, dict] = {}
    for key, value in tensors.items():
        if key.startswith("o/"):
            fqn, name = key[2:].rsplit("/", 1)
            moments.setdefault(fqn, {})[name] = value
    groups = json.loads(meta["param_groups"])
    set_optimizer_state_dict(modules, optimizer, {"state": moments, "param_groups": groups}, options=_SCATTER)
    if ema is not None:
        for name, param in ema.params.items():
            full = tensors[f"ema/{name}"]
            ema.shadow[name] = distribute_tensor(full, param.device_mesh, param.placements) if isinstance(param, DTensor) else full.to(param.device)
    return int(meta["step"])
