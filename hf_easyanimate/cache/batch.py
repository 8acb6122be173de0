"""The batch of a run trained from the latent cache: posteriors and prompt embeddings instead of pixels and text."""

from __future__ import annotations

from typing import Any

import torch

from ..data.batch import BatchEncoders, TrainingBatch

LATENT_MEAN, LATENT_STD, MASKED_VIDEO_LATENTS = "latent_mean", "latent_std", "masked_video_latents"
# V2-V4 inpaint: the cached posterior of cat([VAE(mask), VAE(masked video)]) for the batch's masks
INPAINT_MEAN, INPAINT_STD = "inpaint_mean", "inpaint_std"
REFERENCE_FEATURES = "reference_features"  # V3/V4 InP: CLIP features of frame 0
PROMPT_KEYS = ("encoder_hidden_states", "encoder_attention_mask", "encoder_hidden_states_t5", "encoder_attention_mask_t5")


class LatentBatch(TrainingBatch):
    """From :class:`~hf_easyanimate.cache.CachedCollator`: the step draws the latents from the cached posterior with
    its keyed RNG (as an uncached step would draw them from the VAE's), and reads the prompt embeddings.

    Its inpaint conditioning is either V5's cached masked-video latents (the mask itself is resized) or V2-V4's
    cached posterior of the VAE-encoded mask and masked video, whichever the run's cache spec holds.
    """

    def latents(self, encoders: BatchEncoders) -> torch.Tensor:
        return encoders.sample_latents(self[LATENT_MEAN], self[LATENT_STD]).float()

    def prompt_embeddings(self, encoders: BatchEncoders) -> dict[str, torch.Tensor]:
        return {key: self[key] for key in PROMPT_KEYS if key in self}

    def inpaint_latents(self, conditioner: Any, latents: torch.Tensor, encoders: BatchEncoders) -> torch.Tensor | None:
        if "mask" not in self:
            return None
        if MASKED_VIDEO_LATENTS in self:
            return conditioner.from_latents(self["mask"], self[MASKED_VIDEO_LATENTS], latents)
        return conditioner.from_posterior(self["mask"], self[INPAINT_MEAN], self[INPAINT_STD], latents,
                                          encoders.sample_latents)

    def reference_features(self, encoders: BatchEncoders) -> torch.Tensor | None:
        return self.get(REFERENCE_FEATURES)
