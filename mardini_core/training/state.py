"""Training-state checkpoints: weights, optimizer moments, EMA and step in one safetensors file.

Full (gathered) state dicts via `torch.distributed.checkpoint.state_dict`, so the same file comes
from one process, gloo all-reduce ranks or FSDP2 shards, and loads into any of them. Files are
written atomically (temporary file, fsync, rename) by rank 0: a run killed at any moment leaves the
previous checkpoint intact; the newest file that opens is the one `--resume` uses.

Every state carries the integrity hash over tensors and metadata that checkpoints carry
(checkpoint.py), and is verified in full before it is resumed: a flipped bit anywhere makes
`latest_state` pass over the file (with a warning) to the previous one. What the metadata claims
(step, model config, optimizer param groups) and what the tensors hold (names, shapes, float dtypes,
finite values) are checked against the run being resumed; anything else is one CheckpointError.
"""
from __future__ import annotations

import json
import math
import numbers
import re
import warnings
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor, distribute_tensor

from ..checkpoint import atomic_save_safetensors, read_header, sign_metadata, verify_integrity
from ..config import MarDiniConfig
from ..errors import CheckpointError, MarDiniError
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
    atomic_save_safetensors(folder / f"state-{step:08d}.safetensors", tensors, sign_metadata(tensors, metadata))
    for old in sorted(folder.glob("state-*.safetensors"))[:-keep]:
        old.unlink(missing_ok=True)


def read_meta(path: Path) -> dict[str, str]:
    """The metadata of a training state (header only; `open_state` verifies the whole file)."""
    meta = read_header(path).get("__metadata__") or {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a MarDini training state")
    if not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(f"{path} has a corrupt header (metadata is not a table of strings); the file is damaged")
    return meta


def open_state(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a training state whose hash, metadata and tensors all check out."""
    meta = read_meta(path)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors' own errors for truncated or malformed data
        raise CheckpointError(f"{path} is truncated or corrupt ({str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__})") from None
    verify_integrity(str(path), tensors, meta, legacy_ok=False)
    try:
        step = int(meta["step"])
        groups = json.loads(meta["param_groups"])
        MarDiniConfig.from_json(meta["model_config"])
    except (KeyError, ValueError, TypeError, RecursionError, MarDiniError) as exc:
        raise CheckpointError(f"{path} has invalid metadata ({type(exc).__name__}: {str(exc)[:200]}); the file is damaged or forged") from None
    if step < 0 or not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise CheckpointError(f"{path} has invalid metadata (step or optimizer param groups); the file is damaged or forged")
    for name, t in tensors.items():
        if not t.is_floating_point() or not torch.isfinite(t).all():
            raise CheckpointError(
                f"{path} holds {name} as {'non-finite ' if t.is_floating_point() else ''}{str(t.dtype).replace('torch.', '')}; "
                "the file is damaged or forged: resume from an earlier state"
            )
    return meta, tensors


def state_files(folder: Path) -> list[Path]:
    """The training states of a run folder, newest first."""
    return [p for p in sorted(folder.glob("state-*.safetensors"), reverse=True) if _NAME.search(p.name)]


def latest_state(folder: Path) -> Path | None:
    """The newest training state that verifies in full (a damaged newer file is reported and passed over)."""
    for path in state_files(folder):
        try:
            open_state(path)
            return path
        except Exception as exc:  # a damaged user file: fall back to the previous one
            warnings.warn(f"skipping damaged training state {path} ({exc})", stacklevel=2)
    return None


def _same_kind(stored, current) -> bool:
    """A stored optimizer hyperparameter has the kind (and a sane value) of the optimizer's own one."""
    if isinstance(current, bool) or current is None:
        return type(stored) is type(current)
    if isinstance(current, numbers.Real):
        return isinstance(stored, numbers.Real) and not isinstance(stored, bool) and math.isfinite(stored) and stored >= 0
    if isinstance(current, (tuple, list)):
        return isinstance(stored, list) and len(stored) == len(current) and all(_same_kind(a, b) for a, b in zip(stored, current))
    return type(stored) is type(current)


def check_param_groups(path: Path, groups: list, optimizer, names: list[list[str]]) -> None:
    """Refuse stored param groups that do not describe this optimizer (forged or from another run)."""
    if len(groups) != len(optimizer.param_groups):
        raise CheckpointError(f"{path} has {len(groups)} optimizer param groups, this run {len(optimizer.param_groups)}; the file is forged or from another run")
    for stored, current, params in zip(groups, optimizer.param_groups, names):
        if set(stored) != set(current) or stored.get("params") != params:
            raise CheckpointError(f"{path} has optimizer param groups of another run (keys or parameters differ); the file is forged or from another run")
        bad = [k for k, v in current.items() if k != "params" and not _same_kind(stored[k], v)]
        if bad or any(not 0 <= b < 1 for b in stored.get("betas", [])):
            raise CheckpointError(f"{path} has invalid optimizer settings ({', '.join(bad) or 'betas'}); the file is forged or damaged")


def load_state(path: Path, modules: nn.Module, optimizer, ema: EMA | None) -> int:
    """Restore weights, optimizer and EMA from `path` on every rank; returns the step to continue from."""
    meta, tensors = open_state(path)
    shapes = {name: tuple(p.shape) for name, p in modules.named_parameters()}  # global shapes (DTensor too)
    weights = {k[2:]: v for k, v in tensors.items() if k.startswith("w/")}
    expected = {k: tuple(v.shape) for k, v in modules.state_dict().items()}  # FSDP2 keeps names; DTensor shapes are global
    if {k: tuple(v.shape) for k, v in weights.items()} != expected:
        raise CheckpointError(f"{path} holds weights of another model (names or shapes differ); resume with the run that wrote it")
    moments: dict[str, dict] = {}
    for key, value in tensors.items():
        if key.startswith("o/"):
            fqn, _, name = key[2:].rpartition("/")
            if fqn not in shapes or name not in ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq") or \
                    tuple(value.shape) != (() if name == "step" else shapes[fqn]):
                raise CheckpointError(f"{path} holds an optimizer moment {key[2:]!r} this run does not have; the file is forged or from another run")
            moments.setdefault(fqn, {})[name] = value
    groups = json.loads(meta["param_groups"])
    fqn = {id(p): name for name, p in modules.named_parameters()}
    check_param_groups(path, groups, optimizer, [[fqn[id(p)] for p in g["params"]] for g in optimizer.param_groups])
    if ema is not None:
        missing = [name for name, p in ema.params.items() if tuple(tensors.get(f"ema/{name}", torch.empty(0)).shape) != tuple(p.shape)]
        if missing:
            raise CheckpointError(f"{path} lacks the EMA weights this run keeps ({missing[0]}...); resume with the same stage config")
    try:
        set_model_state_dict(modules, weights, options=_SCATTER)
        set_optimizer_state_dict(modules, optimizer, {"state": moments, "param_groups": groups}, options=_SCATTER)
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path} does not fit this run ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); the file is forged or from another run") from None
    if ema is not None:
        for name, param in ema.params.items():
            full = tensors[f"ema/{name}"]
            ema.shadow[name] = distribute_tensor(full, param.device_mesh, param.placements) if isinstance(param, DTensor) else full.to(param.device)
    return int(meta["step"])
