"""The CLIP image encoder of the V3 / V4 inpaint models: one reference frame per sample -> CLIP features.

The original trainer turns each sample's reference frame (``clip_pixel_values``, (H, W, 3) in 0-255) into a PIL
image with ``np.uint8`` (which truncates), runs ``CLIPImageProcessor`` (resize, centre crop, normalise) and the
``CLIPVisionModelWithProjection``, and hands the transformer either the projected image embedding (V3: 768-d,
which ``clip_projection`` turns into 8 tokens) or the patch tokens of the last layer without the class token
(V4: into its resampler). Which one is the transformer's ``reference_image_features``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

FEATURES = ("image_embeds", "patch_tokens")


class ReferenceImageEncoder:
    """Frozen CLIP vision tower + its processor; ``features`` says what the transformer takes."""

    def __init__(self, encoder: torch.nn.Module, processor: Any, features: str) -> None:
        if features not in FEATURES:
            raise ValueError(f"reference image features must be one of {FEATURES}, got {features!r}")
        self.encoder, self.processor, self.features = encoder, processor, features

    @property
    def modules(self) -> list[torch.nn.Module]:
        return [self.encoder]

    @torch.no_grad()
    def __call__(self, clip_pixel_values: torch.Tensor, device: torch.device | str) -> torch.Tensor:
        """(B, H, W, 3) floats in 0-255 -> (B, 768) image embeddings or (B, patches, width) patch tokens."""
        from PIL import Image

        images = [Image.fromarray(np.uint8(frame.cpu().float().numpy())) for frame in clip_pixel_values]
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        output = self.encoder(pixel_values=pixels.to(device=device, dtype=self.encoder.dtype))
        if self.features == "image_embeds":
            return output.image_embeds
        return output.last_hidden_state[:, 1:]
