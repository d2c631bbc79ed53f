"""Pre-encoding a video folder into latent shards (shards.py), split over ranks and resumable.

Rank r of W takes the videos r, r+W, ... (in name order), decodes each once in one streaming pass,
encodes its clips with the VAE a batch at a time and packs them N to a shard named
`shard-<r>of<W>-<k>`. The clips are the ones the trainer's latent cache makes (VideoClips: same
crops, same low views), so both loaders see the same data. Run again with the same W and the clips
already in complete shards are skipped: an interrupted job continues where it stopped.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from ..errors import InputError
from ..memory import check_fits, vae_bytes
from .clips import ClipConfig, VideoClips
from .shards import FORMAT, VERSION, ShardIndex, read_index, write_shard
from .video import VideoReadError, iter_frames


@dataclass
class EncodeReport:
    shards: int = 0  # written by this call
    clips: int = 0  # encoded by this call
    complete: int = 0  # shards of this rank already complete before it
    skipped: list[str] = field(default_factory=list)  # clips that did not decode


def _source(clips: VideoClips, index: int) -> tuple[str, int]:
    ref = clips.clips[index]
    return str(ref.segment.path.resolve()), ref.start


def _stream(clips: VideoClips, group: list[int], report: EncodeReport) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(clip, high, low) pixels for the clips of one file (by start), decoding the file once, holding
    only the frames between the oldest unfinished clip's first frame and the current one."""
    path, wanted = clips.clips[group[0]].segment.path, {i: clips.indices(i) for i in group}
    frames: dict[int, np.ndarray] = {}
    pending = list(group)
    try:
        for number, frame in iter_frames(path, [n for i in group for n in wanted[i]]):
            frames[number] = frame
            while pending and wanted[pending[0]][-1] <= number:
                index = pending.pop(0)
                yield index, *clips.view(index, np.stack([frames[n] for n in wanted[index]]))
            first = wanted[pending[0]][0] if pending else number + 1
            for n in [n for n in frames if n < first]:
                del frames[n]
    except VideoReadError as exc:
        report.skipped.append(f"{path}: {exc}")
        warnings.warn(f"skipping {path}: {exc}", stacklevel=2)
        return
    for index in pending:  # the header promised frames the file does not have
        report.skipped.append(f"{path}: clip at frame {clips.clips[index].start} runs past the decodable end")
        warnings.warn(f"skipping a clip of {path}: {report.skipped[-1]}", stacklevel=2)


class _ShardWriter:
    """Packs encoded clips `size` to a shard, numbering shards on from those already complete."""

    def __init__(self, out: Path, prefix: str, first: int, size: int, template: ShardIndex, dtype: torch.dtype, report: EncodeReport):
        self.out, self.prefix, self.number, self.size, self.template, self.dtype, self.report = out, prefix, first, size, template, dtype, report
        self.high: list[torch.Tensor] = []
        self.low: list[torch.Tensor] = []
        self.sources: list[tuple[str, int]] = []

    def add(self, high: torch.Tensor, low: torch.Tensor, sources: list[tuple[str, int]]) -> None:
        self.high += list(high.to(self.dtype))
        self.low += list(low.to(self.dtype))
        self.sources += sources
        while len(self.sources) >= self.size:
            self.flush(self.size)

    def flush(self, count: int | None = None) -> None:
        count = len(self.sources) if count is None else count
        if not count:
            return
        index = dataclasses.replace(self.template, clips=count, sources=tuple(self.sources[:count]))
        write_shard(self.out / f"{self.prefix}-{self.number:06d}.safetensors", torch.stack(self.high[:count]), torch.stack(self.low[:count]), index)
        del self.high[:count], self.low[:count], self.sources[:count]
        self.number += 1
        self.report.shards += 1


