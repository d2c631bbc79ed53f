"""Training data: clips from real videos (manifest segments, .webm, broken files), views, latent cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from mardini_core.data import ClipConfig, LatentClips, VideoClips, VideoReadError, find_segments, read_frames, resize_crop, shared_dir
from mardini_core.errors import ConfigError, InputError

CLIPS = shared_dir() / "data" / "clips"
pytestmark = [
    pytest.mark.skipif(not CLIPS.is_dir(), reason=f"shared clips not found at {CLIPS} (set MARDINI_SHARED)"),
    pytest.mark.usefixtures("single_thread"),
]
SMALL = ClipConfig(frames=4, stride=2, height=32, width=48, crop="random")


@pytest.fixture()
def mixed_folder(tmp_path):
    """Two real videos (one .webm, one with a broken audio track) linked in, plus two unreadable files."""
    for name in ("big_buck_bunny_432_433.webm", "video_with_failing_audio.mp4"):
        (tmp_path / name).symlink_to(CLIPS / name)
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video" * 50)
    (tmp_path / "empty.webm").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a video, not even looked at")
    return tmp_path


@pytest.mark.slow
def test_manifest_segments_keep_clips_inside_shots():
    segments, skipped = find_segments([CLIPS])
    assert skipped == []
    bikes = [s for s in segments if s.path.name == "bikes.mp4"]
    assert [(s.start, s.frames, s.name) for s in bikes][:2] == [(0, 30, "skv_bikes_s1"), (30, 46, "skv_bikes_s2")]
    clips = VideoClips(CLIPS, ClipConfig(frames=9, stride=3, height=32, width=32))
    for ref in clips.clips:
        assert ref.segment.start <= ref.start and ref.start + 8 * 3 < ref.segment.start + ref.segment.frames


def test_broken_files_are_reported_and_skipped(mixed_folder):
    with pytest.warns(UserWarning) as caught:
        clips = VideoClips(mixed_folder, SMALL)
    messages = " ".join(str(w.message) for w in caught)
    assert "broken.mp4" in messages and "empty.webm" in messages
    assert len(clips.skipped) == 2
    assert {ref.segment.path.name for ref in clips.clips} == {"big_buck_bunny_432_433.webm", "video_with_failing_audio.mp4"}
    high, low = clips.load(len(clips) - 1)
    assert high.shape == (4, 3, 32, 48) and low.shape == (4, 3, 16, 24)
    assert 0 <= float(high.min()) and float(high.max()) <= 1 and high.std() > 0.01


def test_only_broken_files_is_a_clear_error(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"garbage" * 100)
    with pytest.warns(UserWarning, match="broken.mp4"), pytest.raises(InputError, match="no clip of 4 frames"):
        VideoClips(tmp_path, SMALL)


def test_a_missing_data_path_is_named(tmp_path):
    (tmp_path / "real.mp4").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"typo\.mp4 does not exist; give a video file or a folder of videos"):
        find_segments([tmp_path / "real.mp4", tmp_path / "typo.mp4"])


def test_clip_is_the_strided_frames_and_low_view_is_a_box_filter():
    clips = VideoClips(CLIPS / "video_with_failing_audio.mp4", ClipConfig(frames=3, stride=5, height=64, width=64))
    high, low = clips.load(2)
    start = clips.clips[2].start
    assert start == 2 * 15
    raw = read_frames(CLIPS / "video_with_failing_audio.mp4", start, 3, 5)
    expected = torch.from_numpy(resize_crop(raw, 64, 64, (0.5, 0.5))).permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(high, expected)
    torch.testing.assert_close(low[:, :, 0, 0], high[:, :, :2, :2].mean(dim=(2, 3)))


def test_random_crops_repeat_per_seed_and_variant():
    a = VideoClips(CLIPS / "bikes.mp4", SMALL, seed=1)
    b = VideoClips(CLIPS / "bikes.mp4", SMALL, seed=1)
    torch.testing.assert_close(a.load(0, variant=3)[0], b.load(0, variant=3)[0])
    assert not torch.equal(a.load(0, variant=3)[0], a.load(0, variant=4)[0])


def test_short_reads_and_bad_configs_raise():
    with pytest.raises(VideoReadError, match="do not decode"):
        read_frames(CLIPS / "big_buck_bunny_432_433.webm", 20, 5)
    with pytest.raises(ConfigError, match="multiple of 16"):
        ClipConfig(height=40, width=32)


class CountingVAE:
    """A stand-in encoder: 8x8 average pooling to 3 channels, counting its calls."""

    name, latent_channels, downscale = "counting", 3, 8

    def __init__(self):
        self.calls = 0

    def encode(self, images):
        self.calls += 1
        return torch.nn.functional.avg_pool2d(images, 8)


def test_latent_cache_encodes_each_clip_once(tmp_path):
    clips = VideoClips(CLIPS / "big_buck_bunny_432_433.webm", SMALL)
    vae = CountingVAE()
    cache = LatentClips(clips, vae, tmp_path / "cache")
    assert cache.fill() == len(clips)
    calls = vae.calls
    high, low = cache.load(1)
    assert vae.calls == calls and high.shape == (4, 3, 4, 6) and low.shape == (4, 3, 2, 3)
    files = sorted((tmp_path / "cache").glob("*.safetensors"))
    assert len(files) == len(clips)
    torch.testing.assert_close(high, vae.encode(clips.load(1)[0]))
    files[0].write_bytes(b"damaged")  # a damaged cache entry is rebuilt, not fatal
    assert cache.fill() == 0
    for i in range(len(clips)):
        cache.load(i)
    assert set(load_file(str(files[0]))) == {"high", "low"}


@settings(max_examples=25, deadline=None)
@given(st.integers(8, 90), st.integers(8, 90), st.sampled_from([8, 16, 24]), st.sampled_from([8, 16, 32]), st.floats(0, 1), st.floats(0, 1))
def test_resize_crop_always_gives_the_asked_size(h, w, out_h, out_w, dy, dx):
    frames = np.random.default_rng(0).integers(0, 255, (2, h, w, 3), dtype=np.uint8)
    assert resize_crop(frames, out_h, out_w, (dy, dx)).shape == (2, out_h, out_w, 3)


class FakeAV:
    """Stands in for PyAV (not installed here): a 'video' of 6 frames whose pixel values are the frame index."""

    class Frame:
        def __init__(self, i):
            self.i = i

        def to_ndarray(self, format):
            assert format == "rgb24"
            return np.full((16, 24, 3), self.i, np.uint8)

    class Container:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def decode(self, video):
            return (FakeAV.Frame(i) for i in range(6))

    @staticmethod
    def open(path):
        if "corrupt" in path:
            raise ValueError("invalid data found when processing input")
        return FakeAV.Container()


def test_pyav_is_the_fallback_when_opencv_cannot_read(tmp_path, monkeypatch):
    import sys

    from mardini_core.data import probe

    odd = tmp_path / "odd.mp4"
    odd.write_bytes(b"opencv cannot open this" * 10)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"nor this")
    monkeypatch.setitem(sys.modules, "av", FakeAV)
    info = probe(odd)
    assert (info.frames, info.width, info.height) == (6, 24, 16)
    frames = read_frames(odd, 1, 2, stride=3)
    assert frames.shape == (2, 16, 24, 3) and frames[0, 0, 0, 0] == 1 and frames[1, 0, 0, 0] == 4
    with pytest.raises(VideoReadError, match="neither OpenCV nor PyAV"):
        probe(corrupt)
    with pytest.warns(UserWarning, match="corrupt.mp4"):
        segments, skipped = find_segments([tmp_path])
    assert [s.path.name for s in segments] == ["odd.mp4"] and len(skipped) == 1


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16), same=st.booleans())
def test_latent_cache_is_keyed_by_the_autoencoders_weights_not_its_name(tmp_path_factory, seed, same):
    """Two autoencoders of one name (two mardini-tae files) never share cached latents; the same weights do."""
    class NamedVAE(torch.nn.Module):
        name, latent_channels, downscale = "mardini-tae", 3, 8

        def __init__(self, weight_seed):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.rand(1, generator=torch.Generator().manual_seed(weight_seed)) + 0.5)

        def encode(self, images):
            return torch.nn.functional.avg_pool2d(images, 8) * self.scale.detach()

    clips = VideoClips(CLIPS / "big_buck_bunny_432_433.webm", SMALL)
    folder = tmp_path_factory.mktemp("cache")
    first, second = NamedVAE(seed), NamedVAE(seed if same else seed + 1)
    LatentClips(clips, first, folder).fill()
    cache = LatentClips(clips, second, folder)
    assert cache.fill() == (0 if same else len(clips))
    torch.testing.assert_close(cache.load(0)[0], second.encode(clips.load(0)[0]))


@pytest.mark.parametrize("entry", [{"num_frames": float("inf")}, {"num_frames": -3}, {"start_frame": -1}, {"num_frames": "9x"},
                                   {"num_frames": 1e400}, {"start_frame": [1]}])
def test_a_manifest_entry_that_names_no_frames_is_refused_in_one_line(tmp_path, entry):
    import json

    from mardini_core.data.sources import find_segments
    from mardini_core.errors import InputError

    (tmp_path / "clip.mp4").write_bytes(b"")
    text = json.dumps([{"file": "clip.mp4", "name": "c", **entry}]).replace("Infinity", "1e999")
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(InputError, match="manifest.json is malformed") as info:
        find_segments([tmp_path])
    assert len(str(info.value).splitlines()) == 1
