"""Latent shards: clips' raw VAE latents packed many to a safetensors file, each with a small JSON index.

A shard `NAME.safetensors` holds two tensors, `high` (N, K, C, H/d, W/d) and `low` (N, K, C,
H/(d*p), W/(d*p)): the raw latents (what the VAE's encoder returns, before any scale or shift) of N
clips of K frames at H x W pixels, and of the same clips shrunk p = planner_downscale times. Its
index `NAME.json` says what they are (see `ShardIndex`); it is written after the tensors, so a shard
is complete exactly when its index exists. `encode` writes shards from videos (data/encode.py); any
other program may write them too (docs/latent-shards.md).

`LatentShards` reads them for the trainer without the VAE or the videos: clips come out in an order
seeded by the epoch, shard order shuffled and clips shuffled within a buffer of a few consecutive
shards, so a rank's reads move through the files rather than jumping across all of them.
"""
from __future__ import annotations

import bisect
import json
import os
from dataclasses import MISSING, asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import torch
from safetensors import SafetensorError, safe_open

from ..atomic import atomic_path
from ..checkpoint import atomic_save_safetensors
from ..config import MarDiniConfig
from ..errors import ConfigError, InputError

FORMAT = "mardini-latent-shard"
VERSION = 1


@dataclass(frozen=True)
class LatentSpace:
    """The latents' space as a trainer needs it, without the autoencoder that made them."""

    name: str  # the VAE's name; becomes a new model's config.vae
    latent_channels: int
    downscale: int  # pixels per latent along a side
    latent_scale: float | None = None  # model latent = (raw - latent_shift) * latent_scale; None: the model's own (1, 0 for a new one)
    latent_shift: float | None = None

    @property
    def normalisation(self) -> dict[str, float]:
        """The model-config fields these latents name (none for our own VAEs)."""
        return {k: v for k, v in (("latent_scale", self.latent_scale), ("latent_shift", self.latent_shift)) if v is not None}


