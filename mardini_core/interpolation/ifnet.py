"""RIFE 4.x's IFNet: intermediate flow estimation for a frame at any time t between two frames.

RIFE (Huang et al., ECCV 2022, "Real-Time Intermediate Flow Estimation for Video Frame Interpolation")
estimates the flows from time t back to both frames directly, coarse to fine: each IFBlock looks at
the two frames (warped by the flow so far), their learned features (warped alike), t, the fusion mask
and the previous block's hidden features, at 1/16 .. 1/1 of the picture, adds a flow correction and
writes a new mask. The frame at t is the two backward warps blended by the sigmoid of the mask.
The 4.x layout (Practical-RIFE, as ComfyUI core's "Load Frame Interpolation Model" reads it): a
feature head of `head` channels at full size, five blocks of widths 192/128/96/64/32, each block's
output 4 flow + 1 mask + 8 feature channels through a transposed conv and a 2x pixel shuffle.
Tensor names are the checkpoints' own (`block0.conv0.0.0.weight`, `encode.cnn3.bias`...).
Images are (B, 3, H, W) in [0, 1] with H and W multiples of `ALIGN`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ALIGN = 64  # the coarsest block sees 1/16 of the picture and strides by 4 more
SCALES = (16, 8, 4, 2, 1)  # each block's downscale
BLOCK_OUT = 4 + 1 + 8  # flow t->0 (2), flow t->1 (2), mask logit, hidden features


@dataclass(frozen=True)
class IFNetConfig:
    head: int = 4  # channels of the feature head
    widths: tuple[int, ...] = (192, 128, 96, 64, 32)

    @staticmethod
    def from_state_dict(state: dict[str, torch.Tensor]) -> "IFNetConfig":
        """Read the layout off a checkpoint's tensor shapes (KeyError where a tensor is missing)."""
        widths = tuple(state[f"block{i}.conv0.1.0.weight"].shape[0] for i in range(len(SCALES)))
        return IFNetConfig(head=state["encode.cnn3.weight"].shape[1], widths=widths)


def conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.LeakyReLU(0.2))


