import re

import cv2
import numpy as np
import pytest

from mardini_core import cli
from mardini_core.checkpoint import save_checkpoint
from mardini_core.commands import generate as generate_cmd
from mardini_core import default_model
from mardini_core.errors import MarDiniError
from mardini_core.video_io import read_image
from test_window import TinyVAE
from support import live_tiny

REAL_RESOLVE_VAE = generate_cmd.resolve_vae


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_checkpoint(path, live_tiny())  # tiny/T, window of 9 frames
    return str(path)


@pytest.fixture(autouse=True)
def stand_in_vae(monkeypatch):
    vaes = []
    monkeypatch.setattr(generate_cmd, "resolve_vae", lambda name, device: vaes.append(name) or TinyVAE())
    return vaes


def write_png(path, seed, size=32):
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    cv2.imwrite(str(path), pixels)
    return str(path)


def generate(*args):
    return cli.main(["generate", "--steps", "2", *args])


def frames_in(folder):
    return [read_image(p) for p in sorted(folder.glob("frame_*.png"))]


def count_video_frames(path):
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def test_image_to_video_mp4_end_to_end(tmp_path, checkpoint, capsys, stand_in_vae):
    img = write_png(tmp_path / "a.png", 0)
    out = tmp_path / "out.mp4"
    assert generate("--images", img, "--model", checkpoint, "--out", str(out)) == 0
    assert count_video_frames(out) == 9  # the model's window by default
    printed = capsys.readouterr().out
    assert "wrote" in printed and "guidance 2.5" in printed  # the paper's i2v guidance by default
    assert stand_in_vae == [""]  # the VAE named by the checkpoint's config (tiny/T names none)


@pytest.mark.slow
def test_vae_choice(tmp_path, checkpoint, stand_in_vae, shared_dir, monkeypatch):
    with pytest.raises(MarDiniError, match="does not name the VAE it was trained with; pass --vae taef2"):
        REAL_RESOLVE_VAE("", "cpu")
    img = write_png(tmp_path / "a.png", 0, size=64)
    assert generate("--images", img, "--model", checkpoint, "--vae", "mine", "--out", str(tmp_path / "a")) == 0
    assert stand_in_vae == ["mine"]
    if not (shared_dir / "weights" / "taef2").is_dir():
        pytest.skip("TAEF2 weights not present")
    monkeypatch.setattr(generate_cmd, "resolve_vae", REAL_RESOLVE_VAE)  # the real pretrained TAEF2
    out = tmp_path / "real"
    assert generate("--images", img, "--model", checkpoint, "--vae", "taef2", "--frames", "4", "--out", str(out)) == 0
    frames = frames_in(out)
    assert len(frames) == 4 and np.array_equal(frames[0], read_image(img))


def test_references_exact_and_seeds(tmp_path, checkpoint):
    img = write_png(tmp_path / "a.png", 0)
    runs = {}
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert generate("--images", img, "--model", checkpoint, "--frames", "5", "--position", "last",
                        "--seed", seed, "--out", str(tmp_path / name)) == 0
        runs[name] = frames_in(tmp_path / name)
    assert len(runs["a"]) == 5
    assert np.array_equal(runs["a"][4], read_image(img))  # the given image comes back exactly
    assert all(np.array_equal(x, y) for x, y in zip(runs["a"], runs["b"]))
    assert not all(np.array_equal(x, y) for x, y in zip(runs["a"][:4], runs["c"][:4]))


def test_interpolation_longer_than_the_window(tmp_path, checkpoint, capsys):
    a, b = write_png(tmp_path / "a.png", 0), write_png(tmp_path / "b.png", 1)
    out = tmp_path / "frames"
    assert generate("--task", "interpolate", "--images", a, b, "--frames", "20", "--model", checkpoint, "--out", str(out)) == 0
    frames = frames_in(out)
    assert len(frames) == 20
    assert np.array_equal(frames[0], read_image(a)) and np.array_equal(frames[-1], read_image(b))
    captured = capsys.readouterr()
    assert "20 frames from 2 given at [0, 19], window 9" in captured.err  # the plan is printed first
    assert "guidance 1" in captured.out  # no guidance for interpolation


