"""LoRA training for EasyAnimate video diffusion transformers, the Hugging Face way."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public names, imported on first use so that `import hf_easyanimate` stays fast (no torch/transformers import).
_LAZY_EXPORTS = {
    "ValidationCallback": "callbacks",
    "ValidationSampler": "callbacks",
    "ValidationSettings": "callbacks",
    "NonFiniteLossGuard": "guards",
    "NonFiniteLossError": "guards",
    "CheckpointSaveError": "guards",
    "ReportPaths": "report",
    "render_report": ("report", "render"),
}

__all__ = ["__version__", *_LAZY_EXPORTS]


def __getattr__(name: str):
    target = _LAZY_EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'hf_easyanimate' has no attribute {name!r}")
    module_name, attribute = target if isinstance(target, tuple) else (target, name)
    return getattr(importlib.import_module(f".{module_name}", __name__), attribute)
