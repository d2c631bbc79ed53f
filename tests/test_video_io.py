import cv2
import numpy as np
import pytest

from mardini_core.errors import InputError
from mardini_core.video_io import (
    FRAMES_MANIFEST,
    read_image,
    read_images,
    read_video,
    resize_and_crop,
    write_frames,
)


def clip(n=6, h=32, w=48, seed=0):
    return np.random.default_rng(seed).random((n, h, w, 3)).astype(np.float32)


def test_read_image_rgb_grey_alpha_and_16_bit(tmp_path):
    rgb = (clip(1)[0] * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[:, :, ::-1])
    assert np.array_equal(read_image(tmp_path / "c.png"), rgb.astype(np.float32) / 255)
    cv2.imwrite(str(tmp_path / "g.png"), rgb[:, :, 0])
    grey = read_image(tmp_path / "g.png")
    assert grey.shape == (32, 48, 3) and np.array_equal(grey[..., 0], grey[..., 2])
    rgba = np.concatenate([rgb[:, :, ::-1], np.zeros_like(rgb[:, :, :1])], axis=2)
    cv2.imwrite(str(tmp_path / "a.png"), rgba)
    assert np.array_equal(read_image(tmp_path / "a.png"), rgb.astype(np.float32) / 255)
    cv2.imwrite(str(tmp_path / "d.png"), np.full((4, 4, 3), 65535, np.uint16))
    assert read_image(tmp_path / "d.png").min() == 1.0


def test_read_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="use PNG or JPG"):
        read_image(tmp_path / "bad.png")
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((8, 16, 3), np.uint8))
    with pytest.raises(InputError, match="differ in size .* --size WxH"):
        read_images([tmp_path / "a.png", tmp_path / "b.png"])
    with pytest.raises(InputError, match="cannot read any frame"):
        read_video(tmp_path / "bad.png")


def test_mp4_round_trip_and_video_reader(tmp_path):
    frames = np.zeros((7, 32, 48, 3), np.float32)
    frames[:, :, :24, 0] = 1.0  # left half red: survives lossy coding
    path = write_frames(frames, tmp_path / "out.mp4", fps=12)
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened() and capture.get(cv2.CAP_PROP_FPS) == 12
    capture.release()
    video, fps = read_video(path)
    assert video.shape == (7, 32, 48, 3) and fps == 12
    assert video[:, 8:24, 4:20, 0].mean() > 0.9 and video[:, 8:24, 28:44].max() < 0.1
    assert read_video(path, max_frames=3)[0].shape[0] == 3
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_gif_keeps_every_frame_its_delay_and_its_colours(tmp_path):
    """Pillow writes the GIF: every frame, 1/fps apart, looping; dithered, a smooth clip keeps its local colour."""
    ramp = np.linspace(0, 1, 48, dtype=np.float32)
    frames = np.stack([np.stack(np.broadcast_arrays(ramp[None, :], ramp[:32, None], np.float32(i / 5) + 0 * ramp), -1)
                       for i in range(5)])  # (5, 32, 48, 3): a red-green ramp, blue rising
    path = write_frames(frames, tmp_path / "out.gif", fps=10)
    ok, animation = cv2.imreadanimation(str(path))
    assert ok and len(animation.frames) == 5 and list(animation.durations) == [100] * 5 and animation.loop_count == 0
    decoded = np.stack([f[:, :, 2::-1] for f in animation.frames]).astype(np.float32) / 255  # BGR(A) -> RGB
    block = lambda a: a.reshape(5, 4, 8, 6, 8, 3).mean(axis=(2, 4))  # noqa: E731  8x8-pixel averages: dithering keeps local colour
    assert np.abs(block(decoded) - block(frames)).max() < 0.03
    assert list(tmp_path.iterdir()) == [path]