def _check_folder(out: Path, world: int, template: ShardIndex) -> None:
    """Refuse an --out holding shards of another world size, VAE or clip shape (they would not mix)."""
    first = min(out.glob("shard-*.json"), default=None)
    if first is None:
        return
    if f"of{world:05d}-" not in first.name:
        raise InputError(f"{out} holds shards written by another number of processes ({first.name}); "
                         "continue with that many, or choose a new --out")
    index = read_index(first)
    if (index.space, index.geometry) != (template.space, template.geometry):
        raise InputError(f"{out} holds shards of another VAE or clip shape ({first.name}); choose a new --out")


def encode_bytes(clip: ClipConfig, batch: int, shard_size: int, latent_channels: int, vae_width: int = 64) -> int:
    """A rough upper estimate of encode's peak: a batch of clips as float pixels at both views, twice (the
    stream and the concatenation the VAE reads), the VAE's widest activations for its own batch of 4
    frames (three alive), and a shard's latents at both views in float32 before they are written."""
    pixels = clip.height * clip.width
    views = 1 + 1 / clip.planner_downscale**2
    clips = batch * clip.frames * pixels * 3 * 4 * views * 2
    latents = shard_size * clip.frames * latent_channels * (pixels // 64) * 4 * views
    return int(clips + vae_bytes(4, clip.height, clip.width, vae_width) + latents)


def encode_videos(videos: Iterable[str | os.PathLike], out: str | os.PathLike, vae, clip: ClipConfig, *, shard_size: int = 256,
                  batch: int = 16, rank: int = 0, world: int = 1, seed: int = 0, dtype: torch.dtype = torch.float32) -> EncodeReport:
    """Encode this rank's share of the clips of `videos` into shards in `out` (see the module's docstring)."""
    if shard_size < 1 or batch < 1:
        raise InputError("--shard-size and --batch must be at least 1")
    check_fits(encode_bytes(clip, batch, shard_size, vae.latent_channels), f"encoding batches of {batch} clips of {clip.frames} frames "
               f"at {clip.width}x{clip.height} into shards of {shard_size}", "lower --batch, --shard-size, --frames or --size")
    out = Path(out)
    clips = VideoClips(list(videos), clip, seed=seed)
    files = sorted({ref.segment.path for ref in clips.clips})
    mine = {path: n for n, path in enumerate(files) if n % world == rank}
    template = ShardIndex(FORMAT, VERSION, 0, vae.name, vae.latent_channels, vae.downscale, clip.frames, clip.stride,
                          clip.height, clip.width, clip.planner_downscale)
    out.mkdir(parents=True, exist_ok=True)
    _check_folder(out, world, template)
    prefix = f"shard-{rank:05d}of{world:05d}"
    complete = [read_index(p) for p in sorted(out.glob(f"{prefix}-*.json")) if p.with_suffix(".safetensors").is_file()]
    done = {tuple(s) for index in complete for s in index.sources}
    todo = [i for i, ref in enumerate(clips.clips) if ref.segment.path in mine and _source(clips, i) not in done]
    todo.sort(key=lambda i: (mine[clips.clips[i].segment.path], clips.clips[i].start))
    report = EncodeReport(complete=len(complete))
    writer = _ShardWriter(out, prefix, len(complete), shard_size, template, dtype, report)

    def encode(group: list[tuple[int, torch.Tensor, torch.Tensor]]) -> None:
        k = clip.frames
        with torch.no_grad():
            high, low = (vae.encode(torch.cat([g[n] for g in group])).unflatten(0, (len(group), k)) for n in (1, 2))
        writer.add(high, low, [_source(clips, g[0]) for g in group])
        report.clips += len(group)

    pixels = (item for _, group in itertools.groupby(todo, key=lambda i: clips.clips[i].segment.path) for item in _stream(clips, list(group), report))
    with contextlib.closing(pixels):  # an interruption releases the open video at once
        while chunk := list(itertools.islice(pixels, batch)):
            encode(chunk)
    writer.flush()
    return report
