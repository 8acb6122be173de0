"""Validation sampling of a run: the callback that samples ``--validation_prompts`` with the live LoRA, and the CLIP
model that scores the samples."""

from __future__ import annotations

import logging

from transformers.integrations import TensorBoardCallback

from ..config import DataArguments
from ..models.components import EasyAnimateComponents
from ..training.runtime import weight_dtype
from ..training.validation import ValidationCallback, ValidationSampler, ValidationSettings

logger = logging.getLogger("hf_easyanimate")


def build_validation(args, data_args: DataArguments, components: EasyAnimateComponents,
                     trainer) -> ValidationCallback | None:
    """The sampling callback when --validation_prompts is set; reuses Trainer's TensorBoard writer."""
    if not args.validation_prompts:
        return None
    if not components.family.samples_in_training:
        logger.warning(
            "--validation_prompts: sampling uses diffusers' EasyAnimate pipelines, which take one (Qwen2-VL) text "
            "encoder; this %s checkpoint has two, so validation sampling is off for this run.",
            components.family.title,
        )
        return None
    sampler = ValidationSampler(
        components.vae,
        components.text_encoder,
        components.tokenizer,
        components.scheduler,
        ValidationSettings.from_args(args, data_args),
        weight_dtype=weight_dtype(args),
    )
    tensorboard = next((c for c in trainer.callback_handler.callbacks if isinstance(c, TensorBoardCallback)), None)
    return ValidationCallback(sampler, args.validation_steps, args.validation_epochs, tensorboard=tensorboard,
                              embedder=load_validation_clip(args))


def load_validation_clip(args):
    """The CLIP model of the validation metrics, loaded before training (main process: it alone samples)."""
    if not args.validation_prompts or str(args.validation_clip_model).lower() == "none" or not args.should_save:
        return None
    from ..metrics.clip import ClipEmbedder

    return ClipEmbedder.load(args.validation_clip_model)
