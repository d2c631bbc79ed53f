"""One training script for one CPU process, one GPU, or many GPUs and nodes under `torchrun`.

With several processes the model is sharded with FSDP2 (`fully_shard` per block, then the root),
over NCCL on CUDA and over gloo on CPU (FSDP2 runs on gloo in torch 2.13). `sharding="replicate"`
instead keeps the whole model in every process and averages gradients with one all-reduce per step
(DDP-style), for backends or models where sharding does not pay.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from ..errors import ConfigError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    sharded: bool = False  # FSDP2 (else whole model per process, gradients all-reduced)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


SHARDINGS = ("fsdp", "replicate")


def launch_env(name: str, default: int) -> int:
    """One of torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK), a whole number or one line saying so."""
    text = os.environ.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < (1 if name == "WORLD_SIZE" else 0):
        raise ConfigError(f"{name}={text!r} is not a process {'count' if name == 'WORLD_SIZE' else 'number'}; "
                          "start with torchrun, or leave RANK, WORLD_SIZE and LOCAL_RANK unset")
    return value


def init_distributed(device: str = "auto", sharding: str = "fsdp") -> Dist:
    """Reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); a plain `python` call is one process."""
    world = launch_env("WORLD_SIZE", 1)
    want_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if world == 1:
        return Dist(device=torch.device("cuda" if want_cuda else "cpu"))
    local = launch_env("LOCAL_RANK", 0)
    launch_env("RANK", 0)  # read by torch's process group: a word there would end in its traceback
    if want_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), torch.device(f"cuda:{local}" if want_cuda else "cpu"), sharded=sharding == "fsdp")


def shard(modules: nn.Module, d: Dist, bf16: bool) -> None:
    """FSDP2 over losses.TrainModules: each transformer block its own unit, everything else (embeddings,
    Z_uncond, output layers, the planner head) in the root unit, whose parameters are whole during the
    root forward, where the losses read Z_uncond directly; bf16 compute with fp32 gradient reductions."""
    if not d.sharded:
        return
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    for net in (modules.model.planner, modules.model.generator):
        for block in net.blocks:
            fully_shard(block, mp_policy=policy)
    fully_shard(modules, mp_policy=policy)


@contextmanager
def whole(modules: nn.Module):
    """The root unit's parameters gathered for calls outside the root forward (previews); blocks gather themselves."""
    sharded = isinstance(modules, FSDPModule)
    if sharded:
        modules.unshard()
    try:
        yield
    finally:
        if sharded:
            modules.reshard()


def average_gradients(params: list[nn.Parameter], d: Dist) -> None:
    """DDP-style mean of gradients over processes (unsharded runs); missing grads count as zeros."""
    if d.world == 1 or d.sharded:
        return
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= d.world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def close(d: Dist) -> None:
    if d.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
