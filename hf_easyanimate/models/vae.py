"""VAE encoding of pixel batches, chunked by ``vae_mini_batch`` to bound activation memory; the VAE's frame grid."""

from __future__ import annotations

import torch

from ..data.buckets import FrameGrid
from ..utils.deprecation import moved_name


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


@torch.no_grad()
def encode_posterior(vae: torch.nn.Module, pixels: torch.Tensor, mini_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, F, 3, H, W) -> the posterior's unscaled (mean, std), each (B, C, f, h, w), for the latent cache.

    Storing the distribution, not a draw, lets a cached run draw its sample with the step's keyed RNG.
    """
    video = pixels.permute(0, 2, 1, 3, 4).to(device=vae.device, dtype=vae.dtype)
    means, stds = [], []
    for i in range(0, len(video), mini_batch):
        posterior = vae.encode(video[i : i + mini_batch]).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    return torch.cat(means), torch.cat(stds)


def sample_posterior(mean: torch.Tensor, std: torch.Tensor, mini_batch: int, scaling_factor: float) -> torch.Tensor:
    """Scaled latents drawn from cached (mean, std), consuming the RNG exactly as :func:`encode_pixels` does.

    One ``randn`` per ``mini_batch`` chunk, in the posterior's dtype and device, as diffusers'
    ``DiagonalGaussianDistribution.sample`` draws it: a cached and an uncached step see the same latents.
    """
    chunks = []
    for i in range(0, len(mean), mini_batch):
        chunk_mean, chunk_std = mean[i : i + mini_batch], std[i : i + mini_batch]
        noise = torch.randn(chunk_mean.shape, device=chunk_mean.device, dtype=chunk_mean.dtype)
        chunks.append(chunk_mean + chunk_std * noise)
    return torch.cat(chunks) * scaling_factor


def frame_grid(vae: torch.nn.Module) -> FrameGrid:
    """The frame grid of a loaded VAE: its own (the V2-V4 port says it), else diffusers' V5 MagVIT (4n + 1)."""
    own = getattr(vae, "frame_grid", None)
    if isinstance(own, FrameGrid):
        return own
    return FrameGrid(int(getattr(vae, "temporal_compression_ratio", 4)))


def __getattr__(name: str):  # legacy_frame_grid, temporal_latents: V2-V4 arithmetic, now beside the V2-V4 VAE
    return moved_name(__name__, name)