@dataclass(frozen=True)
class ShardIndex:
    """The JSON beside each shard. Keys not marked optional are required."""

    format: str  # "mardini-latent-shard"
    version: int  # 1
    clips: int  # N
    vae: str
    latent_channels: int  # C
    downscale: int  # d
    frames: int  # K
    stride: int  # the clips' frame step in the source video (their frame rate)
    height: int  # H, pixels
    width: int  # W, pixels
    planner_downscale: int  # p
    latent_scale: float | None = None  # optional
    latent_shift: float | None = None  # optional
    sources: tuple = ()  # optional: [file, first frame] of each clip (encode reads it to resume)

    @property
    def space(self) -> LatentSpace:
        return LatentSpace(self.vae, self.latent_channels, self.downscale, self.latent_scale, self.latent_shift)

    @property
    def geometry(self) -> tuple[int, int, int, int, int]:
        return (self.frames, self.stride, self.height, self.width, self.planner_downscale)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The tensors' shapes this index promises."""
        h, w = self.height // self.downscale, self.width // self.downscale
        p = self.planner_downscale
        return {"high": (self.clips, self.frames, self.latent_channels, h, w), "low": (self.clips, self.frames, self.latent_channels, h // p, w // p)}


_JSON_TYPES = {"int": int, "str": str, "float | None": (int, float, type(None)), "tuple": list}  # ShardIndex's annotations -> JSON values


def read_index(path: Path) -> ShardIndex:
    """A shard's index, checked key by key; InputError naming the file and the key otherwise."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"shard index {path} is unreadable ({exc}); delete it and its .safetensors and write the shard again") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or raw.get("version") != VERSION:
        raise InputError(f"{path} is not a version-{VERSION} {FORMAT} index (see docs/latent-shards.md)")
    known = {f.name: f for f in fields(ShardIndex)}
    if missing := [n for n, f in known.items() if f.default is MISSING and n not in raw]:
        raise InputError(f"shard index {path} lacks {missing}")
    for key, value in raw.items():
        kind = _JSON_TYPES.get(known[key].type) if key in known else None
        if kind is None or isinstance(value, bool) or not isinstance(value, kind):
            raise InputError(f"shard index {path}: {key!r} = {value!r} is not a known key of the right type")
    if not all(isinstance(s, list) and len(s) == 2 for s in raw.get("sources", ())):
        raise InputError(f"shard index {path}: 'sources' must list [file, first frame] pairs")
    index = ShardIndex(**{**raw, "sources": tuple(map(tuple, raw.get("sources", ())))})
    multiple = index.downscale * index.planner_downscale
    if min(index.clips, index.latent_channels, index.downscale, index.frames, index.stride, index.planner_downscale) < 1 or index.height % multiple or index.width % multiple:
        raise InputError(f"shard index {path}: sizes must be positive, height and width multiples of downscale * planner_downscale")
    return index


def write_shard(path: Path, high: torch.Tensor, low: torch.Tensor, index: ShardIndex) -> None:
    """Write `path` (.safetensors) and then its index (.json), each atomically."""
    if {"high": tuple(high.shape), "low": tuple(low.shape)} != index.shapes():
        raise ValueError(f"shard tensors {tuple(high.shape)}, {tuple(low.shape)} differ from the index's {index.shapes()}")
    atomic_save_safetensors(path, {"high": high.contiguous(), "low": low.contiguous()}, {"format": FORMAT})
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(asdict(index)))


def index_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The shard indices in the given folders (or index files), in name order."""
    found = []
    for p in map(Path, paths):
        found += sorted(f for f in p.glob("*.json") if f.with_suffix(".safetensors").is_file()) if p.is_dir() else [p]
    return found


@lru_cache(maxsize=4)
def _epoch_order(counts: tuple[int, ...], buffer: int, seed: int, epoch: int) -> torch.Tensor:
    """Every clip once: shards in a seeded order, clips shuffled within each run of `buffer` shards."""
    gen = torch.Generator().manual_seed(seed * 7919 + epoch)
    starts = [0, *torch.tensor(counts).cumsum(0).tolist()]
    runs = []
    for group in torch.randperm(len(counts), generator=gen).split(buffer):
        clips = torch.cat([torch.arange(starts[s], starts[s + 1]) for s in group.tolist()])
        runs.append(clips[torch.randperm(len(clips), generator=gen)])
    return torch.cat(runs)


class LatentShards:
    """`load(index)` -> raw latents (high (K, C, H/d, W/d), low (K, C, h, w)) of a clip in the shards."""

    def __init__(self, paths: Iterable[str | os.PathLike], buffer: int = 4):
        paths = list(paths)
        self.files = index_files(paths)
        if not self.files:
            raise InputError(f"no latent shards (NAME.json beside NAME.safetensors) in {', '.join(map(str, paths))}; "
                             "write them with `python -m mardini_core encode`")
        self.indices = [read_index(f) for f in self.files]
        first = self.indices[0]
        for f, index in zip(self.files, self.indices):
            if (index.space, index.geometry) != (first.space, first.geometry):
                raise InputError(f"shards {self.files[0]} and {f} hold different latents (VAE, clip size or frames); "
                                 "train on one kind per stage")
        self.space, self.buffer = first.space, buffer
        self.counts = tuple(i.clips for i in self.indices)
        self.starts = torch.tensor((0, *self.counts)).cumsum(0).tolist()

    def __len__(self) -> int:
        return self.starts[-1]

    def check(self, frames: int, stride: int, height: int, width: int, config: MarDiniConfig) -> None:
        """ConfigError naming the difference when the stage or the model does not match the shards."""
        i = self.indices[0]
        if (frames, stride, height, width) != (i.frames, i.stride, i.height, i.width):
            raise ConfigError(f"the shards hold {i.frames}-frame clips at stride {i.stride}, {i.width}x{i.height}; set [data] frames = "
                              f"{i.frames}, stride = {i.stride}, width = {i.width}, height = {i.height} or encode the videos again")
        if config.planner_downscale != i.planner_downscale:
            raise ConfigError(f"the shards' low views are {i.planner_downscale}x smaller but the model's planner reads "
                              f"{config.planner_downscale}x; encode with --planner-downscale {config.planner_downscale}")
        if config.vae and config.vae != i.vae:
            raise ConfigError(f"the model was trained on {config.vae!r} latents but the shards hold {i.vae!r} latents; "
                              "encode with the model's VAE or start a new model")
        wanted = self.space.normalisation
        if wanted and wanted != {k: getattr(config, k) for k in wanted}:
            raise ConfigError(f"the shards name latent normalisation {wanted} but the model uses latent_scale "
                              f"{config.latent_scale}, latent_shift {config.latent_shift}; write the model's into the indices")

    def permutation(self, seed: int, epoch: int) -> torch.Tensor:
        return _epoch_order(self.counts, self.buffer, seed, epoch)

    def load(self, index: int, variant: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """`variant` is accepted for the trainer's sake: shards are encoded once, like the latent cache."""
        shard = bisect.bisect_right(self.starts, index) - 1
        path, row = self.files[shard].with_suffix(".safetensors"), index - self.starts[shard]
        try:
            with safe_open(str(path), framework="pt") as f:
                shapes = {name: tuple(f.get_slice(name).get_shape()) for name in ("high", "low")}
                if shapes != self.indices[shard].shapes():
                    raise InputError(f"shard {path} holds tensors {shapes}, its index promises {self.indices[shard].shapes()}")
                return f.get_slice("high")[row], f.get_slice("low")[row]
        except (SafetensorError, OSError) as exc:
            raise InputError(f"shard {path} is unreadable ({exc}); delete it and its .json and run encode again") from None