def warp(image: torch.Tensor, flow: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Backward warp: out(x) = image(x + flow(x)), bilinear, borders replicated.
    image (B, C, H, W), flow (B, 2, H, W) in pixels, grid (1, H, W, 2) the identity in [-1, 1]."""
    h, w = flow.shape[-2:]
    step = flow.new_tensor([(w - 1) / 2, (h - 1) / 2]).view(1, 2, 1, 1)
    offset = (flow / step).permute(0, 2, 3, 1)  # (B, H, W, 2)
    return F.grid_sample(image, grid + offset, mode="bilinear", padding_mode="border", align_corners=True)


def identity_grid(h: int, w: int, device, dtype) -> torch.Tensor:
    """(1, H, W, 2): grid_sample's coordinates of every pixel (x then y), align_corners=True."""
    ys, xs = torch.linspace(-1, 1, h, device=device, dtype=dtype), torch.linspace(-1, 1, w, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)[None]


class Head(nn.Module):
    """Per-frame features at full size: a stride-2 conv stack and a transposed conv back up."""

    def __init__(self, out: int):
        super().__init__()
        self.cnn0 = nn.Conv2d(3, 16, 3, 2, 1)
        self.cnn1 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn2 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(16, out, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, out, H, W)
        for layer in (self.cnn0, self.cnn1, self.cnn2):
            x = F.leaky_relu(layer(x), 0.2)
        return self.cnn3(x)


class ResConv(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(torch.addcmul(x, self.conv(x), self.beta), 0.2)


class IFBlock(nn.Module):
    """One scale: inputs shrunk by `scale`, 4x further down in conv0, 8 residual convs, 4x back up."""

    def __init__(self, c_in: int, width: int):
        super().__init__()
        self.conv0 = nn.Sequential(conv(c_in, width // 2, 2), conv(width // 2, width, 2))
        self.convblock = nn.Sequential(*(ResConv(width) for _ in range(8)))
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(width, 4 * BLOCK_OUT, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, pieces: list[torch.Tensor], flow: torch.Tensor | None, scale: int, batch: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """pieces: the block's inputs at full size, each (batch or 1, c_i, H, W); flow (batch, 4, H, W) or None
        -> flow (batch, 4, H, W), mask logit (batch, 1, H, W), features (batch, 8, H, W)."""
        x = [shrink(p, scale).expand(batch, -1, -1, -1) for p in pieces]
        if flow is not None:
            x.append(shrink(flow, scale) / scale)
        shape = (batch, sum(p.shape[1] for p in x), *x[0].shape[-2:])
        x = torch.cat(x, 1, out=torch.empty(shape, dtype=x[0].dtype, device=x[0].device, memory_format=torch.channels_last))
        out = self.lastconv(self.convblock(self.conv0(x)))
        out = out if scale == 1 else F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
        return out[:, :4] * scale, out[:, 4:5], out[:, 5:]


def shrink(x: torch.Tensor, scale: int) -> torch.Tensor:
    """x (B, C, H, W) -> (B, C, H / scale, W / scale), bilinear. It works channel by channel, so the block shrinks
    its inputs one by one and concatenates them small (the same numbers as shrinking their concatenation, at a
    fraction of the memory traffic), and a pair's frames once for every time between them."""
    return x if scale == 1 else F.interpolate(x, scale_factor=1 / scale, mode="bilinear", align_corners=False)


class IFNet(nn.Module):
    def __init__(self, config: IFNetConfig = IFNetConfig()):
        super().__init__()
        self.config = config
        self.encode = Head(config.head)
        first = 3 + 3 + 2 * config.head + 1  # frames, features, t
        later = first + 1 + 8 + 4  # + mask logit, hidden features, flow
        for i, width in enumerate(config.widths):
            self.add_module(f"block{i}", IFBlock(first if i == 0 else later, width))

    @property
    def blocks(self) -> list[IFBlock]:
        return [getattr(self, f"block{i}") for i in range(len(self.config.widths))]

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, t: torch.Tensor,
                feat0: torch.Tensor | None = None, feat1: torch.Tensor | None = None) -> torch.Tensor:
        """img0, img1 (B or 1, 3, H, W) in [0, 1], t (B,) in [0, 1] -> the frame at t (B, 3, H, W), unclamped.
        A batch of 1 is one pair at every time in t. feat0 / feat1: the head's features of img0 / img1 when a
        caller reuses them across times."""
        b, (h, w) = t.shape[0], img0.shape[-2:]
        if h % ALIGN or w % ALIGN:
            raise ValueError(f"IFNet takes sizes that are multiples of {ALIGN}, got {w}x{h}; pad first")
        feat0 = self.encode(img0) if feat0 is None else feat0
        feat1 = self.encode(img1) if feat1 is None else feat1
        time = t.to(img0.dtype).view(b, 1, 1, 1).expand(b, 1, h, w)
        grid = identity_grid(h, w, img0.device, img0.dtype)
        each = lambda x: x.expand(b, -1, -1, -1)  # noqa: E731 (a view: the pair's tensors for every time)
        flow = mask = hidden = None
        for block, scale in zip(self.blocks, SCALES):
            if flow is None:
                flow, mask, hidden = block([img0, img1, feat0, feat1, time], None, scale, b)
            else:
                wf0, wf1 = warp(each(feat0), flow[:, :2], grid), warp(each(feat1), flow[:, 2:], grid)
                d_flow, mask, hidden = block([warped0, warped1, wf0, wf1, time, mask, hidden], flow, scale, b)
                flow = flow + d_flow  # the flow is refined, the mask replaced
            warped0, warped1 = warp(each(img0), flow[:, :2], grid), warp(each(img1), flow[:, 2:], grid)
        return torch.lerp(warped1, warped0, torch.sigmoid(mask))
