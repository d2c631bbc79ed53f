"""Latent shards: `encode` writes the latent cache's clips into shards (split over ranks, resumable), the
shards loader streams them to the trainer without a VAE, and opening a video folder decodes nothing."""
from __future__ import annotations

import dataclasses
import json
import math

import cv2
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import mardini_core.data.encode as encode_module
from mardini_core.data import ClipConfig, LatentClips, VideoClips, shared_dir
from mardini_core.data.encode import encode_videos
from mardini_core.data.frames import FrameBank
from mardini_core.data.shards import FORMAT, VERSION, LatentShards, ShardIndex, _epoch_order, write_shard
from mardini_core.errors import ConfigError, InputError
from mardini_core.training.config import StageConfig
from mardini_core.training.trainer import RunOptions, Trainer, data_order

CLIPS = shared_dir() / "data" / "clips"
pytestmark = [
    pytest.mark.skipif(not CLIPS.is_dir(), reason=f"shared clips not found at {CLIPS} (set MARDINI_SHARED)"),
    pytest.mark.usefixtures("single_thread"),
]
CLIP = ClipConfig(frames=4, stride=2, height=32, width=32, crop="random")


class PoolVAE:
    """A stand-in encoder (8x8 average pool, 3 channels): what matters here is where latents go, not their quality."""

    name, latent_channels, downscale = "pool", 3, 8

    def encode(self, images):
        return F.avg_pool2d(images, 8)


@pytest.fixture()
def videos(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("carphone_pristine.mp4", "big_buck_bunny_432_433.webm", "intel_asl_walk.mkv"):
        (folder / name).symlink_to(CLIPS / name)
    return folder


def shard_contents(folder) -> dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]]:
    """(file, first frame) -> (high, low) of every clip in the shards of `folder`."""
    shards = LatentShards([folder])
    sources = [tuple(s) for index in shards.indices for s in index.sources]
    return {source: shards.load(i) for i, source in enumerate(sources)}


def test_shards_hold_the_latent_cache_clips_split_over_ranks(videos, tmp_path):
    whole = encode_videos([videos], tmp_path / "one", PoolVAE(), CLIP, shard_size=5, batch=3, seed=4)
    assert whole.clips == len(VideoClips(videos, CLIP)) and whole.shards == math.ceil(whole.clips / 5) and not whole.skipped
    one = shard_contents(tmp_path / "one")

    clips = VideoClips(videos, CLIP, seed=4)
    cache = LatentClips(clips, PoolVAE())
    for i, ref in enumerate(clips.clips):  # the same crops and low views as the trainer's latent cache
        high, low = one[(str(ref.segment.path.resolve()), ref.start)]
        expected = cache.load(i)
        torch.testing.assert_close(high, expected[0])
        torch.testing.assert_close(low, expected[1])

    for rank in (0, 1):
        encode_videos([videos], tmp_path / "two", PoolVAE(), CLIP, shard_size=5, batch=3, seed=4, rank=rank, world=2)
    two = shard_contents(tmp_path / "two")
    assert two.keys() == one.keys()
    by_rank = {r: {json.loads(p.read_text())["sources"][0][0] for p in (tmp_path / "two").glob(f"shard-0000{r}of00002-*.json")} for r in (0, 1)}
    assert by_rank[0] and by_rank[1] and not by_rank[0] & by_rank[1]  # each video encoded by one rank
    with pytest.raises(InputError, match="another number of processes"):
        encode_videos([videos], tmp_path / "two", PoolVAE(), CLIP, rank=0, world=3)


