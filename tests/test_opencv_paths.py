"""Any file name the system allows reaches OpenCV safely (mardini_core/opencv_paths.py): names that are
not UTF-8 (a Latin-1 `café.png` arrives as a lone surrogate) crashed every command with SIGSEGV."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from comfy_fakes import REPO
from mardini_core import opencv_paths
from mardini_core.errors import InputError
from mardini_core.video_io import read_image, read_video, write_frames

# file-name stems as the system hands them to Python: bytes that need not be UTF-8, decoded with surrogateescape;
# without dots, so the suffix drawn beside them is the name's (a PNG folder's name has none: "a.b" is refused by design)
stems = st.binary(min_size=1, max_size=12).filter(lambda b: not set(b) & set(b"/.\0")).map(os.fsdecode)


def frames(n=3, h=32, w=48, seed=0):
    return np.random.default_rng(seed).random((n, h, w, 3), dtype=np.float32)


@settings(max_examples=25, deadline=None)
@given(stem=stems, suffix=st.sampled_from([".mp4", ".gif", ""]))
def test_videos_write_and_read_back_under_any_name(tmp_path_factory, stem, suffix):
    folder = tmp_path_factory.mktemp("out")
    path = folder / (stem + suffix)
    clip = frames()
    assert write_frames(clip, path, fps=8) == path and os.path.lexists(path)
    if suffix:
        video, fps = read_video(path)
        assert video.shape == clip.shape and fps == pytest.approx(8, rel=0.05)
    else:
        names = sorted(p.name for p in path.glob("frame_*.png"))
        assert names == [f"frame_{i:05d}.png" for i in range(3)]
        back = read_image(path / names[0])
        assert np.abs(back - clip[0]).max() <= 1 / 255 + 1e-6
    assert sorted(p.name for p in folder.iterdir()) == [path.name]  # nothing left beside it


@settings(max_examples=25, deadline=None)
@given(stem=stems)
def test_images_read_under_any_name(tmp_path_factory, stem):
    path = tmp_path_factory.mktemp("in") / (stem + ".png")
    image = (frames(1)[0] * 255).round().astype(np.uint8)
    assert opencv_paths.imwrite(path, image[:, :, ::-1])
    assert np.array_equal((read_image(path) * 255).round().astype(np.uint8), image)


def test_the_gate_names_what_opencv_can_take():
    assert opencv_paths.opencv_can_take("café.png") and not opencv_paths.opencv_can_take(os.fsdecode(b"caf\xe9.png"))
    with opencv_paths.for_reading(os.fsdecode(b"/tmp/caf\xe9.mp4")) as name:
        assert name.isascii() and name.endswith(".mp4")


@pytest.mark.parametrize("out", ["", ".", "..", "sub/.."])
def test_an_output_that_names_no_new_file_is_refused_in_one_line(tmp_path, out, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    with pytest.raises(InputError, match="names no new file or folder"):
        write_frames(frames(), out)


def test_the_command_line_takes_a_latin1_image_and_output_name(tmp_path):
    """End to end in a child process (a crash would be a signal there, not a failed pytest)."""
    image = tmp_path / os.fsdecode(b"caf\xe9.png")
    image.write_bytes((REPO / "assets" / "first.png").read_bytes())
    out = tmp_path / os.fsdecode(b"sortie_\xe9t\xe9")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "mardini_core", "generate", "--task", "i2v", "--images", os.fsencode(image),
                          "--frames", "3", "--steps", "1", "--size", "64x64", "--out", os.fsencode(out)],
                         capture_output=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    assert len(list(out.glob("frame_*.png"))) == 3 and b"wrote" in run.stdout
