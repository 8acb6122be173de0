"""CLIP embeddings of sampled frames and prompts, for the text-alignment and temporal-consistency metrics.

transformers' ``CLIPModel`` and its processor, loaded once (``--validation_clip_model``, a folder or Hub id) and
run on the CPU unless told otherwise: at validation time the GPU holds the training run. Embeddings are the
model's projected features (``get_image_features`` / ``get_text_features``), L2-normalised.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"


class ClipModelError(ValueError):
    """The CLIP model for the metrics cannot be loaded; the message names it and the fix."""


class ClipEmbedder:
    """Embeds (F, H, W, 3) uint8 frames and prompts into the CLIP space."""

    def __init__(self, model, processor, device: torch.device | str = "cpu", batch_size: int = 32) -> None:
        self.model = model.eval().to(device)
        self.processor = processor
        self.device = torch.device(device)
        self.batch_size = batch_size

    @classmethod
    def load(cls, name: str, device: torch.device | str = "cpu") -> ClipEmbedder:
        from transformers import CLIPModel, CLIPProcessor

        try:
            model = CLIPModel.from_pretrained(name)
            processor = CLIPProcessor.from_pretrained(name)
        except Exception as error:  # OSError (missing, offline), ValueError (not a CLIP)
            raise ClipModelError(
                f"--validation_clip_model {name} cannot be loaded ({type(error).__name__}: {str(error)[:300]}). "
                "Pass a local CLIP folder (`hf-easyanimate make-tiny-clip DIR` writes a tiny one), a Hub id you "
                "have cached or network for, or `none` to train without the CLIP metrics."
            ) from error
        return cls(model, processor, device)

    @torch.no_grad()
    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """(F, H, W, 3) uint8 -> (F, D) unit vectors."""
        chunks = []
        for start in range(0, len(frames), self.batch_size):
            images = [np.asarray(frame) for frame in frames[start:start + self.batch_size]]
            inputs = self.processor(images=images, return_tensors="pt").to(self.device)
            chunks.append(_unit(_features(self.model.get_image_features(**inputs))))
        return torch.cat(chunks).cpu().numpy()

    @torch.no_grad()
    def embed_texts(self, prompts: Sequence[str]) -> np.ndarray:
        """Prompts -> (P, D) unit vectors (truncated to the model's context length)."""
        inputs = self.processor(text=list(prompts), return_tensors="pt", padding=True, truncation=True).to(self.device)
        return _unit(_features(self.model.get_text_features(**inputs))).cpu().numpy()


def _features(output) -> torch.Tensor:
    """transformers >= 5 may return a model output object instead of a tensor from ``get_*_features``."""
    if torch.is_tensor(output):
        return output
    for name in ("image_embeds", "text_embeds", "pooler_output"):
        value = getattr(output, name, None)
        if value is not None:
            return value
    raise TypeError(f"unexpected CLIP feature output {type(output).__name__}")


def _unit(features: torch.Tensor) -> torch.Tensor:
    features = features.float()
    return features / features.norm(dim=-1, keepdim=True)


def clip_metrics(embedder: ClipEmbedder, videos: Sequence[np.ndarray], prompts: Sequence[str]) -> dict[str, float]:
    """``text_alignment`` and ``temporal_consistency`` of sampled videos, through the packaged evaluate modules."""
    from . import load_metric

    frames = [embedder.embed_frames(video).tolist() for video in videos]
    texts = embedder.embed_texts(prompts).tolist()
    alignment = load_metric("text_alignment").compute(frame_embeds=frames, text_embeds=texts)
    consistency = load_metric("temporal_consistency").compute(frame_embeds=frames)
    return {"text_alignment": alignment["text_alignment"], "temporal_consistency": consistency["temporal_consistency"]}
