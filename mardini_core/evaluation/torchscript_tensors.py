"""The tensors of a TorchScript archive (torch.jit.save's .pt zip), read without running it.

torch.jit.load compiles the archive's code and unpickles its data.pkl, and torch's own docs warn
that a crafted archive can execute arbitrary code there. Here data.pkl goes through a pickle
Unpickler that resolves no global but the four a module's weights need; every TorchScript class
becomes a plain attribute holder, and tensors are viewed from the archive's raw storages. Nothing
of the archive is executed: its code files are never read.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

STORAGE_DTYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
                  "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32}


class ScriptObject:
    """Stands for any TorchScript class instance: keeps its attributes, runs none of its code."""

    def __setstate__(self, state):
        self.attributes = state


def _rebuild_tensor(storage: torch.Tensor, offset: int, size, stride, *_):
    return storage.as_strided(tuple(size), tuple(stride), offset)


class _WeightsUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.root = archive, root

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__"):
            return ScriptObject
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch.jit._pickle", "build_intlist"):
            return list
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a module's weights")

    def persistent_load(self, pid):
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"unexpected persistent record {pid!r}")
        raw = bytearray(self.archive.read(f"{self.root}/data/{key}"))
        return torch.frombuffer(raw, dtype=dtype, count=numel) if numel else torch.empty(0, dtype=dtype)


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor attribute of the archived module, by its dotted attribute path ("net.layers.conv.weight")."""
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise pickle.UnpicklingError(f"{path} has no single <root>/data.pkl: not a TorchScript archive")
        root = pickles[0].split("/")[0]
        module = _WeightsUnpickler(archive.read(pickles[0]), archive, root).load()
    tensors: dict[str, torch.Tensor] = {}
    _collect(module, "", tensors)
    return tensors


def _collect(value, prefix: str, out: dict[str, torch.Tensor]) -> None:
    if isinstance(value, torch.Tensor):
        out[prefix] = value
    elif isinstance(value, ScriptObject):
        for name, attribute in value.attributes.items():
            _collect(attribute, f"{prefix}.{name}" if prefix else name, out)
