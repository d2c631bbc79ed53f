"""The CLI in-process over generated argument lists: every run ends in argparse's SystemExit, exit code 0
(the output written) or exit code 2 with one `error:` line — never a traceback — and an existing output
is never touched without --overwrite; --overwrite never deletes a folder holding anything but our frames."""
from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mardini_core.cli import main
from mardini_core.video_io import write_frames
from support import one_thread, save_tiny_checkpoint, write_png

vae = pytest.importorskip("mardini_core.vae")

MANY = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def files():
    root = Path(tempfile.mkdtemp(prefix="mardini-reliability-cli-"))
    f = {"root": root}
    f["model"] = save_tiny_checkpoint(root / "tiny.safetensors")
    f["truncated"] = root / "truncated.safetensors"
    f["truncated"].write_bytes(f["model"].read_bytes()[:5000])
    net = vae.TinyAutoencoder(vae.MARDINI_TAE, vae.TinyAEConfig(latent_channels=32, width=8, blocks=1, mid_gn=False))
    f["tae"] = root / "tae.safetensors"
    vae.save_mardini_tae(f["tae"], net)
    f["a"], f["b"] = write_png(root / "a.png", 32, 32, 1), write_png(root / "b.png", 32, 32, 2)
    f["wide"] = write_png(root / "wide.png", 64, 32, 3)
    f["odd"] = write_png(root / "odd.png", 45, 37, 4)
    f["tiny"] = write_png(root / "tiny.png", 8, 8, 5)
    nan = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    nan[3, 4, 1] = np.nan
    f["nan"] = root / "nan.tiff"
    cv2.imwrite(str(f["nan"]), nan)
    f["text"] = root / "text.png"
    f["text"].write_text("not an image")
    f["video"] = write_frames(np.random.default_rng(1).random((3, 32, 32, 3)), root / "clip.mp4")
    f["existing"] = root / "existing.gif"
    f["existing"].write_bytes(b"the user's own file")
    f["folder"] = root / "user_folder"
    f["folder"].mkdir()
    (f["folder"] / "notes.txt").write_text("keep me")
    with one_thread():
        yield f
    shutil.rmtree(root, ignore_errors=True)


COUNTER = itertools.count()


def argv_strategy(f):
    image_names = ["a", "b", "wide", "odd", "tiny", "nan", "text", "missing", "root"]

    def path_of(name):
        return str(f[name]) if name in f else str(f["root"] / f"{name}.png")

    def out_name(kind):
        n = next(COUNTER)
        return {
            "gif": f["root"] / f"out{n}.gif", "mp4": f["root"] / f"out{n}.mp4", "png": f["root"] / f"frames{n}",
            "txt": f["root"] / f"out{n}.txt", "existing": f["existing"], "folder": f["folder"],
            "long": f["root"] / ("x" * 300 + ".gif"), "root": f["root"],
        }[kind]

    text = st.text(max_size=8).filter(lambda s: "\x00" not in s)
    option = {
        "--task": st.sampled_from(["i2v", "interpolate", "loop", "expand", "custom", "slowmo"]) | text,
        "--frames": st.sampled_from(["-1", "0", "1", "2", "3", "5", "9", "12", "17", "1000000000", "x"]),
        "--pattern": st.sampled_from(["x...x", "x....", "xxxx", "....", "x?x", "", "x.x.x.x.x.x.x.x.x.x"]) | text,
        "--position": st.sampled_from(["first", "middle", "last", "0", "-1", "2", "99", "\u00b2", "=-5"]) | text,
        "--size": st.sampled_from(["32x32", "64x32", "0x0", "31x32", "abc", "32", "-32x32", "99999999x99999999",
                                   "32x32x32", " 32 x 64 "]),
        "--steps": st.sampled_from(["1", "2", "0", "-1", "100000", "1.5", "x"]),
        "--guidance": st.sampled_from(["1", "2.5", "0", "-1", "nan", "inf", "x"]),
        "--eta": st.sampled_from(["0", "1", "-0.5", "nan", "inf"]),
        "--seed": st.sampled_from(["0", "-1", str(2**64), str(-(2**63) - 1), "1e3"]),
        "--overlap": st.sampled_from(["0", "1", "2", "8", "9", "-1"]),
        "--vae": st.sampled_from([str(f["tae"])] * 4 + ["nonsense", str(f["root"] / "none.safetensors"), str(f["a"])]),
        "--device": st.sampled_from(["cpu", "auto", "cuda", "meta", "mps", "cuda:1", "xyz", "cpu:0"]),
        "--dtype": st.sampled_from(["fp32", "bf16", "fp16", "fp64"]),
        "--fps": st.sampled_from(["8", "0", "-1", "nan", "inf", "1e-9", "25"]),
    }

    valid = {
        "--task": ["i2v", "interpolate", "loop", "expand"], "--frames": ["2", "3", "5", "9", "12"],
        "--position": ["first", "middle", "last", "1", "-1"], "--size": ["32x32", "64x32"], "--steps": ["1", "2"],
        "--guidance": ["1", "2.5", "0"], "--eta": ["0", "1"], "--seed": ["0", "-1", str(2**64 - 1)],
        "--overlap": ["1", "2"], "--fps": ["8", "25", "0.5"], "--dtype": ["fp32", "bf16"], "--device": ["cpu", "auto"],
    }

    @st.composite
    def build_valid_leaning(draw):
        """Arguments drawn from working values, so that a good share of runs really generate."""
        argv = ["generate", "--model", str(f["model"]), "--vae", str(f["tae"])]
        images = draw(st.lists(st.sampled_from(["a", "b", "wide"]), min_size=1, max_size=3), label="images")
        argv += ["--images", *(path_of(n) for n in images)]
        for name in draw(st.lists(st.sampled_from(sorted(valid)), max_size=4, unique=True), label="options"):
            argv += [name, draw(st.sampled_from(valid[name]), label=name)]
        if "--steps" not in argv:
            argv += ["--steps", "1"]
        out = out_name(draw(st.sampled_from(["gif", "mp4", "png", "existing"]), label="out"))
        return argv + ["--out", str(out)] + draw(st.sampled_from([[], ["--overwrite"], ["--dry-run"]]), label="flags"), out

    @st.composite
    def build(draw):
        argv = ["generate"]
        model = draw(st.sampled_from(["model"] * 6 + ["truncated", "none", "missing", "root"]), label="model")
        if model == "missing":
            argv += ["--model", str(f["root"] / "missing.safetensors")]
        elif model != "none":
            argv += ["--model", str(f[model])]
        if draw(st.booleans(), label="video"):
            argv += ["--video", path_of(draw(st.sampled_from(["video", "a", "text", "missing"]), label="video file"))]
        else:
            argv += ["--images", *(path_of(n) for n in draw(st.lists(st.sampled_from(image_names), max_size=3), label="images"))]
        for name in draw(st.lists(st.sampled_from(sorted(option)), max_size=5, unique=True), label="options"):
            argv += [name, draw(option[name], label=name)]
        if "--vae" not in argv and draw(st.integers(0, 5), label="add vae"):
            argv += ["--vae", str(f["tae"])]
        if "--steps" not in argv:
            argv += ["--steps", "1"]
        out = out_name(draw(st.sampled_from(["gif"] * 3 + ["mp4", "png", "txt", "existing", "folder", "long", "root"]), label="out"))
        argv += ["--out", str(out)]
        flags = draw(st.lists(st.sampled_from(["--overwrite", "--dry-run", "--junk"]), max_size=2, unique=True), label="flags")
        return argv + flags, out

    return st.one_of(build(), build_valid_leaning())


