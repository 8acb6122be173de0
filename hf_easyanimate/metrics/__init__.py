"""Validation metrics as ``evaluate`` modules shipped in the package, and the CLIP embedding they score.

``text_alignment`` and ``temporal_consistency`` score sampled validation clips from CLIP embeddings;
``eval_loss_bands`` splits the deterministic eval loss by noise level. Each module is a file of this package,
loaded by path with ``evaluate.load`` (no Hub, works with ``HF_HUB_OFFLINE=1``): :func:`load_metric`.
"""

from __future__ import annotations

import os
from functools import cache

METRICS = ("text_alignment", "temporal_consistency", "eval_loss_bands")
CLIP_METRICS = ("text_alignment", "temporal_consistency")
BAND_KEYS = ("eval_loss_low_noise", "eval_loss_mid_noise", "eval_loss_high_noise")


def module_path(name: str) -> str:
    """The path of a metric's ``evaluate`` module file inside the installed package."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; one of {', '.join(METRICS)}")
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")


@cache
def load_metric(name: str):
    """``evaluate.load`` of a packaged metric (loaded once per process)."""
    import evaluate

    return evaluate.load(module_path(name))
