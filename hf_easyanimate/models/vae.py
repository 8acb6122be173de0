"""VAE encoding of pixel batches, chunked by ``vae_mini_batch`` to bound activation memory."""

from __future__ import annotations

import torch


@torch.no_grad()
def encode_pixels(vae: torch.nn.Module, pixels: torch.Tensor, mini_batch: int, sample: bool = True) -> torch.Tensor:
    """(B, F, 3, H, W) in [-1, 1] -> scaled latents (B, C, f, h, w).

    ``sample`` draws from the posterior (training targets, as the original); False takes its mode, which is
    what diffusers' inpaint pipeline uses for the masked-video conditioning.
    """
    video = pixels.permute(0, 2, 1, 3, 4).to(device=vae.device, dtype=vae.dtype)  # -> B, 3, F, H, W
    chunks = []
    for i in range(0, len(video), mini_batch):
        posterior = vae.encode(video[i : i + mini_batch]).latent_dist
        chunks.append(posterior.sample() if sample else posterior.mode())
    return torch.cat(chunks) * vae.config.scaling_factor
