"""Nothing is written outside the chosen output, and nothing there is replaced unasked: names that come
from files (random manifests) stay inside --out, and every output kind meets every state of what is
already there (absent, a file, our frames, a user's folder...) with or without --overwrite."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mardini_core.errors import ExistingRunError, MarDiniError, OutputError
from mardini_core.outputs import check_new_file, check_run_folder, inside, safe_name
from mardini_core.video_io import FRAMES_MANIFEST, read_video, write_frames

REPO = Path(__file__).resolve().parents[1]

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
NAMES = st.one_of(
    st.text(max_size=40),
    st.lists(st.sampled_from(["..", ".", "/", "\\", "a", "x.png", "~", "\x00", ":", "CON", " ", "\u202e", "é"]), max_size=8).map("".join),
    st.integers().map(str),
)


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@FUZZ
@given(name=NAMES, other=NAMES)
def test_any_name_from_a_file_stays_inside_the_output(workdir, name, other):
    out = workdir / "sheets"
    out.mkdir(exist_ok=True)
    clean = safe_name(name)
    assert clean and clean not in (".", "..") and not clean.startswith(".") and len(clean) <= 100
    assert not any(c in clean for c in '/\\\x00:*?"<>|') and safe_name(clean) == clean
    assert (name == other) == (clean == safe_name(other))
    path = inside(out, name, ".png")
    assert path.parent == out and path.resolve().parent == out.resolve()


@FUZZ
@given(entries=st.lists(st.fixed_dictionaries({"file": st.just("clip.mp4"), "name": NAMES}, optional={
    "start_frame": st.integers(0, 3), "num_frames": st.integers(1, 5)}), min_size=1, max_size=4))
def test_random_manifests_name_sheets_inside_out(manifest_folder, entries):
    """A manifest read by the evaluation's clip finder: every clip's sheet path lies inside --out."""
    from mardini_core.evaluation.clips import find_sources

    folder, out = manifest_folder
    (folder / "manifest.json").write_text(json.dumps(entries))
    sources, _ = find_sources([str(folder)])
    for source in sources:
        path = inside(out, source.name, ".png")
        assert path.parent == out and path.resolve().is_relative_to(out.resolve())
        assert "/" not in source.name and ".." != source.name


@pytest.fixture(scope="module")
def manifest_folder(workdir):
    folder = workdir / "manifest_clips"
    folder.mkdir()
    write_frames(np.zeros((5, 16, 16, 3), np.float32), folder / "clip.mp4")
    out = workdir / "manifest_out"
    out.mkdir()
    return folder, out


def test_eval_sheet_of_a_manifest_naming_parent_folders_stays_in_out(workdir, monkeypatch):
    """The case of the issue, end to end through `eval --out`."""
    import mardini_core.commands.eval as eval_cmd
    from mardini_core.cli import main
    from support import StandInVAE, save_tiny_checkpoint

    root = workdir / "evalcase"
    clips, out = root / "deep" / "clips", root / "deep" / "out"
    clips.mkdir(parents=True)
    frames = np.random.default_rng(0).random((12, 64, 64, 3)).astype(np.float32)
    write_frames(frames, clips / "v.mp4")
    (clips / "manifest.json").write_text(json.dumps([{"file": "v.mp4", "name": "../../escaped"}]))
    model = save_tiny_checkpoint(root / "tiny.safetensors")
    monkeypatch.setattr(eval_cmd, "resolve_vae", lambda name, device: StandInVAE())
    before = {p for p in root.rglob("*") if not p.is_relative_to(out)}
    assert main(["eval", "--clips", str(clips), "--model", str(model), "--size", "64", "--steps", "1", "--no-fid", "--out", str(out)]) == 0
    after = {p for p in root.rglob("*") if not p.is_relative_to(out)}
    assert after == before, after - before
    assert [p.parent for p in out.glob("*.png")] == [out]


# --- every output kind against every state of what is already there -----------------------------------

STATES = ["absent", "file", "empty_folder", "our_frames", "our_frames_changed", "user_frames", "user_folder", "file_in_the_way"]


def prepare(path: Path, state: str) -> None:
    if state == "file":
        path.write_bytes(b"the user's own file")
    elif state == "empty_folder":
        path.mkdir()
    elif state in ("our_frames", "our_frames_changed"):
        write_frames(np.zeros((3, 8, 8, 3), np.float32), path)
        if state == "our_frames_changed":  # the user edited one of them since
            (path / "frame_00001.png").write_bytes(b"the user's edit")
    elif state == "user_frames":  # named like ours, but no manifest of ours says we wrote them
        path.mkdir()
        for i in range(3):
            (path / f"frame_{i:05d}.png").write_bytes(b"the user's frame")
    elif state == "user_folder":
        path.mkdir()
        (path / "notes.txt").write_text("keep me")
    elif state == "file_in_the_way":
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "blocker").write_text("x")


@FUZZ
@given(kind=st.sampled_from(["gif", "mp4", "png", "txt"]), state=st.sampled_from(STATES), overwrite=st.booleans(),
       fail_at=st.one_of(st.none(), st.integers(0, 3)), n=st.integers(1, 4))
def test_frame_outputs_never_replace_unasked_nor_touch_anything_else(tmp_path_factory, monkeypatch, kind, state, overwrite, fail_at, n):
    import mardini_core.video_io as vio

    root = tmp_path_factory.mktemp("out")
    (root / "neighbour.txt").write_text("untouched")
    name = {"gif": "clip.gif", "mp4": "clip.mp4", "png": "frames", "txt": "clip.txt"}[kind]
    path = root / name
    state = state if kind == "png" or state in ("absent", "file", "empty_folder", "user_folder") else "absent"
    prepare(path, state)
    before = snapshot(root)
    if fail_at is not None and kind == "png":  # a disk error part-way through the frames
        real = vio.opencv_paths.imwrite
        calls = iter(range(100))
        monkeypatch.setattr(vio.opencv_paths, "imwrite", lambda p, im: False if next(calls) == fail_at else real(p, im))
    frames = np.random.default_rng(n).random((n, 8, 8, 3)).astype(np.float32)
    try:
        write_frames(frames, path, fps=8, overwrite=overwrite)
    except MarDiniError as exc:
        assert len(str(exc).splitlines()) == 1
        assert snapshot(root) == before, "a refused or failed write changed what was there"
        return
    finally:
        monkeypatch.undo()
    after = snapshot(root)
    assert {k: v for k, v in after.items() if not k.startswith(name)} == {k: v for k, v in before.items() if not k.startswith(name)}
    assert not [k for k in after if k.startswith(".")], "temporary files left behind"
    assert state in ("absent", "empty_folder", "file_in_the_way") or (overwrite and state not in ("our_frames_changed", "user_frames"))
    if kind == "png":
        assert sorted(p.name for p in path.iterdir()) == [FRAMES_MANIFEST] + [f"frame_{i:05d}.png" for i in range(n)]
    elif kind == "gif":
        assert len(read_video(path)[0]) == n


@FUZZ
@given(held=st.sets(st.sampled_from(["model.safetensors", "log.jsonl", "checkpoints/state-00000002.safetensors",
                                     "latents/x.pt", "samples/a.png", "notes.txt"])),
       resume=st.booleans(), overwrite=st.booleans(), as_file=st.booleans())
def test_run_folders_are_continued_or_replaced_only_when_asked(tmp_path_factory, held, resume, overwrite, as_file):
    root = tmp_path_factory.mktemp("runs")
    folder = root / "run"
    if as_file:
        folder.write_text("a file where the run folder goes")
    else:
        for rel in held:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(b"x")
    before = snapshot(root)
    finished = bool(held & {"model.safetensors", "log.jsonl", "checkpoints/state-00000002.safetensors"})
    nothing_to_resume = "model.safetensors" in held and "checkpoints/state-00000002.safetensors" not in held
    refuse = not overwrite and (nothing_to_resume if resume else finished)
    try:
        check_run_folder(folder, resume, overwrite)
    except OutputError as exc:
        assert as_file or refuse
        assert isinstance(exc, ExistingRunError) == (not as_file) and len(str(exc).splitlines()) == 1
    else:
        assert not as_file and not refuse
    assert snapshot(root) == before  # the guard itself never changes anything


@FUZZ
@given(state=st.sampled_from(["absent", "file", "folder"]), overwrite=st.booleans())
def test_single_file_outputs(tmp_path_factory, state, overwrite):
    """train-vae --out and the like: an existing file only with --overwrite, never a folder."""
    root = tmp_path_factory.mktemp("single")
    path = root / "vae.safetensors"
    if state == "file":
        path.write_bytes(b"old")
    elif state == "folder":
        path.mkdir()
    try:
        check_new_file(path, overwrite)
    except OutputError:
        assert state == "folder" or (state == "file" and not overwrite)
    else:
        assert state == "absent" or (state == "file" and overwrite)


def test_train_vae_refuses_an_existing_out_before_any_work(tmp_path, capsys, monkeypatch):
    import mardini_core.commands.train_vae as tv
    from mardini_core.cli import main

    out = tmp_path / "mine.safetensors"
    out.write_bytes(b"a model the user made")
    monkeypatch.setattr(tv, "load_taef2", lambda *_: pytest.fail("work started before the output check"))
    assert main(["train-vae", "--data", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and "--overwrite" in err[0]
    assert out.read_bytes() == b"a model the user made"


def test_png_folder_overwrite_keeps_the_old_frames_when_writing_fails(tmp_path, monkeypatch):
    import mardini_core.video_io as vio

    folder = tmp_path / "frames"
    write_frames(np.zeros((3, 8, 8, 3), np.float32), folder)
    old = snapshot(folder)
    real, calls = vio.opencv_paths.imwrite, []

    def failing(p, im):
        calls.append(p)
        return len(calls) < 2 and real(p, im)

    monkeypatch.setattr(vio.opencv_paths, "imwrite", failing)
    with pytest.raises(OutputError, match="could not write PNG frames|is full"):
        write_frames(np.ones((3, 8, 8, 3), np.float32), folder, overwrite=True)
    assert snapshot(folder) == old and sorted(os.listdir(tmp_path)) == ["frames"]


@pytest.mark.parametrize("command", ["generate", "train", "train-vae"])
def test_a_second_writer_of_one_output_gets_one_line(tmp_path, capsys, command):
    """Two commands writing one new output both exited 0, one result lost; the second now stops at once."""
    from mardini_core import cli
    from mardini_core.outputs import exclusive

    out = tmp_path / {"generate": "clip.mp4", "train": "run", "train-vae": "tae.safetensors"}[command]
    argv = {"generate": ["generate", "--task", "i2v", "--images", str(REPO / "assets" / "first.png"), "--out", str(out)],
            "train": ["train", "--config", str(REPO / "configs" / "stages" / "tiny_stage1.toml"), "--out", str(out)],
            "train-vae": ["train-vae", "--data", str(tmp_path), "--out", str(out)]}[command]
    with exclusive(out):
        assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another command is writing" in err[0] and not os.path.lexists(out)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".lock")], "the lock goes with its holder"