def test_loop_gif_is_seamless(tmp_path, checkpoint):
    img = write_png(tmp_path / "a.png", 0)
    out = tmp_path / "loop.gif"
    assert generate("--task", "loop", "--images", img, "--frames", "6", "--model", checkpoint, "--out", str(out)) == 0
    ok, animation = cv2.imreadanimation(str(out))
    assert ok and len(animation.frames) == 6  # frame 6 would repeat frame 0, so it is dropped
    assert generate("--task", "loop", "--images", img, "--model", checkpoint, "--out", str(tmp_path / "default")) == 0
    assert len(list((tmp_path / "default").glob("frame_*.png"))) == 8  # by default one window: 8 frames + the closing one


def test_expand_a_video_and_crop_odd_sizes(tmp_path, checkpoint, capsys):
    video = tmp_path / "in.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 8, (40, 48))
    for i in range(3):
        writer.write(np.full((48, 40, 3), 60 * i, np.uint8))
    writer.release()
    out = tmp_path / "frames"
    assert generate("--task", "expand", "--video", str(video), "--frames", "7", "--model", checkpoint, "--out", str(out)) == 0
    frames = frames_in(out)
    assert len(frames) == 7 and frames[0].shape == (32, 32, 3)
    assert "fitted to 32x32 (--fit crop" in capsys.readouterr().err  # what the nodes' fit = crop makes, the same pixels
    assert generate("--task", "expand", "--video", str(video), "--frames", "7", "--fit", "off", "--model", checkpoint,
                    "--out", str(tmp_path / "off")) == 2
    assert "must be a multiple of 32" in capsys.readouterr().err and not (tmp_path / "off").exists()
    out = tmp_path / "two"
    assert generate("--task", "interpolate", "--video", str(video), "--video-frames", "2", "--frames", "5",
                    "--model", checkpoint, "--out", str(out)) == 0
    last = frames_in(out)[-1]
    assert len(frames_in(out)) == 5 and abs(last.mean() - 60 / 255) < 0.03  # video frame 1, not frame 2 (grey 120)


def test_dry_run_prints_the_plan_without_generating(tmp_path, checkpoint, capsys, stand_in_vae):
    imgs = [write_png(tmp_path / f"{i}.png", i) for i in range(4)]
    out = tmp_path / "slowmo.mp4"
    assert generate("--task", "interpolate", "--images", *imgs, "--frames", "64", "--model", checkpoint,
                    "--out", str(out), "--dry-run") == 0
    text = capsys.readouterr().out
    assert text.startswith("64 frames from 4 given at [0, 21, 42, 63], window 9:") and "keyframes" in text
    assert not out.exists() and stand_in_vae == []
    assert generate("--task", "loop", "--images", imgs[0], "--frames", "16", "--model", checkpoint, "--out", str(out), "--dry-run") == 0
    text = capsys.readouterr().out  # the plan covers the closing frame; the text says it is not written
    assert text.startswith("17 frames from 2 given at [0, 16]") and "is not written: 16 frames out" in text


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--task", "interpolate"], "needs 2 input image\\(s\\) here, got 1"),
        (["--task", "custom", "--pattern", "x..x"], "needs 2 input image\\(s\\) here, got 1"),
        (["--task", "custom", "--pattern", "x..o"], "invalid characters 'o'"),
        (["--pattern", "x..x"], "--pattern is for --task custom"),
        (["--size", "40x40"], "multiple of 32"),
        (["--position", "centre"], "unknown; use one of first, middle, last"),
        (["--frames", "1"], "at least 2"),
        (["--sampler", "dpmpp_2m", "--eta", "0.5"], "eta must be 0 with sampler dpmpp_2m"),
    ],
)
def test_user_errors_are_one_line(tmp_path, checkpoint, capsys, extra, message):
    img = write_png(tmp_path / "a.png", 0)
    assert generate("--images", img, "--model", checkpoint, "--out", str(tmp_path / "o.mp4"), *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert re.search(message, err)


def test_existing_output_and_missing_default_model(tmp_path, checkpoint, capsys, monkeypatch):
    img = write_png(tmp_path / "a.png", 0)
    out = tmp_path / "o.mp4"
    out.write_bytes(b"keep me")
    assert generate("--images", img, "--model", checkpoint, "--out", str(out)) == 2
    assert "already exists; choose another output name or pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    monkeypatch.setattr(default_model, "MODEL_FILE", tmp_path / "absent.safetensors")  # a broken install
    assert generate("--images", img, "--out", str(tmp_path / "new.mp4")) == 2
    assert "embedded default model is missing" in capsys.readouterr().err


def test_help_reads_well(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["generate", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for word in ("--task", "--images", "--video", "--frames", "--guidance", "--seed", "--model", "--out", "Examples"):
        assert word in text
