"""Capacity plan of a training stage before a run: memory per GPU, FLOPs and time per step and per stage.

The stage's model is built at full size on the meta device (no memory, no weights) exactly as the
trainer builds it, and one training step of the stage's losses runs there on a per-GPU batch:
- FLOPs: counted by torch's FlopCounterMode over that forward and backward (model FLOPs; activation
  checkpointing recomputes the blocks' forward on top, which MFU by convention does not count).
- activations: the bytes autograd saves for backward, recorded by a saved-tensor hook per transformer
  block. Attention runs the memory-efficient SDPA kernel's meta implementation, as a GPU does (SDPA
  on meta would take the math path and keep every L x L score matrix). With activation checkpointing (the stage's [model] gradient_checkpointing) only each block's
  input is kept, plus one block's activations while it is recomputed, plus what lives outside blocks.
- states, as the trainer keeps them: fp32 parameters, fp32 gradients of the trained parameters, AdamW's
  two fp32 moments and the fp32 EMA, all sharded over the GPUs by FSDP2 (one process: whole); FSDP2
  gathers the root unit and two blocks at a time in bf16 (the current one and the one prefetched) and
  reduces one block's gradients in fp32; a single GPU instead keeps autocast's bf16 weight copies.
Activations are counted in the compute dtype: autocast's float32 norms and softmax outputs are counted
at bf16, so leave the reserve below for them.
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch.autograd.graph import saved_tensors_hooks
from torch.utils.flop_counter import FlopCounterMode

from ..bench import DATASHEET_PEAK
from ..data.shards import LatentShards
from ..vae import load_vae
from .config import StageConfig
from .losses import PlannerHead, TrainModules
from .masking import sample_masks
from .trainer import build_model

RESERVE = 0.1  # of a GPU's memory kept for the CUDA context, NCCL buffers and allocator fragmentation
NETWORK = 50e9  # bytes/s between nodes per GPU: 400 Gb/s InfiniBand NDR, one link per GPU as on H100 clusters
NODE = 8  # GPUs per node, joined by NVLink


@dataclass(frozen=True)
class Accelerator:
    name: str
    peak_flops: float  # dense bf16 tensor-core peak, FLOP/s
    memory: float  # bytes
    nvlink: float = 0.0  # bytes/s each way per GPU within a node
    cuda: bool = True


GPUS = {
    "h100": Accelerator("H100 SXM 80GB", DATASHEET_PEAK["H100"], 80e9, nvlink=450e9),
    "h200": Accelerator("H200 SXM 141GB", DATASHEET_PEAK["H200"], 141e9, nvlink=450e9),
    "a100": Accelerator("A100 SXM 80GB", DATASHEET_PEAK["A100"], 80e9, nvlink=300e9),
}


@dataclass(frozen=True)
class Plan:
    stage: str
    gpus: int
    gpu: Accelerator
    mfu: float
    bf16: bool
    checkpointing: bool
    planner_params: int
    generator_params: int
    other_params: int  # the stage-1 planner head
    trained_params: int
    params_bytes: float  # per GPU, from here on
    grads_bytes: float
    optimizer_bytes: float  # AdamW moments
    ema_bytes: float
    gathered_bytes: float  # FSDP2 all-gather buffers, or autocast's bf16 weights on one GPU
    activation_bytes: float
    flops_per_step: float  # model FLOPs of one GPU's batch, forward and backward
    steps: int
    batch: int  # clips per GPU and step
    pixel_loss: bool  # its frozen VAE decoder's memory and FLOPs are not counted
    first_step: int = 0  # of the [[phases]] entry planned (steps: its length)

    @property
    def total_bytes(self) -> float:
        return self.params_bytes + self.grads_bytes + self.optimizer_bytes + self.ema_bytes + self.gathered_bytes + self.activation_bytes

    @property
    def fits(self) -> bool:
        return self.total_bytes <= (1 - RESERVE) * self.gpu.memory

    @property
    def traffic_bytes(self) -> float:
        """FSDP2 bytes each GPU sends per step: bf16 all-gathers for forward and backward, fp32 reduce-scatter."""
        total = self.planner_params + self.generator_params + self.other_params
        return (2 * 2 * total + 4 * self.trained_params) * (self.gpus - 1) / self.gpus

    @property
    def step_seconds(self) -> float:
        return self.flops_per_step / (self.mfu * self.gpu.peak_flops)

    def lines(self) -> list[str]:
        gb = lambda n: f"{n / 1e9:8.2f} GB"
        hours = self.steps * self.step_seconds / 3600
        lines = [
            f"stage {self.stage!r}, steps {self.first_step}-{self.first_step + self.steps}, on {self.gpus} x {self.gpu.name}: {self.batch} clips per GPU, global batch {self.batch * self.gpus}, "
            f"{'bf16 compute with fp32 master weights' if self.bf16 else 'fp32'}, FSDP2 {'over ' + str(self.gpus) + ' GPUs' if self.gpus > 1 else 'off (one process)'}, "
            f"activation checkpointing {'on' if self.checkpointing else 'off'}",
            f"parameters: planner {self.planner_params / 1e6:.1f} M, generator {self.generator_params / 1e6:.1f} M"
            + (f", planner head {self.other_params / 1e6:.2f} M" if self.other_params else "") + f"; trained {self.trained_params / 1e6:.1f} M",
            "memory per GPU:",
            f"  parameters (fp32)        {gb(self.params_bytes)}",
            f"  gradients (fp32)         {gb(self.grads_bytes)}",
            f"  AdamW moments (fp32)     {gb(self.optimizer_bytes)}",
            f"  EMA (fp32)               {gb(self.ema_bytes)}",
            f"  gathered weights/grads   {gb(self.gathered_bytes)}",
            f"  activations              {gb(self.activation_bytes)}",
            f"  total                    {gb(self.total_bytes)} of {self.gpu.memory / 1e9:.0f} GB",
            f"FLOPs per step per GPU: {self.flops_per_step / 1e12:.1f} TFLOP (model FLOPs, counted on the meta device); "
            f"all GPUs {self.flops_per_step * self.gpus / 1e15:.2f} PFLOP",
            f"time at {self.mfu:.0%} MFU of {self.gpu.peak_flops / 1e12:.0f} TFLOP/s: {self.step_seconds:.2f} s per step, "
            f"{hours:.1f} h for these {self.steps} steps ({hours / 24:.1f} days, {self.steps * self.batch * self.gpus / 1e6:.1f} M clips)",
        ]
        if self.gpus > 1:
            one_node = self.gpus <= NODE and self.gpu.nvlink
            speed, link = (self.gpu.nvlink, "NVLink, one node") if one_node else (NETWORK, "400 Gb/s InfiniBand per GPU between nodes")
            lines.append(
                f"FSDP2 traffic per GPU and step: {self.traffic_bytes / 1e9:.1f} GB, {self.traffic_bytes / speed:.2f} s at {speed / 1e9:.0f} GB/s "
                f"({link}); a step shorter than that waits on the network unless the transfers overlap compute"
            )
        if self.pixel_loss:
            lines.append("not counted: the pixel loss's VAE decoder (its weights, activations and FLOPs)")
        if not self.fits:
            fixes = "lower [optim] batch" + ("" if self.checkpointing else ", turn on [model] gradient_checkpointing") + " or use more GPUs"
            lines.append(
                f"DOES NOT FIT: {self.total_bytes / 1e9:.2f} GB needed per GPU but {(1 - RESERVE) * self.gpu.memory / 1e9:.2f} GB "
                f"usable on {self.gpu.name} ({RESERVE:.0%} kept for CUDA, NCCL and fragmentation); {fixes}"
            )
        return lines


def plan_stage(cfg: StageConfig, gpus: int, gpu: Accelerator, mfu: float = 0.4, init: str | None = None) -> Plan:
    """The plan of `cfg` on `gpus` GPUs of kind `gpu` (its batch is per GPU, as the trainer reads it)."""
    bf16 = cfg.optim.precision == "bf16" or (cfg.optim.precision == "auto" and gpu.cuda)
    vae = LatentShards(cfg.data.paths, cfg.data.shard_buffer).space if cfg.data.loader == "shards" else load_vae(cfg.data.vae)
    with torch.device("meta"):
        model = build_model(cfg, init, vae)
        head = PlannerHead(model.config) if "reconstruction" in cfg.train.losses else None
        modules = TrainModules(model, head, tuple(x for x in cfg.train.losses if x != "pixel"))
    model.planner.requires_grad_("planner" in cfg.train.networks)
    model.generator.requires_grad_("generator" in cfg.train.networks)
    model.gradient_checkpointing = False  # measured block by block instead
    params = list(modules.parameters())
    total = sum(p.numel() for p in params)
    trained = sum(p.numel() for p in params if p.requires_grad)
    shards = gpus if gpus > 1 else 1
    units = [sum(p.numel() for p in block.parameters()) for net in (model.planner, model.generator) for block in net.blocks]
    if gpus > 1:
        gathered = 2 * (total - sum(units) + 2 * max(units)) + 4 * max(units)
    else:
        gathered = 2 * total if bf16 else 0
    flops, activations = _measure_step(cfg, modules, vae.downscale, torch.bfloat16 if bf16 else torch.float32)
    return Plan(
        stage=cfg.name, gpus=gpus, gpu=gpu, mfu=mfu, bf16=bf16, checkpointing=cfg.model.gradient_checkpointing,
        planner_params=sum(p.numel() for p in model.planner.parameters()),
        generator_params=sum(p.numel() for p in model.generator.parameters()),
        other_params=sum(p.numel() for p in head.parameters()) if head else 0, trained_params=trained,
        params_bytes=4 * total / shards, grads_bytes=4 * trained / shards, optimizer_bytes=8 * trained / shards,
        ema_bytes=4 * trained / shards if cfg.optim.ema > 0 else 0, gathered_bytes=gathered,
        activation_bytes=activations.peak(cfg.model.gradient_checkpointing), flops_per_step=flops,
        steps=cfg.steps, batch=cfg.optim.batch, pixel_loss="pixel" in cfg.train.losses,
    )


def plan_phases(cfg: StageConfig, gpus: int, gpu: Accelerator, mfu: float = 0.4, init: str | None = None) -> list[Plan]:
    """One plan per phase of the stage ([[phases]]; the whole stage when it has none)."""
    starts = [0] + [p.start for p in cfg.phases if p.start < cfg.steps]
    return [
        dataclasses.replace(plan_stage(cfg.phase(first)[1], gpus, gpu, mfu, init), first_step=first, steps=end - first)
        for first, end in zip(starts, starts[1:] + [cfg.steps])
    ]


@dataclass
class SavedBytes:
    """Bytes autograd saved for backward: outside the blocks, per block, and each block's input."""

    outside: int = 0
    blocks: dict = dataclasses.field(default_factory=dict)
    inputs: int = 0

    def peak(self, checkpointing: bool) -> int:
        inside = self.blocks.values()
        return self.outside + (self.inputs + max(inside, default=0) if checkpointing else sum(inside))


