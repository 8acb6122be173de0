"""Noise tricks on top of plain Gaussian noise: frame sharing (EasyAnimate), offset noise, input perturbation.

All three are off by default, which is exactly what the original V5/V5.1 trainer does: it parses
``--noise_offset`` and ``--input_perturbation`` but never applies them. When switched on they follow the
diffusers training examples (``train_text_to_image.py``), generalised to video latents (B, C, F, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NoiseOptions:
    """How training noise is drawn; the defaults give i.i.d. N(0, 1) noise."""

    offset: float = 0.0
    input_perturbation: float = 0.0
    share_in_frames: bool = False
    share_in_frames_ratio: float = 0.5


def share_noise_in_frames(noise: torch.Tensor, ratio: float) -> torch.Tensor:
    """e_i = r * e_(i-1) + (1 - r) * e_i along the frame axis (dim 2), sequentially.

    Each frame mixes in the *already mixed* previous frame, as the original does, so correlation
    decays geometrically with frame distance.
    """
    frames = list(noise.unbind(dim=2))
    for i in range(1, len(frames)):
        frames[i] = ratio * frames[i - 1] + (1.0 - ratio) * frames[i]
    return torch.stack(frames, dim=2)


def offset_noise(noise: torch.Tensor, offset: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add ``offset`` x N(0, 1) per sample and channel, constant over frames and pixels (brightness shifts)."""
    if offset == 0:
        return noise
    shape = (noise.shape[0], noise.shape[1]) + (1,) * (noise.ndim - 2)
    return noise + offset * torch.randn(shape, generator=generator, device=noise.device, dtype=noise.dtype)


def perturb_noise(noise: torch.Tensor, scale: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """noise + scale x N(0, 1): used for the model input only, the target keeps the clean noise."""
    if scale == 0:
        return noise
    return noise + scale * torch.randn(noise.shape, generator=generator, device=noise.device, dtype=noise.dtype)


def sample_training_noise(
    latents: torch.Tensor, options: NoiseOptions, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw N(0, 1) noise like ``latents``, then apply frame sharing and the offset."""
    noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    if options.share_in_frames:
        noise = share_noise_in_frames(noise, options.share_in_frames_ratio)
    return offset_noise(noise, options.offset, generator)
