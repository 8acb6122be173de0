"""LoRA training for EasyAnimate video diffusion transformers, the Hugging Face way.

Public names are imported on first use, so ``import hf_easyanimate`` stays fast (no torch/diffusers import).
"""

from __future__ import annotations

import importlib
from typing import Any

from .utils import deprecation

__version__ = "0.2.0"
deprecation.install()  # the 0.1 import paths (hf_easyanimate.args, .parser, ...) forward here for one release

# name -> module, or (module, attribute) where the public name differs.
_EXPORTS: dict[str, str | tuple[str, str]] = {
    # training
    "EasyAnimateTrainer": "hf_easyanimate.trainers",
    "BaseTrainer": "hf_easyanimate.trainers",
    "EasyAnimateTrainingArguments": "hf_easyanimate.trainers",
    "BaseTrainingArguments": "hf_easyanimate.config",
    "ModelArguments": "hf_easyanimate.config",
    "DataArguments": "hf_easyanimate.config",
    "run": "hf_easyanimate.assembly",
    # objectives and conditioning
    "DDPMObjective": "hf_easyanimate.objectives",
    "DiscreteTimestepSampler": "hf_easyanimate.objectives",
    "FlowMatchingObjective": "hf_easyanimate.objectives",
    "LearnedSigmaObjective": "hf_easyanimate.objectives",
    "NoiseOptions": "hf_easyanimate.objectives",
    "Objective": "hf_easyanimate.objectives",
    "InpaintConditioner": "hf_easyanimate.models.inpaint",
    "EncodedMaskInpaintConditioner": "hf_easyanimate.models.inpaint",
    "InpaintMaskGenerator": "hf_easyanimate.data.masks",
    # data
    "EasyAnimateDataset": "hf_easyanimate.data",
    "EasyAnimateCollator": "hf_easyanimate.data",
    "BucketBatchSampler": "hf_easyanimate.data",
    "BatchPlan": "hf_easyanimate.data",
    "PlanConfig": "hf_easyanimate.data",
    "FrameGrid": "hf_easyanimate.data.buckets",
    "build_train_data": "hf_easyanimate.data",
    "load_metadata": "hf_easyanimate.data",
    "MetadataError": "hf_easyanimate.data",
    "DataValidationError": "hf_easyanimate.data",
    "DataProblemsCallback": "hf_easyanimate.data",
    # latent cache
    "LatentCache": "hf_easyanimate.cache",
    "CachedDataset": "hf_easyanimate.cache",
    "CachedCollator": "hf_easyanimate.cache",
    "CachedInpaintMasks": "hf_easyanimate.cache",
    "CacheMissError": "hf_easyanimate.cache",
    "precompute_latents": ("hf_easyanimate.cache.precompute", "precompute"),
    # models
    "DualPromptEncoder": "hf_easyanimate.models.text",
    "PromptEncoder": "hf_easyanimate.models.text",
    "ModelLoadError": "hf_easyanimate.models.loading",
    "UnsupportedModelError": "hf_easyanimate.models.loading",
    "load_components": "hf_easyanimate.models.loading",
    "Checkpoint": "hf_easyanimate.models.checkpoint",
    "read_checkpoint": "hf_easyanimate.models.checkpoint",
    "ModelFamily": "hf_easyanimate.models.family",
    "families": "hf_easyanimate.models.family",
    "PixelBatch": "hf_easyanimate.data.batch",
    "LatentBatch": "hf_easyanimate.cache.batch",
    "transformer_from_config": "hf_easyanimate.models.loading",
    "T5PromptEncoder": "hf_easyanimate.models.text",
    "ReferenceImageEncoder": "hf_easyanimate.models.image_encoder",
    # the V4 / V3 / V2 ports
    "HunyuanTransformer3DModel": "hf_easyanimate.models.legacy",
    "Transformer3DModel": "hf_easyanimate.models.legacy",
    "LegacyMagvitVAE": "hf_easyanimate.models.legacy",
    "LegacyLoadError": "hf_easyanimate.models.legacy",
    "published_configs": "hf_easyanimate.models.published",
    # memory
    "store_weights": "hf_easyanimate.memory",
    "BlockSwapper": "hf_easyanimate.memory",
    "swap_blocks": "hf_easyanimate.memory",
    "activation_offload": "hf_easyanimate.memory",
    "plan_memory": ("hf_easyanimate.memory", "plan"),
    "RunShape": "hf_easyanimate.memory",
    "MemoryPlan": "hf_easyanimate.memory",
    "LiveBytes": "hf_easyanimate.memory.accounting",
    # using a trained LoRA
    "load_lora_into_pipeline": "hf_easyanimate.inference",
    "merge_lora": "hf_easyanimate.inference",
    "unmerge_lora": "hf_easyanimate.inference",
    "first_frame_conditioning": "hf_easyanimate.inference",
    "read_lora": "hf_easyanimate.models.lora.files",
    "export_lora": "hf_easyanimate.models.lora.files",
    "save_easyanimate_lora": "hf_easyanimate.models.lora.files",
    "save_peft_adapter": "hf_easyanimate.models.lora.files",
    "LoraWeights": "hf_easyanimate.models.lora.format",
    "LoraFormatError": "hf_easyanimate.models.lora.format",
    # scale-out, resume, the original dialect
    "ZERO2_CONFIG": "hf_easyanimate.training.distributed",
    "describe_engine": "hf_easyanimate.training.distributed",
    "SampleKey": "hf_easyanimate.training.reproducibility",
    "resolve_resume": "hf_easyanimate.training.resume",
    "CheckpointNotFound": "hf_easyanimate.training.resume",
    "original_clip_norm": "hf_easyanimate.training.clipping",
    "read_model_config": "hf_easyanimate.models.loading",
    "ModelConfigMismatch": "hf_easyanimate.models.original_config",
    # monitoring and guards
    "ValidationCallback": "hf_easyanimate.training.validation",
    "ValidationSampler": "hf_easyanimate.training.validation",
    "ValidationSettings": "hf_easyanimate.training.validation",
    "NonFiniteLossGuard": "hf_easyanimate.training.guards",
    "NonFiniteLossError": "hf_easyanimate.training.guards",
    "CheckpointSaveError": "hf_easyanimate.training.guards",
    "ReportPaths": "hf_easyanimate.training.report",
    "render_report": ("hf_easyanimate.training.report", "render"),
    "GracefulStop": "hf_easyanimate.training.signals",
    "TrainingInterrupted": "hf_easyanimate.training.signals",
    # which checkpoint is best
    "ClipEmbedder": "hf_easyanimate.metrics.clip",
    "clip_metrics": "hf_easyanimate.metrics.clip",
    "load_metric": "hf_easyanimate.metrics",
    "compare_checkpoints": ("hf_easyanimate.inference.compare", "compare"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name] if isinstance(_EXPORTS[name], tuple) else (_EXPORTS[name], name)
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hf_easyanimate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