def _measure_step(cfg: StageConfig, modules: TrainModules, downscale: int, dtype: torch.dtype) -> tuple[float, SavedBytes]:
    """(FLOPs, saved bytes) of one forward and backward of the stage's losses on one GPU's batch, on meta."""
    modules.to(dtype)
    config = modules.model.config
    b, k, c = cfg.optim.batch, cfg.data.frames, config.latent_channels
    h, w = cfg.data.height // downscale, cfg.data.width // downscale
    latents = lambda hh, ww: torch.empty(b, k, c, hh, ww, device="meta", dtype=dtype)
    high, low = latents(h, w), latents(h // config.planner_downscale, w // config.planner_downscale)
    masked = sample_masks(cfg.masks, b, k, 0.0, torch.Generator().manual_seed(0)).to("meta")
    t, drop = torch.empty(b, device="meta", dtype=dtype), torch.zeros(b, dtype=torch.bool, device="meta")
    flow = latents(h, w) if config.anchor == "flow" else None
    saved = SavedBytes()
    with _gpu_attention(), _saved_by_block(modules, saved), FlopCounterMode(display=False) as counter:
        losses = modules(high, low, masked, t, latents(h, w), drop, flow)
        sum(losses.values()).backward()
    return float(counter.get_total_flops()), saved


def _efficient_attention(q, k, v, attn_mask=None):
    """SDPA as the memory-efficient kernel runs it (a boolean mask becomes an additive bias): it saves
    the output and the log-sum-exp for backward, never the scores."""
    bias = None
    if attn_mask is not None:
        bias = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device).masked_fill(~attn_mask, float("-inf"))
        bias = bias.expand(*q.shape[:-2], q.shape[-2], k.shape[-2])
    return torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, bias, torch.is_grad_enabled())[0]


