"""Inpaint (image-to-video) conditioning: mask + masked-video latents, built the way diffusers' pipeline does.

``EasyAnimateInpaintPipeline`` feeds an InP transformer ``inpaint_latents = cat([mask_latents,
masked_video_latents], dim=1)``; a LoRA trained on anything else would not work with that pipeline, so
this module reuses the pipeline's own helpers (``resize_mask``, ``add_noise_to_reference_video``) and
follows its conventions where the original trainer differs (see docs/objectives.md):

* masked video = pixels where the mask is 0, -1 where it is 1; optional noise on the kept pixels
  (``add_noise_in_inpaint_model`` in the transformer config; training draws the strength
  sigma = exp(N(-3, 0.5)) per sample, inference uses a fixed ``noise_aug_strength``);
* masked-video latents = VAE posterior *mode* x scaling_factor (the pipeline's choice; the original
  trainer sampled the posterior);
* mask latents = ``resize_mask(1 - mask)`` onto the latent grid, the first frame resized on its own
  (MagVIT encodes frame 0 alone), x scaling_factor;
* a fully masked sample (pure text-to-video) gets all-zero inpaint latents, as the pipeline feeds when
  there is no reference (the original zeroed them 90 % of the time).

V2-V4 (``resize_inpaint_mask_directly: false``) have no diffusers pipeline to agree with, so
:class:`EncodedMaskInpaintConditioner` does what their original trainer does: the mask itself goes through the VAE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from diffusers.pipelines.easyanimate.pipeline_easyanimate_inpaint import add_noise_to_reference_video, resize_mask


def masked_pixels(pixel_values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, F, 3, H, W) pixels in [-1, 1] with masked (mask == 1) pixels set to -1."""
    mask = mask.to(pixel_values.dtype)
    return pixel_values * (1.0 - mask) - mask


