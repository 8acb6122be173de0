"""A collated batch says what it is: where its latents and prompt embeddings come from, and how its inpaint and
reference-image conditioning is built. The trainer calls these methods and never inspects the keys.

Batches are ``dict`` subclasses so that Trainer and accelerate move them to the device unchanged (both rebuild a
mapping as ``type(batch)({...})``) and workers can pickle them. What a batch needs from the model side is the
small :class:`BatchEncoders` protocol (the trainer's frozen encoders implement it); the data side imports no model.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class BatchEncoders(Protocol):
    """The frozen encoders as a batch uses them (``hf_easyanimate.models.encoders.FrozenEncoders``)."""

    def encode_pixels(self, pixels: torch.Tensor, sample: bool = True) -> torch.Tensor: ...

    def encode_prompts(self, prompts: list[str]) -> dict[str, torch.Tensor]: ...

    def encode_reference_images(self, clip_pixel_values: torch.Tensor) -> torch.Tensor: ...

    def sample_latents(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor: ...


class TrainingBatch(dict):
    """One step's batch; subclasses say where its tensors come from."""

    @property
    def size(self) -> int:
        """Samples in the batch."""
        return len(self["text"])

    def latents(self, encoders: BatchEncoders) -> torch.Tensor:
        """Scaled VAE latents (B, C, f, h, w), float32."""
        raise NotImplementedError

    def prompt_embeddings(self, encoders: BatchEncoders) -> dict[str, torch.Tensor]:
        """The transformer's text inputs (``encoder_hidden_states`` ..., with masks)."""
        raise NotImplementedError

    def inpaint_latents(self, conditioner: Any, latents: torch.Tensor, encoders: BatchEncoders) -> torch.Tensor | None:
        """Mask + masked-video latents for an InP model; None when the batch carries no mask (text-to-video)."""
        raise NotImplementedError

    def reference_features(self, encoders: BatchEncoders) -> torch.Tensor | None:
        """V3/V4 InP: CLIP features of each sample's reference frame; None when the batch has none."""
        return None


class PixelBatch(TrainingBatch):
    """Pixels and captions from :class:`~hf_easyanimate.data.EasyAnimateCollator`: the step encodes them.

    Keys: ``pixel_values`` (B, F, 3, H, W) in [-1, 1], ``text``, optionally ``mask`` (B, F, 1, H, W) and
    ``clip_pixel_values`` (B, H, W, 3) in 0-255.
    """

    @property
    def size(self) -> int:
        return int(self["pixel_values"].shape[0])

    def latents(self, encoders: BatchEncoders) -> torch.Tensor:
        return encoders.encode_pixels(self["pixel_values"]).float()

    def prompt_embeddings(self, encoders: BatchEncoders) -> dict[str, torch.Tensor]:
        return encoders.encode_prompts(self["text"])

    def inpaint_latents(self, conditioner: Any, latents: torch.Tensor, encoders: BatchEncoders) -> torch.Tensor | None:
        if "mask" not in self:
            return None
        return conditioner(self["pixel_values"], self["mask"], latents, encoders.encode_pixels)

    def reference_features(self, encoders: BatchEncoders) -> torch.Tensor | None:
        if "clip_pixel_values" not in self or getattr(encoders, "image_encoder", None) is None:
            return None
        return encoders.encode_reference_images(self["clip_pixel_values"])