@contextmanager
def _gpu_attention():
    sdpa = torch.nn.functional.scaled_dot_product_attention
    torch.nn.functional.scaled_dot_product_attention = _efficient_attention
    try:
        yield
    finally:
        torch.nn.functional.scaled_dot_product_attention = sdpa


@contextmanager
def _saved_by_block(modules: TrainModules, saved: SavedBytes):
    """Attribute every tensor saved for backward (each storage once, parameters excluded) to its block."""
    seen = {p.untyped_storage()._cdata for p in modules.parameters()}
    owner: list = [None]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage._cdata not in seen:
            seen.add(storage._cdata)
            if owner[-1] is None:
                saved.outside += storage.nbytes()
            else:
                saved.blocks[owner[-1]] = saved.blocks.get(owner[-1], 0) + storage.nbytes()
        return tensor

    def enter(block, args) -> None:
        owner.append(id(block))
        saved.inputs += args[0].numel() * args[0].element_size()

    def leave(*_) -> None:
        owner.pop()

    blocks = [block for net in (modules.model.planner, modules.model.generator) for block in net.blocks]
    handles = [h for block in blocks for h in (block.register_forward_pre_hook(enter), block.register_forward_hook(leave))]
    try:
        with saved_tensors_hooks(pack, lambda tensor: tensor):
            yield
    finally:
        for handle in handles:
            handle.remove()