@dataclass
class InpaintConditioner:
    """Builds ``inpaint_latents`` (B, 1 + C, f, h, w) for a batch; pure tensors plus an ``encode`` callable.

    ``encode(pixels, sample=...)`` maps pixels (B, F, 3, H, W) to *scaled* latents (B, C, f, h, w); this one asks
    for the posterior mode.
    """

    scaling_factor: float
    add_noise_to_reference: bool = False
    first_frame_separately: bool = True
    encodes_mask: ClassVar[bool] = False  # the mask is resized onto the latent grid, not encoded

    def __call__(
        self,
        pixel_values: torch.Tensor,
        mask: torch.Tensor,
        latents: torch.Tensor,
        encode: Callable[..., torch.Tensor],
    ) -> torch.Tensor:
        check_mask(mask, pixel_values)
        mask = mask.to(device=pixel_values.device, dtype=torch.float32)
        reference = masked_pixels(pixel_values.float(), mask)
        if self.add_noise_to_reference:
            reference = add_noise_to_reference_video(reference)
        return self.from_latents(mask, encode(reference, sample=False), latents)

    def from_latents(self, mask: torch.Tensor, video_latents: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """The conditioning from already-encoded masked-video latents (the latent cache stores them)."""
        mask = mask.to(device=latents.device, dtype=torch.float32)
        video_latents = video_latents.to(device=latents.device, dtype=latents.dtype)
        if video_latents.shape != latents.shape:
            raise ValueError(f"masked-video latents {tuple(video_latents.shape)} != latents {tuple(latents.shape)}")
        known = (1.0 - mask).permute(0, 2, 1, 3, 4)  # (B, 1, F, H, W), 1 = shown to the model
        mask_latents = resize_mask(known, latents, process_first_frame_only=self.first_frame_separately)
        mask_latents = mask_latents.to(device=latents.device, dtype=latents.dtype) * self.scaling_factor
        inpaint = torch.cat([mask_latents, video_latents], dim=1)
        text_to_video = mask.flatten(1).amin(dim=1) >= 0.5  # every pixel masked
        return inpaint * (~text_to_video).to(inpaint.dtype).reshape(-1, 1, 1, 1, 1)


def check_mask(mask: torch.Tensor, pixel_values: torch.Tensor) -> None:
    if mask.shape[:2] != pixel_values.shape[:2] or mask.shape[-2:] != pixel_values.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match pixel_values {tuple(pixel_values.shape)}")


@dataclass
class EncodedMaskInpaintConditioner:
    """V2-V4 inpaint conditioning, as their original trainer builds it (``resize_inpaint_mask_directly: false``).

    ``inpaint_latents = cat([VAE(mask as 3 channels), VAE(masked video)]) * scaling_factor``, both VAE passes drawing
    from the posterior (mask values 0/1 go in as pixel values, unnormalised, as the original feeds them); a fully
    masked sample (text-to-video) has its conditioning zeroed with probability ``zero_text_to_video`` (0.9) and
    keeps the VAE's encoding of "everything masked" otherwise. The draw is the step's torch RNG (keyed per batch).
    """

    scaling_factor: float
    add_noise_to_reference: bool = False
    zero_text_to_video: float = 0.9
    encodes_mask: ClassVar[bool] = True  # the latent cache then holds VAE(mask) posteriors (CacheSpec.encoded_mask)

    def __call__(
        self,
        pixel_values: torch.Tensor,
        mask: torch.Tensor,
        latents: torch.Tensor,
        encode: Callable[..., torch.Tensor],
    ) -> torch.Tensor:
        check_mask(mask, pixel_values)
        mask = mask.to(device=pixel_values.device, dtype=torch.float32)
        zeroed = self._zeroed(mask)  # drawn before the VAE's draws, as the original orders them
        reference = masked_pixels(pixel_values.float(), mask)
        if self.add_noise_to_reference:
            reference = add_noise_to_reference_video(reference)
        mask_latents = encode(mask.repeat(1, 1, 3, 1, 1), sample=True)
        video_latents = encode(reference, sample=True)
        inpaint = torch.cat([mask_latents, video_latents], dim=1).to(device=latents.device, dtype=latents.dtype)
        return self._apply(inpaint, zeroed, latents, "inpaint latents")

    def from_posterior(
        self,
        mask: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
        latents: torch.Tensor,
        sample: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """The conditioning from the latent cache: ``sample(mean, std)`` (scaled) draws it from the cached posterior
        of ``cat([VAE(mask), VAE(masked video)])`` of each sample's mask; text-to-video samples are zeroed as above."""
        zeroed = self._zeroed(mask)
        inpaint = sample(mean.to(latents.device), std.to(latents.device)).to(dtype=latents.dtype)
        return self._apply(inpaint, zeroed, latents, "cached inpaint latents")

    def _zeroed(self, mask: torch.Tensor) -> torch.Tensor:
        """(B,) bool: the fully masked (text-to-video) samples whose conditioning this step zeroes."""
        text_to_video = mask.flatten(1).amin(dim=1) >= 0.5
        return text_to_video & (torch.rand(len(mask)) < self.zero_text_to_video).to(mask.device)

    @staticmethod
    def _apply(inpaint: torch.Tensor, zeroed: torch.Tensor, latents: torch.Tensor, what: str) -> torch.Tensor:
        if inpaint.shape[2:] != latents.shape[2:]:
            raise ValueError(f"{what} {tuple(inpaint.shape)} do not match latents {tuple(latents.shape)}")
        return inpaint * (~zeroed).to(device=inpaint.device, dtype=inpaint.dtype).reshape(-1, 1, 1, 1, 1)


def reference_attention_mask(batch_size: int, tokens: int, device: torch.device | str,
                             keep_probability: float = 0.5) -> torch.Tensor:
    """The CLIP tokens' attention mask of one batch: all ones with ``keep_probability``, else all zeros (the model
    then sees its learned padding instead), one draw for the whole batch as the original makes it."""
    keep = float(torch.rand(())) < keep_probability
    return torch.full((batch_size, tokens), 1.0 if keep else 0.0, device=device)


def empty_inpaint_latents(latents: torch.Tensor) -> torch.Tensor:
    """All-zero conditioning (B, 1 + C, f, h, w): what the pipeline feeds an InP model with no reference."""
    batch, channels, *grid = latents.shape
    return latents.new_zeros((batch, channels + 1, *grid))


def conditioner_for(components) -> InpaintConditioner | EncodedMaskInpaintConditioner:
    """The conditioning an InP checkpoint was trained with, read from its configs.

    ``resize_inpaint_mask_directly`` (V5) resizes the mask onto the latent grid; without it (V2-V4) the mask goes
    through the VAE like the video, as each release's original trainer does.
    """
    config = components.transformer.config
    common = {"scaling_factor": float(components.vae.config.scaling_factor),
              "add_noise_to_reference": bool(config.get("add_noise_in_inpaint_model", False))}
    if not config.get("resize_inpaint_mask_directly", True):
        return EncodedMaskInpaintConditioner(**common)
    return InpaintConditioner(**common, first_frame_separately=bool(components.vae.config.get("cache_mag_vae", True)))
