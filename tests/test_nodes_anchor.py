"""The loader's anchor choice: the embedded RIFE (managed by ComfyUI), DIS, or core's INTERP_MODEL, reaching VAE Encode."""
import numpy as np
import pytest
import torch

from comfy_fakes import load_pack
from comfy_fakes.fake_vae import FakeVAE

PACK = load_pack()
N = PACK.NODE_CLASS_MAPPINGS

import comfy.model_management  # noqa: E402  (the fakes, installed by load_pack)
import comfy.model_patcher  # noqa: E402
import folder_paths  # noqa: E402
from support import save_tiny_preset  # noqa: E402
from mardini_core.errors import CheckpointError  # noqa: E402
from mardini_core.interpolation import Dis, Ensemble, Rife  # noqa: E402


class BlendNet(torch.nn.Module):
    """Core's INTERP_MODEL interface with a known answer: the cross-fade, on frames padded to pad_align."""

    pad_align = 64

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.shapes = []

    def extract_features(self, img):
        return img.mean(1, keepdim=True)

    def forward(self, img0, img1, timestep=0.5, cache=None):
        self.shapes.append((tuple(img0.shape), tuple(timestep.shape), sorted(cache)))
        return torch.lerp(img0, img1, timestep) * self.scale


def load(**options):
    return N["MarDiniModelLoader"]().load("(embedded default)", "fp32", "sdpa", "gpu", **options)[0]


def test_the_loader_builds_the_anchor_it_is_asked_for():
    fast = load()
    assert isinstance(fast.anchor, Rife) and fast.anchor_patcher is not None
    assert fast.anchor_patcher.model is fast.anchor.net  # ComfyUI's memory manager moves the network that runs
    comfy.model_management.LOADS.clear()
    assert fast.interpolator() is fast.anchor and comfy.model_management.LOADS == [fast.anchor_patcher]
    best = load(interpolator="rife", anchor_quality="best")
    assert isinstance(best.anchor, Ensemble) and isinstance(best.anchor.inner, Rife)
    assert best.anchor_patcher.model is best.anchor.inner.net
    dis = load(interpolator="dis", anchor_quality="fast")
    assert isinstance(dis.anchor, Dis) and dis.anchor_patcher is None
    with pytest.raises(CheckpointError, match="interpolator must be one of"):
        load(interpolator="raft")
    paper = N["MarDiniModelLoader"]().load(save_tiny_preset(folder_paths.models_dir, "tiny-anchor.safetensors"), "auto", "auto", "gpu")[0]
    assert paper.anchor is None and paper.interpolator() is None  # a model without the flow anchor loads no interpolator


def test_an_interp_model_from_core_becomes_the_anchor_of_vae_encode():
    net = BlendNet()
    patcher = comfy.model_patcher.ModelPatcher(net, torch.device("cpu"), torch.device("cpu"))
    model = load(interp_model=patcher, anchor_quality="fast", interpolator="dis")  # interp_model wins over the widget
    h, w = 96, 160  # not multiples of pad_align: padded for the network, cropped back
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.random((2, h, w, 3), dtype=np.float32))
    mask = N["MarDiniFrameMask"]().build(9, "interpolation", 2, "")[0]
    encoded = N["MarDiniVAEEncode"]().encode(model, FakeVAE(), images, mask)[0]
    times = torch.arange(1, 8) / 8
    expected = torch.lerp(images[0], images[1], times[:, None, None, None]).permute(0, 3, 1, 2)
    torch.testing.assert_close(encoded.window.anchor.pixels[1:8], expected, atol=1e-5, rtol=0)
    assert net.shapes == [((7, 3, 128, 192), (7, 1, 128, 192), ["img0", "img1"])]  # one call for the gap's 7 times