def test_gif_of_random_frames_and_slow_and_fast_rates(tmp_path):
    frames = clip(5)
    ok, animation = cv2.imreadanimation(str(write_frames(frames, tmp_path / "r.gif", fps=0.01)))
    assert ok and len(animation.frames) == 5 and list(animation.durations) == [100_000] * 5
    ok, animation = cv2.imreadanimation(str(write_frames(frames[:2], tmp_path / "f.gif", fps=1000)))
    assert ok and list(animation.durations) == [20] * 2  # browsers play < 2/100 s slowly: the fastest is 2/100 s


def test_png_folder(tmp_path):
    frames = clip(3)
    folder = write_frames(frames, tmp_path / "frames")
    names = sorted(p.name for p in folder.iterdir())
    assert names == [FRAMES_MANIFEST, "frame_00000.png", "frame_00001.png", "frame_00002.png"]
    assert np.abs(read_image(folder / names[2]) - frames[1]).max() <= 0.5 / 255 + 1e-6
    write_frames(frames[:2], folder, overwrite=True)  # overwrite replaces stale frames too
    assert sorted(p.name for p in folder.iterdir()) == [FRAMES_MANIFEST, "frame_00000.png", "frame_00001.png"]


@pytest.mark.parametrize("name", ["out.mp4", "out.gif", "frames"])
def test_refuses_to_overwrite(tmp_path, name):
    write_frames(clip(2), tmp_path / name)
    with pytest.raises(InputError, match="already exists; choose another output name or pass --overwrite"):
        write_frames(clip(2), tmp_path / name)
    write_frames(clip(3), tmp_path / name, overwrite=True)


def test_unknown_output_suffix(tmp_path):
    with pytest.raises(InputError, match="use an .mp4 or .gif file name, or a folder name"):
        write_frames(clip(2), tmp_path / "out.avi")


def test_resize_and_crop_keeps_the_centre():
    frames = np.zeros((1, 40, 80, 3), np.float32)
    frames[:, :, 20:60] = 1.0  # a bright centre square
    out = resize_and_crop(frames, 32, 32)
    assert out.shape == (1, 32, 32, 3) and out.min() > 0.99


def test_written_videos_get_ordinary_permissions_and_leave_no_temporary_files(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        out = write_frames(np.zeros((2, 16, 16, 3), np.float32), tmp_path / "clip.mp4")
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


@pytest.mark.parametrize("fps", [0, -1, float("nan"), float("inf"), 1e-9, 0.009, 1001])
def test_frame_rates_outside_what_a_gif_can_hold_are_refused_before_writing(tmp_path, fps):
    with pytest.raises(InputError, match="frames per second must be a number from 0.01 to 1000"):
        write_frames(np.zeros((2, 16, 16, 3), np.float32), tmp_path / "clip.gif", fps=fps)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("planted", ["folder", "link"])
def test_overwrite_never_removes_a_folder_or_link_named_like_a_frame(tmp_path, planted):
    out = tmp_path / "frames"
    write_frames(np.zeros((2, 32, 32, 3), np.float32), out)
    keep = tmp_path / "keep.txt"
    keep.write_text("the user's")
    impostor = out / "frame_00007.png"
    if planted == "folder":
        impostor.mkdir()
        (impostor / "data.txt").write_text("the user's")
    else:
        impostor.symlink_to(keep)
    with pytest.raises(InputError, match="MarDini did not write"):
        write_frames(np.ones((2, 32, 32, 3), np.float32), out, overwrite=True)
    assert keep.read_text() == "the user's" and impostor.exists()


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_an_image_cut_short_is_refused_not_read_as_grey(tmp_path, suffix):
    """Decoders fill a truncated JPEG or PNG with grey and say nothing; its missing end marker is the tell."""
    whole = tmp_path / f"whole{suffix}"
    cv2.imwrite(str(whole), (clip(1, 64, 64)[0] * 255).astype(np.uint8))
    assert read_image(whole).shape == (64, 64, 3)
    data = whole.read_bytes()
    for cut in (len(data) // 3, len(data) // 2, len(data) - 20):
        short = tmp_path / f"short{suffix}"
        short.write_bytes(data[:cut])
        with pytest.raises(InputError, match="cut short"):
            read_image(short)
