"""Checkpoints and mardini-tae files mutated at random in their header, metadata and tensors, once as a
careless copy would (hash left as it was) and once as a forger would (hash recomputed): the first is
always refused, the second is refused with one line or loads exactly what it describes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from mardini_core.checkpoint import INTEGRITY, LEGACY_INTEGRITY, integrity_digest, load_checkpoint, sign_metadata
from mardini_core.errors import CheckpointError
from support import join, save_tiny_checkpoint, split

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def good(workdir):
    path = save_tiny_checkpoint(workdir / "integrity.safetensors")
    return path, load_checkpoint(path).state_dict()


def refused_or_described(path: Path, reference: dict, signed: bool, same_bytes: bool) -> None:
    try:
        model = load_checkpoint(path)
    except CheckpointError as exc:
        assert len(str(exc).splitlines()) == 1 and path.name in str(exc), str(exc)
        return
    assert signed or same_bytes, "a file whose hash no longer matches was accepted"
    state = model.state_dict()
    assert all(t.is_floating_point() and torch.isfinite(t).all() for t in state.values())
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in load_file(str(path)).items()}


@FUZZ
@given(data=st.data())
def test_metadata_mutations(good, workdir, data):
    """Any metadata entry (config fields included) set to anything, with or without a recomputed hash."""
    path, reference = good
    header, body = split(path.read_bytes())
    meta = header["__metadata__"]
    original = json.loads(json.dumps(meta))
    signed = data.draw(st.booleans(), label="signed")
    if data.draw(st.booleans(), label="config_field"):
        config = json.loads(meta["config"])
        section = data.draw(st.sampled_from([None, "planner", "generator"]), label="section")
        target = config if section is None else config[section]
        key = data.draw(st.sampled_from(sorted(target)), label="field")
        target[key] = data.draw(st.one_of(JSON, st.sampled_from([1.0, 9.0, 0.5, 2, "T", "ST", "none", "neighbours"])), label="value")
        meta["config"] = json.dumps(config)
    else:
        key = data.draw(st.sampled_from(sorted(meta) + ["extra"]), label="key")
        if data.draw(st.booleans(), label="delete") and key in meta:
            del meta[key]
        else:
            meta[key] = data.draw(st.text(max_size=20), label="value")
    if signed and LEGACY_INTEGRITY in meta and isinstance(meta.get(LEGACY_INTEGRITY), str):
        meta[INTEGRITY] = integrity_digest(meta[LEGACY_INTEGRITY], meta)
    forged = workdir / "meta_forged.safetensors"
    raw = join(header, body)
    forged.write_bytes(raw)
    legacy = INTEGRITY not in meta  # without the full hash a file reads as one written before it: validated, not hashed
    unchanged = meta == original  # a mutation that wrote back what was there (e.g. anchor "none" over "none")
    refused_or_described(forged, reference, signed or legacy, raw == path.read_bytes() or unchanged)


@FUZZ
@given(data=st.data())
def test_tensor_mutations(good, workdir, data):
    """One tensor given another dtype (integer, bool, half), shape, NaN, dropped or added; the hash
    recomputed as a forger would, or left as it was."""
    path, _reference = good
    header, _ = split(path.read_bytes())
    tensors = load_file(str(path))
    name = data.draw(st.sampled_from(sorted(tensors)), label="tensor")
    how = data.draw(st.sampled_from(["int", "bool", "half", "nan", "inf", "shape", "drop", "extra", "scale"]), label="how")
    t = tensors[name]
    if how == "int":
        tensors[name] = t.round().to(data.draw(st.sampled_from([torch.int8, torch.int32, torch.int64, torch.uint8])))
    elif how == "bool":
        tensors[name] = t > 0
    elif how == "half":
        tensors[name] = t.half()
    elif how in ("nan", "inf"):
        bad = t.clone().reshape(-1)
        bad[data.draw(st.integers(0, bad.numel() - 1))] = float(how)
        tensors[name] = bad.reshape(t.shape)
    elif how == "shape":
        tensors[name] = torch.zeros(t.numel() + data.draw(st.integers(1, 3)))
    elif how == "drop":
        del tensors[name]
    elif how == "extra":
        tensors["planner.extra"] = torch.zeros(2)
    else:
        tensors[name] = t * 9  # same kind, other values: only the hash can tell
        if torch.equal(tensors[name], t):  # a zero-initialised tensor: nothing changed
            how = "unchanged"
    meta = {k: v for k, v in header["__metadata__"].items()}
    signed = data.draw(st.booleans(), label="signed")
    if signed:
        meta = sign_metadata(tensors, meta)
    forged = workdir / "tensor_forged.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, forged, metadata=meta)
    try:
        load_checkpoint(forged)
    except CheckpointError as exc:
        assert len(str(exc).splitlines()) == 1 and forged.name in str(exc)
        if signed and how in ("int", "bool"):
            assert "belongs" in str(exc)
        return
    assert how == "unchanged" or (signed and how == "scale"), f"{how} (signed={signed}) was accepted"


@FUZZ
@given(data=st.data())
def test_mardini_tae_mutations(workdir, data):
    """The same for mardini-tae files, through load_vae."""
    from mardini_core import vae

    path = workdir / "tae_integrity.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        net = vae.TinyAutoencoder(vae.MARDINI_TAE, vae.TinyAEConfig(latent_channels=32, width=8, blocks=1, mid_gn=False))
        vae.save_mardini_tae(path, net)
    header, body = split(path.read_bytes())
    meta = header["__metadata__"]
    original = json.loads(json.dumps(meta))
    key = data.draw(st.sampled_from(sorted(meta) + ["config_field"]), label="key")
    if key == "config_field":
        config = json.loads(meta["config"])
        config[data.draw(st.sampled_from(sorted(config)))] = data.draw(JSON)
        meta["config"] = json.dumps(config)
    else:
        meta[key] = data.draw(st.text(max_size=16), label="value")
    signed = data.draw(st.booleans(), label="signed")
    if signed:
        meta[INTEGRITY] = integrity_digest(meta.get(LEGACY_INTEGRITY, ""), meta)
    forged = workdir / "tae_forged.safetensors"
    raw = join(header, body)
    forged.write_bytes(raw)
    try:
        vae.load_vae(forged)
    except CheckpointError as exc:
        assert len(str(exc).splitlines()) == 1 and forged.name in str(exc)
        return
    assert signed or raw == path.read_bytes() or meta == original  # accepted only when signed or nothing changed
