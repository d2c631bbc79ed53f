"""Fake of `comfy.sd.VAE`, only its pixel-space form and the encode/decode path ComfyUI's real one takes."""
import torch

from . import model_management
from .model_patcher import ModelPatcher


class PixelSpace(torch.nn.Module):
    def encode(self, x):
        return x

    def decode(self, x):
        return x


class VAE:
    def __init__(self, sd=None, device=None, config=None, dtype=None, metadata=None):
        assert "pixel_space_vae" in sd, "the fake only builds the pixel-space VAE"
        self.first_stage_model = PixelSpace()
        self.latent_channels, self.downscale_ratio, self.upscale_ratio = 3, 1, 1
        self.process_input = lambda image: image * 2.0 - 1.0
        self.process_output = lambda image: image.add_(1.0).div_(2.0).clamp_(0.0, 1.0)
        self.device = self.output_device = torch.device("cpu")
        self.vae_dtype = torch.float32
        self.memory_used_encode = self.memory_used_decode = lambda shape, dtype: 0
        self.disable_offload = True
        self.patcher = ModelPatcher(self.first_stage_model, self.device, self.device)

    def spacial_compression_encode(self):
        return self.downscale_ratio

    def encode(self, pixel_samples):
        d = self.spacial_compression_encode()
        h, w = pixel_samples.shape[1] // d * d, pixel_samples.shape[2] // d * d
        x = pixel_samples[:, :h, :w, :3].movedim(-1, 1)
        model_management.load_models_gpu([self.patcher], self.memory_used_encode(x.shape, self.vae_dtype), force_full_load=True)
        return self.first_stage_model.encode(self.process_input(x).to(self.device, self.vae_dtype)).to(self.output_device).float()

    def decode(self, samples_in, vae_options={}):
        model_management.load_models_gpu([self.patcher], self.memory_used_decode(samples_in.shape, self.vae_dtype), force_full_load=True)
        out = self.first_stage_model.decode(samples_in.to(self.device, self.vae_dtype)).to(self.output_device).float()
        return self.process_output(out).movedim(1, -1)