def test_an_interrupted_encode_continues_to_the_same_shards(videos, tmp_path, monkeypatch):
    reference = encode_videos([videos], tmp_path / "whole", PoolVAE(), CLIP, shard_size=4)
    write = encode_module.write_shard
    written = []

    def dies_on_the_third(path, *args):
        if len(written) == 2:
            raise KeyboardInterrupt  # a kill between shards
        written.append(path)
        write(path, *args)

    monkeypatch.setattr(encode_module, "write_shard", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        encode_videos([videos], tmp_path / "cut", PoolVAE(), CLIP, shard_size=4)
    monkeypatch.setattr(encode_module, "write_shard", write)
    again = encode_videos([videos], tmp_path / "cut", PoolVAE(), CLIP, shard_size=4)
    assert again.complete == 2 and again.shards == reference.shards - 2 and again.clips == reference.clips - 8
    names = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == names
    for name in names:
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_opening_a_folder_decodes_nothing_and_a_clip_past_the_true_end_is_skipped(tmp_path, monkeypatch):
    grabs, real = [], cv2.VideoCapture

    class Counting:
        """A capture that counts decoded frames (a proxy: subclasses of OpenCV's type crash its garbage collection)."""

        def __init__(self, *args):
            self.capture = real(*args)

        def grab(self):
            grabs.append(1)
            return self.capture.grab()

        def __getattr__(self, name):
            return getattr(self.capture, name)

    monkeypatch.setattr(cv2, "VideoCapture", Counting)
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "asl.mkv").symlink_to(CLIPS / "intel_asl_again.mkv")  # header: 78 frames, 77 decode
    config = ClipConfig(frames=39, stride=1, height=32, width=32)
    clips = VideoClips(tmp_path / "v", config)
    assert grabs == [] and [ref.start for ref in clips.clips] == [0, 39]
    with pytest.warns(UserWarning, match="past the decodable end"):
        report = encode_videos([tmp_path / "v"], tmp_path / "s", PoolVAE(), config)
    assert report.clips == 1 and len(report.skipped) == 1
    with pytest.warns(UserWarning, match="skipping clip 1"):
        LatentClips(clips, PoolVAE(), tmp_path / "cache").fill()  # the trainer's cache skips it too
    grabs.clear()
    bank = FrameBank([tmp_path / "v"], side=32, frames=9)  # the frames loader: one decoding pass, cut at the true end
    assert [len(s) for s in bank.segments] == [77] and len(grabs) == 78


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=12), st.integers(1, 5), st.integers(0, 99), st.integers(0, 3))
def test_an_epoch_reads_every_clip_once_a_few_shards_at_a_time(counts, buffer, seed, epoch):
    order = _epoch_order(tuple(counts), buffer, seed, epoch).tolist()
    assert sorted(order) == list(range(sum(counts)))
    starts = [sum(counts[:i]) for i in range(len(counts))]
    shard_of = [max(s for s, start in enumerate(starts) if start <= clip) for clip in order]
    run, held = set(), 0  # cut the order into runs that each finish the shards they open
    for shard in shard_of:
        run.add(shard)
        held += 1
        assert len(run) <= buffer
        if held == sum(counts[s] for s in run):
            run, held = set(), 0
    assert held == 0


def user_shards(folder, shards=3, clips=4, **index):
    """Shards written as a user with their own 16-channel VAE would: random 'latents', no VAE code of ours."""
    gen = torch.Generator().manual_seed(0)
    for n in range(shards):
        meta = ShardIndex(FORMAT, VERSION, clips, "flux1-vae", 16, 8, 5, 2, 32, 32, 2, **index)
        shapes = meta.shapes()
        write_shard(folder / f"part-{n}.safetensors", torch.randn(shapes["high"], generator=gen), torch.randn(shapes["low"], generator=gen), meta)


def shard_stage(folder, **data) -> StageConfig:
    stage = StageConfig(name="shards", steps=2, seed=3)
    return dataclasses.replace(
        stage,
        data=dataclasses.replace(stage.data, **{"paths": (str(folder),), "loader": "shards", "frames": 5, "stride": 2, "height": 32, "width": 32, "shard_buffer": 2, **data}),
        train=dataclasses.replace(stage.train, losses=("reconstruction", "diffusion_uncond")),
        optim=dataclasses.replace(stage.optim, batch=2, warmup=1),
        checkpoint=dataclasses.replace(stage.checkpoint, log_every=1),
    )


def test_a_sixteen_channel_model_trains_from_user_written_shards(tmp_path):
    user_shards(tmp_path / "shards", latent_scale=0.5, latent_shift=0.25)
    trainer = Trainer(shard_stage(tmp_path / "shards"), RunOptions(tmp_path / "run"))
    config = trainer.config
    assert (config.latent_channels, config.vae, config.latent_scale, config.latent_shift) == (16, "flux1-vae", 0.5, 0.25)
    shards = trainer.data
    order = data_order(1, 0, 2, 1, len(shards), 3, shards.permutation)
    high = trainer.batch(1)[0]
    for row, (clip, _) in enumerate(order):  # the shards' raw latents in model space, in the stream's order
        torch.testing.assert_close(high[row], (shards.load(clip)[0] - 0.25) * 0.5)
    record = trainer.train_step(0, *trainer.batch(0))
    assert math.isfinite(record["loss"]) and record["grad_norm"] > 0

    with pytest.raises(ConfigError, match="frames = 5"):
        Trainer(shard_stage(tmp_path / "shards", frames=7), RunOptions(tmp_path / "other"))
    user_shards(tmp_path / "mixed")
    (tmp_path / "mixed" / "part-0.json").write_text((tmp_path / "shards" / "part-0.json").read_text().replace('"height": 32', '"height": "32"'))
    with pytest.raises(InputError, match="'height' = '32'"):
        LatentShards([tmp_path / "mixed"])
    with pytest.raises(InputError, match="write them with"):
        LatentShards([tmp_path / "run"])
