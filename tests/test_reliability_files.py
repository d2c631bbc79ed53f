"""Damaged, foreign, forged and malicious files are refused with one clear error, through every loader a
user touches: `load_checkpoint`, the CLI's `--model`, the ComfyUI loader node and the VAE loader.
Nothing is ever unpickled: a pickle whose `__reduce__` would create a marker folder never creates it."""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfy_fakes import load_pack
from mardini_core.checkpoint import load_checkpoint
from mardini_core.cli import main
from mardini_core.errors import CheckpointError
from support import (
    evil_torch_save, join, refused_files, save_tiny_checkpoint, split, write_png,
)

PACK = load_pack()
import folder_paths  # noqa: E402  (the fake, installed by load_pack)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def good(workdir):
    path = save_tiny_checkpoint(workdir / "good.safetensors")
    return path, load_checkpoint(path).state_dict()


def loads_unchanged_or_refused(path: Path, reference: dict) -> None:
    """The property every damaged file must have: CheckpointError, or the very same weights."""
    try:
        model = load_checkpoint(path)
    except CheckpointError as exc:
        assert Path(path).name in str(exc) or "checkpoint" in str(exc), f"message does not name the file: {exc}"
        return
    state = model.state_dict()
    assert state.keys() == reference.keys() and all(torch.equal(state[k], reference[k]) for k in state)


@FUZZ
@given(data=st.data())
def test_byte_level_damage_is_refused_or_harmless(good, workdir, data):
    path, reference = good
    raw = bytearray(path.read_bytes())
    kind = data.draw(st.sampled_from(["truncate", "flip", "overwrite", "header_flip"]), label="kind")
    if kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
    elif kind in ("flip", "header_flip"):
        (length,) = struct.unpack("<Q", raw[:8])
        end = 8 + length if kind == "header_flip" else len(raw)
        pos = data.draw(st.integers(0, end - 1), label="position")
        raw[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    else:
        pos = data.draw(st.integers(0, len(raw) - 1), label="position")
        junk = data.draw(st.binary(min_size=1, max_size=64), label="junk")
        raw[pos : pos + len(junk)] = junk
    damaged = workdir / "damaged.safetensors"
    damaged.write_bytes(bytes(raw))
    loads_unchanged_or_refused(damaged, reference)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)


@FUZZ
@given(data=st.data())
def test_forged_config_is_refused_or_consistent(good, workdir, data):
    """Any one config field set to any JSON value: refused, or (a harmless change) the same weights load."""
    path, reference = good
    header, body = split(path.read_bytes())
    config = json.loads(header["__metadata__"]["config"])
    section = data.draw(st.sampled_from([None, "planner", "generator"]), label="section")
    target = config if section is None else config[section]
    key = data.draw(st.sampled_from(sorted(target) + ["unexpected_field"]), label="field")
    if data.draw(st.booleans(), label="delete") and key in target:
        del target[key]
    else:
        target[key] = data.draw(JSON_VALUES, label="value")
    header["__metadata__"]["config"] = json.dumps(config)
    forged = workdir / "forged.safetensors"
    forged.write_bytes(join(header, body))
    loads_unchanged_or_refused(forged, reference)


@FUZZ
@given(metadata=JSON_VALUES, header_extra=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=2))
def test_forged_header_metadata_is_refused(good, workdir, metadata, header_extra):
    path, reference = good
    header, body = split(path.read_bytes())
    header = {**header, **{k: v for k, v in header_extra.items() if k not in header}, "__metadata__": metadata}
    forged = workdir / "forged_meta.safetensors"
    forged.write_bytes(join(header, body))
    with pytest.raises(CheckpointError):
        load_checkpoint(forged)


# --- the same files through the loaders a user touches ---------------------------------------------


def bad_files(folder: Path, good_path: Path, marker: Path) -> dict[str, Path]:
    """name -> a file every loader must refuse."""
    header, body = split(good_path.read_bytes())
    forged = json.loads(header["__metadata__"]["config"])
    forged["generator"]["hidden"] = 128
    header["__metadata__"]["config"] = json.dumps(forged)
    out = refused_files(folder, good_path, marker, -100, {"forged": join(header, body)})
    out["torch_pickle"] = evil_torch_save(folder / "torch_pickle.safetensors", marker)
    return out


BAD = ["empty", "truncated", "bitflip", "pickle", "forged", "foreign", "torch_pickle"]


@pytest.fixture(scope="module")
def bad(workdir, good):
    folder = workdir / "bad"
    folder.mkdir()
    marker = workdir / "UNPICKLED"
    yield bad_files(folder, good[0], marker), marker
    assert not marker.exists(), "a loader unpickled a file: the marker folder was created"


@pytest.mark.parametrize("kind", BAD)
def test_load_checkpoint_refuses(bad, kind):
    files, marker = bad
    with pytest.raises(CheckpointError, match=f"{kind}.safetensors"):
        load_checkpoint(files[kind])
    assert not marker.exists()


@pytest.mark.parametrize("kind", BAD)
def test_cli_model_refuses_with_one_line(bad, workdir, kind, capsys):
    files, marker = bad
    image = write_png(workdir / "in.png", 32, 32)
    out = workdir / f"out_{kind}.gif"
    rc = main(["generate", "--model", str(files[kind]), "--images", str(image), "--out", str(out), "--steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not out.exists()
    assert len(err) == 1 and err[0].startswith("error: ") and f"{kind}.safetensors" in err[0], err
    assert not marker.exists()


@pytest.fixture(scope="module")
def node_folder(bad):
    folder = Path(folder_paths.models_dir) / "mardini"
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for kind, path in bad[0].items():
        names[kind] = f"reliability_{kind}.safetensors"
        shutil.copy(path, folder / names[kind])
    yield names
    for name in names.values():
        (folder / name).unlink(missing_ok=True)


@pytest.mark.parametrize("kind", BAD)
def test_node_loader_refuses(bad, node_folder, kind):
    loader = PACK.NODE_CLASS_MAPPINGS["MarDiniModelLoader"]()
    assert node_folder[kind] in loader.INPUT_TYPES()["required"]["model"][0]
    with pytest.raises(CheckpointError, match=node_folder[kind]):
        loader.load(node_folder[kind], "fp32", "auto", "gpu")
    assert not bad[1].exists()


def test_node_loader_refuses_names_outside_its_folder(good, workdir):
    """A name with `..` or an absolute path is refused even though the file it points to is a good checkpoint."""
    folder = Path(folder_paths.models_dir) / "mardini"
    folder.mkdir(parents=True, exist_ok=True)
    outside = Path(folder_paths.models_dir) / "outside.safetensors"
    shutil.copy(good[0], outside)
    loader = PACK.NODE_CLASS_MAPPINGS["MarDiniModelLoader"]()
    try:
        for name in ("../outside.safetensors", str(outside), f"sub/../../{outside.name}", str(good[0])):
            with pytest.raises(CheckpointError, match="folder"):
                loader.load(name, "fp32", "auto", "gpu")
    finally:
        outside.unlink()
