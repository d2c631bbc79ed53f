import json
import pickle
import struct

import pytest
import torch
from safetensors.torch import save_file

from mardini_core.checkpoint import INTEGRITY, LEGACY_INTEGRITY, integrity_digest, load_checkpoint, read_config, save_checkpoint
from mardini_core.config import preset
from mardini_core.errors import CheckpointError
from mardini_core.model import MarDini


@pytest.fixture
def saved(tmp_path):
    model = MarDini(preset("tiny/ST"))
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, model, {"step": 12})
    return model, path


def test_round_trip_is_bit_exact(saved):
    model, path = saved
    loaded = load_checkpoint(path)
    assert loaded.config == model.config
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_config(path).name == "tiny/ST"


def test_round_trip_keeps_switched_attention_and_dtype(tmp_path):
    model = MarDini(preset("tiny/ST"))
    model.set_generator_attention("T")
    save_checkpoint(tmp_path / "m.safetensors", model.to(torch.bfloat16))
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.generator.attention == "T" and loaded.config.generator.attention == "T"
    assert next(loaded.parameters()).dtype == torch.bfloat16
    assert next(load_checkpoint(tmp_path / "m.safetensors", dtype=torch.float32).parameters()).dtype == torch.float32


def test_missing_empty_truncated_files(saved, tmp_path):
    _, path = saved
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty or truncated"):
        load_checkpoint(tmp_path / "empty.safetensors")
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "cut.safetensors")
    (tmp_path / "cut_header.safetensors").write_bytes(data[:40])
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(tmp_path / "cut_header.safetensors")


def test_bit_flip_is_refused(saved, tmp_path):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x10
    (tmp_path / "flip.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="integrity check"):
        load_checkpoint(tmp_path / "flip.safetensors")


def test_pickle_renamed_is_refused_without_unpickling(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"w": Boom()}))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(path)


def test_foreign_safetensors_is_refused(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not a MarDini checkpoint"):
        load_checkpoint(path)


def _rewrite_metadata(src, dst, resign=True, **changes):
    """Change metadata entries; `resign`: recompute the integrity hash, as a forger would."""
    data = src.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    header["__metadata__"].update(changes)
    if resign:
        meta = header["__metadata__"]
        meta[INTEGRITY] = integrity_digest(meta[LEGACY_INTEGRITY], meta)
    raw = json.dumps(header).encode()
    dst.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])


def test_forged_config_is_refused(saved, tmp_path):
    _, path = saved
    cfg = json.loads(read_config(path).to_json())
    cfg["planner"]["depth"] = 3  # weights for 2 blocks, config claims 3
    _rewrite_metadata(path, tmp_path / "forged.safetensors", config=json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match its own config"):
        load_checkpoint(tmp_path / "forged.safetensors")
    cfg["planner"]["depth"] = -1
    _rewrite_metadata(path, tmp_path / "negative.safetensors", config=json.dumps(cfg))
    with pytest.raises(CheckpointError, match="planner.depth must be a positive integer"):
        load_checkpoint(tmp_path / "negative.safetensors")
    _rewrite_metadata(path, tmp_path / "garbage.safetensors", config="{not json")
    with pytest.raises(CheckpointError, match="invalid model config"):
        load_checkpoint(tmp_path / "garbage.safetensors")


def test_metadata_flip_is_refused_and_legacy_files_still_load(saved, tmp_path):
    """The hash covers the config: latent_scale 1.0 -> 9.0 (one bit) is refused; a file carrying only the
    old tensor-only hash still loads when its metadata validates."""
    model, path = saved
    cfg = json.loads(read_config(path).to_json())
    cfg["latent_scale"] = 9.0
    _rewrite_metadata(path, tmp_path / "scaled.safetensors", resign=False, config=json.dumps(cfg))
    with pytest.raises(CheckpointError, match="integrity check"):
        load_checkpoint(tmp_path / "scaled.safetensors")
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    del header["__metadata__"][INTEGRITY]
    raw = json.dumps(header).encode()
    (tmp_path / "legacy.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])
    loaded = load_checkpoint(tmp_path / "legacy.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    del header["__metadata__"][LEGACY_INTEGRITY]
    raw = json.dumps(header).encode()
    (tmp_path / "nohash.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])
    with pytest.raises(CheckpointError, match="no integrity hash"):
        load_checkpoint(tmp_path / "nohash.safetensors")


def test_nested_header_int_tensors_nan_weights_and_full_disk(saved, tmp_path, monkeypatch):
    model, path = saved
    deep = b"[" * 200_000 + b"]" * 200_000
    (tmp_path / "deep.safetensors").write_bytes(struct.pack("<Q", len(deep)) + deep)
    with pytest.raises(CheckpointError, match="deep.safetensors has a corrupt safetensors header"):
        load_checkpoint(tmp_path / "deep.safetensors")
    state = model.state_dict()
    name = next(k for k, v in state.items() if v.is_floating_point())
    for label, value, match in (("int", state[name].to(torch.int32), "int32 where float32 belongs"),
                                ("nan", torch.full_like(state[name], float("nan")), "NaN or infinite weights")):
        tensors = {**state, name: value}
        meta = {"format": "mardini", "format_version": "1", "config": model.config.to_json()}
        from mardini_core.checkpoint import sign_metadata
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp_path / f"{label}.safetensors", metadata=sign_metadata(tensors, meta))
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(tmp_path / f"{label}.safetensors")
    from safetensors import SafetensorError
    import mardini_core.checkpoint as ck
    from mardini_core.errors import OutputError

    def full(*_a, **_k):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No space left on device\" })")

    monkeypatch.setattr(ck, "save_file", full)
    with pytest.raises(OutputError, match="free disk space") as info:
        save_checkpoint(path, model)
    assert len(str(info.value).splitlines()) == 1
    assert load_checkpoint(path) is not None  # the previous file is intact
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
