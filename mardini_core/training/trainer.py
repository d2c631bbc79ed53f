"""The training loop of one stage: data in a seeded, step-indexed order, the stage's losses, AdamW with
warm-up and cosine decay, gradient clipping, optional EMA, atomic checkpoints, previews, logs.

Everything random in step s (which clips, masks, times, noise, plan dropping) is drawn from
generators seeded by (seed, s, rank), so `--resume` from step s repeats the uninterrupted run exactly.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import MarDiniConfig, preset
from ..data import ClipConfig, LatentClips, VideoClips, VideoReadError
from ..data.frames import FrameBank
from ..data.shards import LatentShards
from ..data.split import HELD_OUT_FILES
from ..data.synthetic import synthetic_clip
from ..interpolation import Dis, anchor_frames
from ..errors import ConfigError, InputError, TrainingError
from ..model import MarDini
from ..outputs import check_run_folder
from ..generation.latents import encode_scaled, size_multiple, to_model_space
from ..vae import load_vae
from ..memory import check_fits
from .config import StageConfig
from .distributed import Dist, average_gradients, close, init_distributed, shard, whole
from .losses import PlannerHead, TrainModules
from .masking import sample_masks
from .optim import EMA, cosine_lr
from .preview import write_preview
from .progress import ProgressLine, RunLog, StepValues
from .state import gather_model, latest_state, load_state, read_meta, save_state, state_files


@dataclasses.dataclass(frozen=True)
class RunOptions:
    out: Path
    init: str | None = None  # a MarDini checkpoint of the previous stage
    resume: bool = False
    device: str = "auto"
    cache_dir: str | None = None  # latent cache shared between runs (default <out>/latents)
    sharding: str = "fsdp"  # several processes: FSDP2 shards, or "replicate" (gradient all-reduce)
    overwrite: bool = False  # replace a run already in `out` (its states go now, its model when the new one is saved)


@lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))


def data_order(step: int, rank: int, batch: int, world: int, n: int, seed: int, permutation=None) -> list[tuple[int, int]]:
    """(clip index, epoch) of each clip of `rank` at `step`: epochs are seeded permutations (`permutation(seed, epoch)`,
    default a shuffle of all n clips), ranks take disjoint slices."""
    order = permutation or (lambda seed, epoch: _permutation(n, seed, epoch))
    first = (step * world + rank) * batch
    return [(int(order(seed, p // n)[p % n]), p // n) for p in range(first, first + batch)]


def check_trainable(config: MarDiniConfig, device: torch.device | None) -> None:
    """On the CPU the whole training state lives in memory: refuse a model whose weights, gradients and
    AdamW moments (fp32, 16 bytes a parameter) cannot fit, before any of it is allocated."""
    if device is None or device.type != "cpu":
        return  # GPUs: FSDP shards the state over the ranks (train --plan gives the per-GPU memory)
    with torch.device("meta"):
        params = sum(p.numel() for p in MarDini(config).parameters())
    check_fits(16 * params, f"training {config.name} on the CPU ({params / 1e6:.0f} M parameters: weights, gradients and "
               "AdamW's moments)", "train a smaller preset ([model] preset), or on GPUs with torchrun (train --plan sizes it)")


def build_model(cfg: StageConfig, init: str | None, vae, device: torch.device | None = None) -> MarDini:
    """A fresh preset (seeded) or the previous stage's weights, with this stage's attention, anchor and window;
    with `device`, checked to fit there first (check_trainable)."""
    base = load_checkpoint(init) if init else None
    # latent channels come from one place, the stage's VAE (a 16-channel paper preset trains in TAEF2's 32)
    # shards may name their latents' normalisation (data/shards.py); our own VAEs' latents are used as they are
    config = base.config if base else preset(cfg.model.preset, vae=vae.name, latent_channels=vae.latent_channels, **getattr(vae, "normalisation", {}))
    if config.latent_channels != vae.latent_channels:
        raise ConfigError(
            f"the model expects {config.latent_channels}-channel latents but VAE {vae.name} makes {vae.latent_channels}; "
            "set [data] vae to the VAE the model was trained with"
        )
    anchor = cfg.model.anchor or config.anchor
    if base and "flow" in (anchor, config.anchor) and anchor != config.anchor:
        raise ConfigError(f"--init {init} has anchor {config.anchor!r} but the stage asks for {anchor!r}; the flow anchor changes the "
                          "generator's input, so start a flow-anchored model from a flow-anchored checkpoint or from scratch")
    config = config.replace(max_frames=max(config.max_frames, cfg.max_frames), anchor=anchor)
    check_trainable(config, device)
    model = MarDini(config)
    if base:
        model.load_state_dict(base.state_dict())
    model.set_generator_attention(cfg.model.attention)
    return model


class Trainer:
    def __init__(self, cfg: StageConfig, opts: RunOptions):
        if not cfg.data.paths:
            raise ConfigError(f"stage {cfg.name!r} names no videos: set [data] paths or pass --data")
        self.stage, self.opts = cfg, opts  # self.cfg: the stage as its phase at the current step has it
        self.phase_start, self.cfg = cfg.phase(0)
        self.d: Dist = init_distributed(opts.device, opts.sharding)
        self.bf16 = cfg.optim.precision == "bf16" or (cfg.optim.precision == "auto" and self.d.device.type == "cuda")
        self.out = check_run_folder(opts.out, opts.resume, opts.overwrite)  # a finished model or log is never replaced unasked
        (self.out / "checkpoints").mkdir(parents=True, exist_ok=True)
        self.resume_from = latest_state(self.out / "checkpoints") if opts.resume else None
        states = state_files(self.out / "checkpoints")
        if opts.resume and self.resume_from is None and states:
            raise TrainingError(
                f"every training state in {self.out / 'checkpoints'} is damaged ({len(states)} file(s), warnings above); "
                "nothing can be resumed: pass --overwrite to start the run again, or choose a new --out"
            )
        if self.resume_from is None and states:
            if not opts.overwrite:
                raise ConfigError(f"{self.out} already holds a run; pass --resume to continue it, --overwrite to replace it, or choose a new --out")
            if self.d.main:
                for old in states:
                    old.unlink(missing_ok=True)
            self.d.barrier()
        self.shards = LatentShards(cfg.data.paths, cfg.data.shard_buffer) if cfg.data.loader == "shards" else None
        self.vae = self.shards.space if self.shards else load_vae(cfg.data.vae, device=self.d.device)  # shards need no VAE
        torch.manual_seed(cfg.seed)
        if self.resume_from is not None:
            meta = read_meta(self.resume_from)
            if meta.get("schedule") != cfg.schedule_json():
                raise ConfigError(f"{self.resume_from} was written with a different stage config; resume with the same config or use a new --out")
            config = MarDiniConfig.from_json(meta["model_config"])
            check_trainable(config, self.d.device)
            model = MarDini(config)
        else:
            model = build_model(cfg, opts.init, self.vae, self.d.device)
        self.config = model.config
        model.set_attention_backend(cfg.model.backend)
        model.gradient_checkpointing = cfg.model.gradient_checkpointing
        model.planner.requires_grad_("planner" in cfg.train.networks)
        model.generator.requires_grad_("generator" in cfg.train.networks)
        head = PlannerHead(model.config) if "reconstruction" in cfg.train.losses else None
        decoder = self.vae.decoder.requires_grad_(False) if "pixel" in cfg.train.losses else None  # frozen: gradients pass through
        self.modules = TrainModules(model, head, cfg.train.losses, decoder).to(self.d.device)
        shard(self.modules, self.d, self.bf16)
        self.params = [p for p in self.modules.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        trainable = {n: p for n, p in self.modules.model.named_parameters() if p.requires_grad}
        self.ema = EMA(trainable, cfg.optim.ema) if cfg.optim.ema > 0 else None
        self.step = load_state(self.resume_from, self.modules, self.optimizer, self.ema) if self.resume_from else 0
        self.bad_clips: set[int] = set()
        self.phase_start, self.cfg = cfg.phase(self.step)
        self.data = self._dataset()
        self._clip_pool = ThreadPoolExecutor(max_workers=max(1, min(16, (os.cpu_count() or 2) - 1)))  # OpenCV releases the GIL

    def _dataset(self) -> LatentClips | FrameBank | LatentShards:
        c = self.cfg.data
        multiple = size_multiple(self.config, self.vae.downscale)
        if c.height % multiple or c.width % multiple:
            raise ConfigError(f"[data] height and width must be multiples of {multiple} for this model (VAE, planner and patch sizes)")
        if self.config.anchor == "flow" and c.loader != "frames":
            raise ConfigError("a flow-anchored model trains from pixels: set [data] loader = \"frames\"")
        if "pixel" in self.cfg.train.losses and self.config.anchor != "flow":  # the anchor may come from --init
            raise ConfigError(f"the 'pixel' loss scores a flow-anchored model's frames, but this model's anchor is {self.config.anchor!r}")
        if self.shards:
            self.shards.check(c.frames, c.stride, c.height, c.width, self.config)
            return self.shards
        if c.loader == "frames":
            side = c.short_side or int(1.15 * max(c.height, c.width * 9 / 16))
            return FrameBank(c.paths, side=side, frames=c.frames, held_out=c.held_out)
        clip = ClipConfig(c.frames, c.stride, c.height, c.width, c.crop, planner_downscale=self.config.planner_downscale)
        clips = VideoClips(c.paths, clip, seed=self.cfg.seed, exclude=HELD_OUT_FILES if c.held_out else frozenset())
        latents = LatentClips(clips, self.vae, (self.opts.cache_dir or self.out / "latents") if c.cache_latents else None)
        if c.cache_latents:
            latents.fill(self.d.rank, self.d.world)
            self.d.barrier()
        return latents

    def batch(self, step: int) -> tuple[torch.Tensor | None, ...]:
        """This rank's inputs at `step`: high (B, K, C, H, W) and low (B, K, C, h, w) model-space latents,
        then `draws` (masked, t, eps, drop_plan), then the flow anchor's latents, the clips' pixels and
        the anchor's pixels (None unless "flow" / the "pixel" loss)."""
        if self.cfg.data.loader == "frames":
            return self._frames_batch(step)
        cached = self.cfg.data.cache_latents
        order = data_order(step - self.phase_start, self.d.rank, self.cfg.optim.batch, self.d.world, len(self.data), self.cfg.seed, self.shards and self.shards.permutation)
        pairs = [self._load(i, 0 if cached else epoch) for i, epoch in order]
        high, low = (to_model_space(torch.stack(x), self.config).to(self.d.device) for x in zip(*pairs))
        return high, low, *self.draws(step, high.shape), None, None, None

    def _frames_batch(self, step: int) -> tuple[torch.Tensor | None, ...]:
        """Fresh clips from the frame bank (and synthetic motion) with their flow anchors, built in parallel
        (one generator per clip, so the result does not depend on thread timing), then encoded at once."""
        c, b = self.cfg.data, self.cfg.optim.batch
        k, down = c.frames, self.vae.downscale
        shape = (b, k, self.config.latent_channels, c.height // down, c.width // down)
        masked, t, eps, drop = self.draws(step, shape)
        given = (~masked).cpu().tolist()
        first = ((self.cfg.seed * 1_000_003 + step) * 1013 + self.d.rank) * 4096
        built = list(self._clip_pool.map(lambda i: self._frames_clip(first + i, given[i]), range(b)))
        to_pixels = lambda frames: torch.from_numpy(np.stack(frames)).permute(0, 1, 4, 2, 3)  # (B, K, 3, H, W)
        pixels = to_pixels([clip for clip, _ in built]).float() / 255
        encode = lambda x, f: encode_scaled(self.vae.encode, x.flatten(0, 1).to(self.d.device), self.config, down, f).unflatten(0, (b, k))
        with torch.no_grad():
            high, low = encode(pixels, 1), encode(pixels, self.config.planner_downscale)
            anchors = to_pixels([anchor for _, anchor in built]) if self.config.anchor == "flow" else None
            flow = None if anchors is None else encode(anchors, 1)
        if "pixel" not in self.cfg.train.losses:
            pixels = anchors = None  # only the pixel loss reads them
        device = lambda x: None if x is None else x.to(self.d.device)
        return high, low, masked, t, eps, drop, flow, device(pixels), device(anchors)

    def _frames_clip(self, seed: int, given: list[bool]) -> tuple[np.ndarray, np.ndarray | None]:
        """One clip (K, H, W, 3) uint8 drawn with its own seed, and its flow anchor (float) for "flow" models.
        Training anchors with DIS (milliseconds a clip, no network on the loader's threads). A residual learnt
        around DIS frames adds nothing around RIFE's at inference (README: Quality): the default keeps none of it."""
        c, gen = self.cfg.data, torch.Generator().manual_seed(seed)
        clip = self.data.clip(c.height, c.width, (c.stride, c.stride_max or c.stride), gen)
        if c.synthetic and float(torch.rand((), generator=gen)) < c.synthetic:
            other = self.data.clip(c.height, c.width, (1, 1), gen)
            clip = synthetic_clip(clip[len(clip) // 2], other[0], c.frames, gen)
        anchor = anchor_frames(clip.astype(np.float32) / 255, given, Dis()) if self.config.anchor == "flow" else None
        return clip, anchor

    def _load(self, index: int, variant: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A clip's latents; a clip that fails to decode mid-run is reported and replaced by the next one."""
        for i in [(index + k) % len(self.data) for k in range(len(self.data))]:
            try:
                return self.data.load(i, variant)
            except VideoReadError as exc:
                if i not in self.bad_clips:
                    self.bad_clips.add(i)
                    warnings.warn(f"skipping clip {i}: {exc}", stacklevel=2)
        raise InputError("no clip of the data set can be decoded any more; check the video files")

    def draws(self, step: int, shape: torch.Size) -> tuple[torch.Tensor, ...]:
        """(masked (B, K), t (B,), eps like the batch, drop_plan (B,)) from a generator seeded by (seed, step, rank)."""
        gen = torch.Generator().manual_seed((self.cfg.seed * 1_000_003 + step) * 1009 + self.d.rank)
        b, k = shape[:2]
        masked = sample_masks(self.cfg.masks, b, k, step / max(1, self.cfg.steps - 1), gen)
        t = torch.rand(b, generator=gen)
        eps = torch.randn(shape, generator=gen)
        drop = torch.rand(b, generator=gen) < self.cfg.train.uncond_prob
        if self.cfg.train.regression:
            t = torch.where(torch.rand(b, generator=gen) < self.cfg.train.regression, 1.0, t)
        return tuple(x.to(self.d.device) for x in (masked, t, eps, drop))

    def train_step(self, step: int, *inputs: torch.Tensor | None) -> dict[str, torch.Tensor | float]:
        """One optimisation step on this rank's inputs of `step` (from `batch(step)`): the loss, each term and
        the gradient norm as device scalars (no host sync), and the learning rate."""
        lr = cosine_lr(step, self.cfg.steps, self.cfg.optim.lr, self.cfg.optim.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(self.d.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            losses = self.modules(*inputs)
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        average_gradients(self.params, self.d)
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.grad_clip)
        self.optimizer.step()
        if self.ema:
            self.ema.update()
        values = {k: v.detach().float() for k, v in losses.items()}
        if self.d.world > 1:  # report the mean over ranks (the log is written by rank 0)
            stacked = torch.stack(list(values.values()))
            torch.distributed.all_reduce(stacked)
            values = dict(zip(values, (stacked / self.d.world).unbind()))
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
        return {"loss": sum(values.values()), **values, "lr": lr, "grad_norm": norm.detach()}

    def _meta(self) -> dict:
        return {"schedule": self.stage.schedule_json(), "stage": self.stage.to_json(), "model_config": self.config.to_json()}

    def _enter_phase(self, step: int) -> None:
        """At a [[phases]] boundary (between steps, no batch in flight): the settings from `step` on and the data of their clips."""
        start, view = self.stage.phase(step)
        if start != self.phase_start:
            self.phase_start, self.cfg = start, view
            self.data = self._dataset()

    def run(self) -> Path:
        cfg, ck = self.cfg, self.cfg.checkpoint
        log = RunLog(self.out / "log.jsonl", self.step) if self.d.main else None
        bar = ProgressLine(cfg.steps) if self.d.main else None
        start_step, window_time, window_frames, values = self.step, 0.0, 0, None
        prefetch = ThreadPoolExecutor(max_workers=1)  # the next step's clips load while this step trains
        upcoming = prefetch.submit(self.batch, self.step)
        while self.step < cfg.steps:
            tic = time.perf_counter()
            batch = upcoming.result()
            if self.step + 1 < cfg.steps:
                self._enter_phase(self.step + 1)
                upcoming = prefetch.submit(self.batch, self.step + 1)
            record = self.train_step(self.step, *batch)
            lr = record.pop("lr")
            values = values or StepValues(list(record), self.d.device)
            values.add(self.step, record)
            self.step += 1
            logged = self.step % ck.log_every == 0 or self.step == cfg.steps
            saved = self.step % ck.every == 0 or self.step == cfg.steps
            previewed = ck.sample_every and self.step % ck.sample_every == 0
            if logged or saved or previewed:  # the run's only host syncs
                latest, bad_step, bad = values.read()
                if bad_step is not None:  # found before any state of a step after it is saved
                    prefetch.shutdown(cancel_futures=True)
                    if bar:
                        bar.close()
                    raise self._diverged(bad_step, bad)
            window_time += time.perf_counter() - tic
            window_frames += batch[0].shape[0] * batch[0].shape[1] * self.d.world  # clips x frames of every rank
            if self.d.main and logged:
                record = {**latest, "lr": lr, "step": self.step, "frames_per_s": window_frames / window_time, "time": time.time()}
                log.write(record)
                bar.update(self.step, record["loss"], record["lr"], record["frames_per_s"], self.step - start_step)
                window_time, window_frames = 0.0, 0
            if saved:
                save_state(self.out / "checkpoints", self.step, self.modules, self.optimizer, self.ema, self._meta(), self.d, ck.keep)
            if previewed:
                self.preview()
        prefetch.shutdown()
        if bar:
            bar.close()
        return self.finish()

    def _diverged(self, step: int, record: dict) -> TrainingError:
        """The one-line stop of a run whose loss or gradient became NaN or infinite at step index `step`
        (found at the next log or checkpoint step; nothing from it on is saved)."""
        last = latest_state(self.out / "checkpoints")
        kept = f"the last good state is {last} (continue from it with --resume)" if last else "no state was saved yet"
        return TrainingError(
            f"training stopped at step {step + 1}: the loss became {record['loss']} (gradient norm {record['grad_norm']}); "
            f"nothing from this step on was saved and {kept}; lower [optim] lr or check the data first"
        )

    def preview(self) -> None:
        """A few DDIM steps on the first clip with a mask of the stage, saved as a PNG strip (truth over sample)."""
        if self.cfg.data.loader != "latents":
            return  # previews read the latent cache and decode with the stage's VAE; frames and shards runs are judged by `eval`
        high, low = (to_model_space(x[None], self.config).to(self.d.device) for x in self.data.load(0))
        masked = sample_masks(self.cfg.masks, 1, high.shape[1], self.step / self.cfg.steps, torch.Generator().manual_seed(self.cfg.seed))
        model = self.modules.model
        planned = "diffusion" in self.cfg.train.losses
        with whole(self.modules):
            write_preview(self.out / "samples" / f"step-{self.step:08d}.png", model, self.vae, high, low, masked.to(self.d.device), planned, self.cfg.checkpoint.sample_steps, self.d.main)

    def finish(self) -> Path:
        """Save the final model (EMA weights when EMA is on) with save_checkpoint; returns its path."""
        state = gather_model(self.modules, self.ema, prefer_ema=True)
        path = self.out / "model.safetensors"
        if self.d.main:
            if bad := [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]:
                raise TrainingError(f"the trained weights hold NaN or infinite values after step {self.step} ({bad[0]} and "
                                    f"{len(bad) - 1} more); {path.name} was not written: lower [optim] lr or check the data")
            final = MarDini(self.config)
            final.load_state_dict(state)
            save_checkpoint(path, final, {"stage": self.cfg.name, "steps": self.step, "ema": self.cfg.optim.ema, "training": json.dumps(self._meta())})
        self.d.barrier()
        close(self.d)
        return path
