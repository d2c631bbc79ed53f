"""A stand-in for ComfyUI's `VAE` object: same call conventions, a fixed linear 8x autoencoder.

encode: [B,H,W,3] in 0..1 -> [B,C,H/8,W/8] (unscaled); decode: [B,C,h,w] -> [B,8h,8w,3] in 0..1.
`packed=True` mimics ComfyUI's FLUX.2 VAEs (taef2): 4*C channels at 16x, 2x2 patches in channels.
"""
import torch
import torch.nn.functional as F


class FakeVAE:
    def __init__(self, channels: int = 32, packed: bool = False, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.base_channels = channels
        self.packed = packed
        self.latent_channels = channels * 4 if packed else channels
        self.proj = torch.randn(channels, 3, generator=g) * 0.5
        self.encode_calls: list = []

    def spacial_compression_encode(self):
        return 8  # what ComfyUI's taef2 reports too, although its latents are 16x smaller

    def encode(self, pixels):
        self.encode_calls.append(tuple(pixels.shape))
        x = pixels.movedim(-1, 1) * 2 - 1
        x = F.avg_pool2d(x, 8)
        z = torch.einsum("cr,brhw->bchw", self.proj, x)
        if self.packed:
            b, c, h, w = z.shape
            z = z.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, c * 4, h // 2, w // 2)
        return z

    def decode(self, z):
        if self.packed:
            b, c4, h, w = z.shape
            z = z.reshape(b, c4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c4 // 4, h * 2, w * 2)
        x = torch.einsum("cr,bchw->brhw", torch.linalg.pinv(self.proj).T, z)
        x = F.interpolate(x, scale_factor=8, mode="nearest")
        return ((x + 1) / 2).clamp(0, 1).movedim(1, -1)