def snapshot(path: Path):
    try:
        path.stat()
    except OSError:  # missing, or a name the system refuses (too long)
        return None
    if path.is_file():
        return path.read_bytes()
    if path.is_dir():
        return sorted((p.name, p.read_bytes() if p.is_file() else None) for p in path.iterdir())
    return None


@pytest.mark.slow
@MANY
@given(data=st.data())
def test_any_arguments_end_cleanly(files, data, capsys):
    argv, out = data.draw(argv_strategy(files), label="argv")
    protected = {p: snapshot(p) for p in (files["existing"], files["folder"], files["a"], files["model"])}
    before = snapshot(out)
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse rejected the command line: a clean outcome
        assert exc.code == 2
        event("argparse exit")
        return
    event(f"exit code {rc}" + (" (dry run)" if "--dry-run" in argv else ""))
    err = capsys.readouterr().err
    assert rc in (0, 2), rc
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if rc == 2:
        assert len(errors) == 1 and len(errors[0]) > 12 and "Traceback" not in err, err
    else:
        assert not errors
        if "--dry-run" not in argv:
            assert out.exists()
    for path, content in protected.items():
        if path != out or "--overwrite" not in argv or path == files["folder"]:
            assert snapshot(path) == content, f"{path} was changed by {argv}"
    if before is not None and "--overwrite" not in argv:
        assert snapshot(out) == before


def run_cli(files, out, *extra):
    return main(["generate", "--model", str(files["model"]), "--vae", str(files["tae"]), "--images", str(files["a"]),
                 "--frames", "3", "--steps", "1", "--out", str(out), *extra])


@pytest.mark.parametrize("suffix", [".gif", ".mp4", ""])
def test_existing_output_is_kept_unless_overwrite(files, suffix, capsys):
    out = files["root"] / f"keep{suffix}"
    assert run_cli(files, out) == 0
    first = snapshot(out)
    capsys.readouterr()
    assert run_cli(files, out, "--seed", "9") == 2
    assert "already exists" in capsys.readouterr().err and snapshot(out) == first
    assert run_cli(files, out, "--seed", "9", "--overwrite") == 0
    assert snapshot(out) != first, "--overwrite replaces the output"


def test_overwrite_never_deletes_a_folder_of_other_files(files, capsys):
    folder = files["root"] / "mixed"
    folder.mkdir()
    (folder / "frame_00000.png").write_bytes(b"old frame")
    (folder / "holiday.jpg").write_bytes(b"the user's photo")
    assert run_cli(files, folder, "--overwrite") == 2
    assert "holiday.jpg" in capsys.readouterr().err
    assert (folder / "holiday.jpg").read_bytes() == b"the user's photo" and (folder / "frame_00000.png").exists()


def test_interrupted_run_leaves_no_output(files, monkeypatch, capsys):
    """Ctrl-C during sampling: exit code 130, no output file and no temporary file left behind."""
    from mardini_core.commands import generate

    def interrupt(self, step, total, preview):
        raise KeyboardInterrupt

    monkeypatch.setattr(generate.TextProgress, "step", interrupt)
    out = files["root"] / "interrupted.gif"
    before = set(files["root"].iterdir())
    assert run_cli(files, out) == 130
    assert not out.exists() and set(files["root"].iterdir()) == before
