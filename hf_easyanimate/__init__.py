"""LoRA training for EasyAnimate video diffusion transformers, the Hugging Face way."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public names, imported on first use so `import hf_easyanimate` stays fast (no torch/diffusers import).
_LAZY_EXPORTS = {
    "DDPMObjective": "hf_easyanimate.objectives",
    "DiscreteTimestepSampler": "hf_easyanimate.objectives",
    "FlowMatchingObjective": "hf_easyanimate.objectives",
    "LearnedSigmaObjective": "hf_easyanimate.objectives",
    "NoiseOptions": "hf_easyanimate.objectives",
    "Objective": "hf_easyanimate.objectives",
    "InpaintConditioner": "hf_easyanimate.inpaint",
    "InpaintMaskGenerator": "hf_easyanimate.data.masks",
    "DualPromptEncoder": "hf_easyanimate.models.text",
    "PromptEncoder": "hf_easyanimate.models.text",
    "ModelLoadError": "hf_easyanimate.models.loading",
    "UnsupportedModelError": "hf_easyanimate.models.loading",
    "load_components": "hf_easyanimate.models.loading",
}

__all__ = ["__version__", *sorted(_LAZY_EXPORTS)]


def __getattr__(name: str):
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hf_easyanimate' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
