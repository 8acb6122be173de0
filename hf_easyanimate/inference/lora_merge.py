"""Use a trained LoRA with diffusers' EasyAnimate pipelines, which have no LoRA loader of their own.

``load_lora_into_pipeline(pipe, path, scale)`` merges the LoRA into ``pipe.transformer``'s weights with the
EasyAnimate rule ``W += scale * (alpha / rank) * up @ down`` (what the original ``merge_lora`` and its ComfyUI
nodes do), so inference runs at the base model's speed. ``unmerge_lora`` subtracts it again; in bfloat16 the
round trip is exact only up to rounding, so reload the pipeline for bit-exact base weights.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from ..models.lora.files import read_lora
from ..models.lora.format import LoraFormatError, LoraWeights

logger = logging.getLogger(__name__)


def _transformer_of(target: Any) -> torch.nn.Module:
    transformer = getattr(target, "transformer", target)
    if not isinstance(transformer, torch.nn.Module):
        raise TypeError(f"expected an EasyAnimate pipeline or transformer, got {type(target).__name__}")
    if hasattr(transformer, "get_base_model"):  # a peft-wrapped transformer: merge into the base layers
        transformer = transformer.get_base_model()
    return transformer


def _as_weights(lora: str | os.PathLike | LoraWeights) -> LoraWeights:
    return lora if isinstance(lora, LoraWeights) else read_lora(os.fspath(lora))


def _plan(transformer: torch.nn.Module, weights: LoraWeights) -> list[tuple[torch.nn.Linear, Any]]:
    """Match every LoRA layer to a Linear of ``transformer`` and check shapes, before any weight changes."""
    modules = dict(transformer.named_modules())
    plan, problems = [], []
    for path, module in sorted(weights.modules.items()):
        layer = modules.get(path)
        layer = layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer
        if not isinstance(layer, torch.nn.Linear):
            problems.append(f"{path}: {'not in the model' if layer is None else type(layer).__name__ + ', not Linear'}")
            continue
        expected = (layer.out_features, layer.in_features)
        if (module.up.shape[0], module.down.shape[1]) != expected:
            problems.append(f"{path}: LoRA is {module.up.shape[0]}x{module.down.shape[1]}, layer is "
                            f"{expected[0]}x{expected[1]}")
            continue
        plan.append((layer, module))
    if problems:
        raise LoraFormatError(
            f"{weights.source or 'LoRA'} does not fit this transformer ({len(problems)} layer(s)); was it trained "
            f"on another model? " + "; ".join(problems[:5])
        )
    return plan


@torch.no_grad()
def _apply(target: Any, lora: str | os.PathLike | LoraWeights, multiplier: float) -> LoraWeights:
    weights = _as_weights(lora)
    for layer, module in _plan(_transformer_of(target), weights):
        weight = layer.weight
        update = module.delta(multiplier).to(weight.device)
        weight.copy_((weight.float() + update).to(weight.dtype))
    return weights


def merge_lora(target: Any, lora: str | os.PathLike | LoraWeights, scale: float = 1.0) -> LoraWeights:
    """Add the LoRA to the transformer's weights (pipeline or transformer); returns the weights merged.

    All layers are checked against the model first: a LoRA that does not fit changes nothing.
    """
    return _apply(target, lora, scale)


def unmerge_lora(target: Any, lora: str | os.PathLike | LoraWeights, scale: float = 1.0) -> LoraWeights:
    """Subtract a LoRA merged with :func:`merge_lora` at the same ``scale``."""
    return _apply(target, lora, -scale)


def load_lora_into_pipeline(pipe: Any, path: str | os.PathLike | LoraWeights, scale: float = 1.0) -> LoraWeights:
    """Load a LoRA (peft adapter or EasyAnimate file; a file, or a training output / checkpoint folder) into
    ``EasyAnimatePipeline`` / ``EasyAnimateInpaintPipeline`` by merging it into ``pipe.transformer``.

    Returns the merged :class:`LoraWeights`; ``unmerge_lora(pipe, weights, scale)`` takes it out again.
    """
    if getattr(pipe, "transformer", None) is None:
        raise TypeError(f"{type(pipe).__name__} has no transformer to load a LoRA into")
    weights = merge_lora(pipe, path, scale)
    logger.info("Merged LoRA %s at scale %g: %s", weights.source, scale, weights.summary())
    return weights
