"""``python -m hf_easyanimate.train RECIPE.yaml [--flag value ...]``: the torchrun/accelerate target."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import torch
import transformers
from transformers.integrations import TensorBoardCallback
from transformers.trainer_utils import get_last_checkpoint

from .args import DataArguments, EasyAnimateTrainingArguments, ModelArguments
from .callbacks import ValidationCallback, ValidationSampler, ValidationSettings
from .data import BucketBatchSampler, EasyAnimateCollator, EasyAnimateDataset, FrameSampling, bucket_key, load_metadata
from .guards import CheckpointSaveError, NonFiniteLossError
from .models.encoders import FrozenEncoders
from .models.loading import EasyAnimateComponents, load_components
from .models.lora import add_lora, build_lora_config
from .models.text import PromptEncoder
from .objectives import FlowMatchingObjective, Objective
from .parser import RecipeError, parse_args
from .trainer import EasyAnimateTrainer

logger = logging.getLogger("hf_easyanimate")


def weight_dtype(args: EasyAnimateTrainingArguments) -> torch.dtype:
    """dtype of the frozen weights: the mixed-precision dtype, since they never receive gradients."""
    if args.bf16:
        return torch.bfloat16
    if args.fp16:
        return torch.float16
    return torch.float32


def build_objective(args: EasyAnimateTrainingArguments, components: EasyAnimateComponents) -> Objective:
    if args.loss_type == "flow":
        return FlowMatchingObjective(
            components.scheduler,
            weighting_scheme=args.weighting_scheme,
            logit_mean=args.logit_mean,
            logit_std=args.logit_std,
            mode_scale=args.mode_scale,
        )
    raise RecipeError(f"--loss_type={args.loss_type!r} is not implemented yet; use 'flow'")


def build_training_data(
    data_args: DataArguments, args: EasyAnimateTrainingArguments, temporal_compression: int
) -> tuple[EasyAnimateDataset, BucketBatchSampler, EasyAnimateCollator]:
    if not data_args.train_data_meta:
        raise RecipeError("--train_data_meta is required: the metadata file listing your clips")
    metadata = load_metadata(data_args.train_data_meta, data_args.train_data_dir, data_args.max_train_samples)
    dataset = EasyAnimateDataset(
        metadata,
        FrameSampling(
            n_frames=data_args.video_sample_n_frames,
            stride=data_args.video_sample_stride,
            drop_start=data_args.video_length_drop_start,
            drop_end=data_args.video_length_drop_end,
            text_drop_ratio=data_args.text_drop_ratio,
        ),
        video_repeat=data_args.video_repeat,
    )
    keys = [
        bucket_key(dataset.kind(index), height, width, data_args.enable_bucket)
        for index, (height, width) in enumerate(dataset.sizes)
    ]
    sampler = BucketBatchSampler(keys, batch_size=args.per_device_train_batch_size, seed=args.seed)
    collator = EasyAnimateCollator(
        image_sample_size=data_args.image_sample_size,
        video_sample_size=data_args.video_sample_size,
        enable_bucket=data_args.enable_bucket,
        temporal_compression=temporal_compression,
    )
    return dataset, sampler, collator


def build_eval_data(
    data_args: DataArguments, args: EasyAnimateTrainingArguments, temporal_compression: int
) -> tuple[EasyAnimateDataset, BucketBatchSampler] | tuple[None, None]:
    """Held-out clips for the deterministic validation loss: no caption drop, no repeats, every clip kept.

    Frame windows are still drawn at random, but ``EasyAnimateTrainer.evaluate`` seeds every draw, so each
    evaluation sees the same windows.
    """
    if not data_args.eval_data_meta:
        return None, None
    metadata = load_metadata(data_args.eval_data_meta, data_args.train_data_dir, data_args.max_eval_samples)
    dataset = EasyAnimateDataset(
        metadata,
        FrameSampling(
            n_frames=data_args.video_sample_n_frames,
            stride=data_args.video_sample_stride,
            drop_start=data_args.video_length_drop_start,
            drop_end=data_args.video_length_drop_end,
            text_drop_ratio=0.0,
        ),
        video_repeat=0,
    )
    keys = [
        bucket_key(dataset.kind(index), height, width, data_args.enable_bucket)
        for index, (height, width) in enumerate(dataset.sizes)
    ]
    sampler = BucketBatchSampler(keys, batch_size=args.per_device_eval_batch_size, seed=args.seed, drop_last=False)
    return dataset, sampler


def build_validation(
    args: EasyAnimateTrainingArguments, data_args: DataArguments, components: EasyAnimateComponents, trainer
) -> ValidationCallback | None:
    """The sampling callback when --validation_prompts is set; reuses Trainer's TensorBoard writer."""
    if not args.validation_prompts:
        return None
    if components.text_encoder_2 is not None:
        logger.warning(
            "--validation_prompts: sampling uses diffusers' EasyAnimate pipelines, which take one (Qwen2-VL) text "
            "encoder; this %s checkpoint has two, so validation sampling is off for this run.", components.version
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
    return ValidationCallback(sampler, args.validation_steps, args.validation_epochs, tensorboard=tensorboard)


def resolve_resume(args: EasyAnimateTrainingArguments) -> str | bool | None:
    """``--resume_from_checkpoint latest`` (the original's spelling) picks the newest checkpoint-N."""
    value = args.resume_from_checkpoint
    if value != "latest":
        return value
    last = get_last_checkpoint(args.output_dir) if os.path.isdir(args.output_dir) else None
    if last is None:
        logger.warning("--resume_from_checkpoint latest: no checkpoint in %s, starting fresh", args.output_dir)
    return last


def setup_logging(args: EasyAnimateTrainingArguments) -> None:
    level = args.get_process_log_level()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logger.setLevel(level)
    transformers.utils.logging.set_verbosity(level)


def run(model_args: ModelArguments, data_args: DataArguments, args: EasyAnimateTrainingArguments) -> EasyAnimateTrainer:
    """Build everything from parsed arguments, train, save the LoRA; returns the trainer."""
    setup_logging(args)
    if not model_args.pretrained_model_name_or_path:
        raise RecipeError("--pretrained_model_name_or_path is required")
    dtype = weight_dtype(args)
    components = load_components(
        model_args.pretrained_model_name_or_path,
        revision=model_args.revision,
        variant=model_args.variant,
        cache_dir=model_args.cache_dir,
        weight_dtype=dtype,
        transformer_path=model_args.transformer_path,
        vae_path=model_args.vae_path,
    )
    dataset, sampler, collator = build_training_data(
        data_args, args, temporal_compression=components.vae.temporal_compression_ratio
    )
    lora_config = build_lora_config(
        model_args.rank,
        model_args.network_alpha,
        dropout=model_args.lora_dropout,
        target_modules=model_args.lora_target_modules,
        init_lora_weights=model_args.init_lora_weights,
    )
    transformers.set_seed(args.seed)  # peft draws lora_A from the global RNG: seed first so --seed reproduces runs
    model = add_lora(components.transformer, lora_config, base_model=model_args.pretrained_model_name_or_path)
    encoders = FrozenEncoders(
        components.vae,
        PromptEncoder(components.tokenizer, components.text_encoder, model_args.tokenizer_max_length),
        device=args.device,
        low_vram=args.low_vram,
        vae_mini_batch=args.vae_mini_batch,
    )
    eval_dataset, eval_sampler = build_eval_data(
        data_args, args, temporal_compression=components.vae.temporal_compression_ratio
    )
    trainer = EasyAnimateTrainer(
        model=model,
        args=args,
        encoders=encoders,
        objective=build_objective(args, components),
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        train_batch_sampler=sampler,
        eval_batch_sampler=eval_sampler,
    )
    validation = build_validation(args, data_args, components, trainer)
    if validation is not None:
        trainer.add_callback(validation)
    trainer.train(resume_from_checkpoint=resolve_resume(args))
    trainer.save_model(args.output_dir)
    trainer.save_state()  # trainer_state.json beside the adapter: the loss history `hf-easyanimate report` plots
    return trainer


def main(argv: Sequence[str] | None = None) -> int:
    try:
        model_args, data_args, training_args = parse_args(argv)
    except ValueError as error:  # RecipeError, ArgumentValidationError, LegacyFlagConflict
        print(f"hf-easyanimate: error: {error}", file=sys.stderr)
        return 2
    try:
        run(model_args, data_args, training_args)
    except (NonFiniteLossError, CheckpointSaveError) as error:
        print(f"hf-easyanimate: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
