"""VAE encoding of pixel batches, chunked by ``vae_mini_batch`` to bound activation memory."""

from __future__ import annotations

import torch


@torch.no_grad()
def encode_pixels(vae: torch.nn.Module, pixels: torch.Tensor, mini_batch: int) -> torch.Tensor:
    """(B, F, 3, H, W) in [-1, 1] -> scaled latents (B, C, f, h, w), sampled from the posterior."""
    video = pixels.permute(0, 2, 1, 3, 4).to(device=vae.device, dtype=vae.dtype)  # -> B, 3, F, H, W
    chunks = [vae.encode(video[i : i + mini_batch]).latent_dist.sample() for i in range(0, len(video), mini_batch)]
    return torch.cat(chunks) * vae.config.scaling_factor
