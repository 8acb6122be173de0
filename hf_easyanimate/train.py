"""``python -m hf_easyanimate.train RECIPE.yaml [--flag value ...]``: the torchrun/accelerate target."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import torch
import transformers
from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback
from transformers.trainer_utils import get_last_checkpoint

from .utils import quiet
from .args import DataArguments, EasyAnimateTrainingArguments, ModelArguments
from .cache import CachedInpaintMasks, CacheMissError, check_complete
from .cache.setup import build_cached_data, cache_spec
from .callbacks import ValidationCallback, ValidationSampler, ValidationSettings
from .data import (
    BucketBatchSampler,
    DataValidationError,
    EasyAnimateCollator,
    EasyAnimateDataset,
    EmptyEpochError,
    MetadataError,
    build_eval_set,
    build_train_data,
)
from .data.buckets import FrameGrid
from .data.masks import InpaintMaskGenerator
from .data.pipeline import plan_summary
from .inpaint import EncodedMaskInpaintConditioner, InpaintConditioner
from .legacy import ModelConfigMismatch, report_model_config
from .memory.block_swap import swap_blocks
from .metrics.clip import ClipModelError
from .models.encoders import FrozenEncoders
from .models.loading import (
    EasyAnimateComponents,
    ModelLoadError,
    check_learned_sigma_support,
    check_training_setup,
    load_components,
)
from .models.lora import LoraTargetError, add_lora, build_lora_config, require_linear_targets
from .models.text import build_prompt_encoder
from .models.vae import frame_grid
from .objectives import (
    DDPMObjective,
    DiscreteTimestepSampler,
    FlowMatchingObjective,
    LearnedSigmaObjective,
    NoiseOptions,
    Objective,
)
from .parser import RecipeError, early_exit, parse_args
from .trainer import EasyAnimateTrainer
from .training.distributed import EngineReport
from .training.guards import CheckpointSaveError, NonFiniteLossError
from .training.outputs import OutputDirError, clear_previous_run
from .training.preflight import PreflightError, preflight
from .training.resume import CheckpointNotFound, NothingToTrain
from .training.runtime import setup_logging, weight_dtype
from .training.signals import GracefulStop, TrainingInterrupted

logger = logging.getLogger("hf_easyanimate")


def apply_storage_dtypes(components: EasyAnimateComponents, args: EasyAnimateTrainingArguments) -> None:
    """``--base_weight_dtype`` / ``--text_encoder_dtype``: frozen weights stored narrow, computed in the run's dtype."""
    from .memory.storage import TEXT_ENCODER_KEPT, storage_dtype, store_weights

    compute = weight_dtype(args)
    base = storage_dtype(args.base_weight_dtype)
    if base is not None:
        store_weights(components.transformer, base, compute)
    text = storage_dtype(args.text_encoder_dtype)
    if text is not None:
        for encoder in (components.text_encoder, components.text_encoder_2):
            if encoder is not None and not any(p.is_meta for p in encoder.parameters()):
                store_weights(encoder, text, compute, keep=TEXT_ENCODER_KEPT)


def build_objective(args: EasyAnimateTrainingArguments, components: EasyAnimateComponents) -> Objective:
    """The ``--loss_type`` objective on the checkpoint's scheduler config (as the original builds it).

    flow and ddpm construct their diffusers scheduler from the checkpoint's ``scheduler`` config whatever
    class it names (V5 ships a DDIM config, V5.1 a flow-matching one); ``--uniform_sampling`` splits the
    timestep range by this process's rank.
    """
    from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

    noise = NoiseOptions(
        offset=args.noise_offset,
        input_perturbation=args.input_perturbation,
        share_in_frames=args.noise_share_in_frames,
        share_in_frames_ratio=args.noise_share_in_frames_ratio,
    )
    motion = args.motion_sub_loss_ratio if args.motion_sub_loss and args.loss_type != "sigma" else None
    sampler = DiscreteTimestepSampler(
        num_steps=args.train_sampling_steps,
        uniform_sampling=args.uniform_sampling,
        rank=args.process_index,
        world_size=args.world_size,
    )
    config = components.scheduler.config
    if args.loss_type == "flow":  # a scheduler that disagrees was warned about by the preflight
        return FlowMatchingObjective(
            FlowMatchEulerDiscreteScheduler.from_config(config),
            weighting_scheme=args.weighting_scheme,
            logit_mean=args.logit_mean,
            logit_std=args.logit_std,
            mode_scale=args.mode_scale,
            noise_options=noise,
            motion_sub_loss_ratio=motion,
        )
    if args.loss_type == "ddpm":
        return DDPMObjective(
            DDPMScheduler.from_config(config),
            sampler=sampler,
            prediction_type=args.prediction_type,
            noise_options=noise,
            motion_sub_loss_ratio=motion,
        )
    if args.loss_type == "sigma":
        check_learned_sigma_support(components.transformer, components.vae.config.latent_channels)
        return LearnedSigmaObjective(sampler=sampler, snr_loss=args.snr_loss, noise_options=noise)
    raise RecipeError(f"--loss_type={args.loss_type!r}: must be one of flow, ddpm, sigma")


def build_inpaint_conditioner(
    components: EasyAnimateComponents,
) -> InpaintConditioner | EncodedMaskInpaintConditioner | None:
    """For InP checkpoints: how mask/masked-video latents are built, read from the checkpoint's configs.

    ``resize_inpaint_mask_directly`` (V5) resizes the mask onto the latent grid; without it (V2-V4) the mask goes
    through the VAE like the video, as each release's original trainer does.
    """
    if not components.is_inpaint:
        return None
    config = components.transformer.config
    common = {"scaling_factor": float(components.vae.config.scaling_factor),
              "add_noise_to_reference": bool(config.get("add_noise_in_inpaint_model", False))}
    if not config.get("resize_inpaint_mask_directly", True):
        return EncodedMaskInpaintConditioner(**common)
    return InpaintConditioner(
        **common,
        first_frame_separately=bool(components.vae.config.get("cache_mag_vae", True)),
    )


def build_training_data(
    data_args: DataArguments, args: EasyAnimateTrainingArguments, grid: FrameGrid | int
) -> tuple[EasyAnimateDataset, BucketBatchSampler, EasyAnimateCollator]:
    """Dataset, this rank's batch sampler and the collator (docs/data.md); bad data fails here with --strict_data."""
    if not data_args.train_data_meta:
        raise RecipeError("--train_data_meta is required: the metadata file listing your clips")
    data = build_train_data(
        data_args,
        batch_size=args.per_device_train_batch_size,
        seed=args.seed,
        num_replicas=args.world_size,
        rank=args.process_index,
        frame_grid=grid,
    )
    return data.dataset, data.sampler, data.collator


def build_cached_training_data(
    model_args: ModelArguments,
    data_args: DataArguments,
    args: EasyAnimateTrainingArguments,
    components: EasyAnimateComponents,
    prompt_encoder,
    inpaint: InpaintConditioner | None,
):
    """Dataset, sampler and collator over ``--latent_cache_dir``; fails before step 1 if entries are missing."""
    use_inpaint = inpaint is not None and model_args.train_mode == "inpaint"
    spec = cache_spec(model_args, data_args, components.vae, prompt_encoder, use_inpaint, components)
    dataset, sampler, collator, config = build_cached_data(
        data_args, spec, args.per_device_train_batch_size, args.seed, args.world_size, args.process_index,
        frame_grid(components.vae),
    )
    check_complete(dataset, config)
    if use_inpaint:
        collator.mask_generator = CachedInpaintMasks()
        collator.encoded_masks = spec.encoded_mask
        if inpaint.add_noise_to_reference:
            logger.warning(
                "--latent_cache_dir: the checkpoint adds noise to the reference video before the VAE "
                "(add_noise_in_inpaint_model); cached masked-video latents are clean, so this run trains without "
                "that noise (docs/cache.md)."
            )
            inpaint.add_noise_to_reference = False
    return dataset, sampler, collator


def optimizer_override(args: EasyAnimateTrainingArguments) -> tuple[type, dict] | None:
    """--use_came: the original's CAME settings (betas 0.9/0.999/0.9999, eps 1e-30/1e-16); else Trainer's --optim."""
    if not args.use_came:
        return None
    from came_pytorch import CAME

    return CAME, {"lr": args.learning_rate, "betas": (0.9, 0.999, 0.9999), "eps": (1e-30, 1e-16)}


def report_bucket_plan(sampler: BucketBatchSampler, args: EasyAnimateTrainingArguments) -> None:
    """One line of what an epoch trains, and a warning when some samples can never be trained."""
    summary = plan_summary(sampler.index.bucket_counts(), sampler.batch_size, args.world_size, sampler.remainder)
    logger.info(summary.line())
    if summary.warning():
        logger.warning(summary.warning())


def check_prompt_lengths(components: EasyAnimateComponents, prompt_encoder, tokenizer_max_length: int) -> None:
    """V4 pads its text embeddings with learned tokens of a fixed length (``text_len`` / ``text_len_t5``): the
    prompt encoders must produce exactly those lengths, or the first step would fail on a shape."""
    config = components.transformer.config
    if "text_len" not in config or components.tokenizer_2 is None:
        return
    lengths = (prompt_encoder.effective_max_length(components.tokenizer, tokenizer_max_length),
               prompt_encoder.effective_max_length(components.tokenizer_2, tokenizer_max_length))
    expected = (int(config["text_len"]), int(config["text_len_t5"]))
    if lengths != expected:
        raise RecipeError(
            f"--tokenizer_max_length {tokenizer_max_length}: this EasyAnimate {components.version.upper()} transformer "
            f"takes exactly {expected[0]} BERT and {expected[1]} T5 tokens (text_len / text_len_t5 of its config), "
            f"the tokenizers would give {lengths[0]} and {lengths[1]}; use --tokenizer_max_length {max(expected)}."
        )


def build_lora_model(transformer: torch.nn.Module, model_args: ModelArguments, args: EasyAnimateTrainingArguments):
    """The peft-wrapped transformer. Seeded first, so the LoRA's initial weights are a function of --seed
    (Trainer seeds only later, when it is constructed)."""
    transformers.set_seed(args.seed)
    config = build_lora_config(
        transformer,
        model_args.rank,
        model_args.network_alpha,
        dropout=model_args.lora_dropout,
        target_modules=model_args.lora_target_modules,
        init_lora_weights=model_args.init_lora_weights,
    )
    model = add_lora(transformer, config, base_model=model_args.pretrained_model_name_or_path)
    if args.save_lora_format in ("easyanimate", "both"):
        require_linear_targets(model)  # fail before the first step, not at the first save
    return model


def build_eval_data(
    data_args: DataArguments, args: EasyAnimateTrainingArguments, grid: FrameGrid | int
) -> tuple[EasyAnimateDataset, BucketBatchSampler] | tuple[None, None]:
    """Held-out clips for the deterministic validation loss: no caption drop, no repeats, every clip kept.

    Frame windows are drawn per batch from (seed, batch), so each evaluation sees the same windows.
    """
    if not data_args.eval_data_meta:
        return None, None
    data = build_eval_set(
        data_args, args.per_device_eval_batch_size, seed=args.seed, frame_grid=grid
    )
    return data.dataset, data.sampler


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
    return ValidationCallback(sampler, args.validation_steps, args.validation_epochs, tensorboard=tensorboard,
                              embedder=load_validation_clip(args))


def load_validation_clip(args: EasyAnimateTrainingArguments):
    """The CLIP model of the validation metrics, loaded before training (main process: it alone samples)."""
    if not args.validation_prompts or str(args.validation_clip_model).lower() == "none" or not args.should_save:
        return None
    from .metrics.clip import ClipEmbedder

    return ClipEmbedder.load(args.validation_clip_model)


def needs_encoder_weights(data_args: DataArguments, args: EasyAnimateTrainingArguments) -> bool:
    """Whether the run encodes anything itself: not when it trains from the latent cache with no eval set and
    no validation samples (then the VAE and text encoder are built from their configs only)."""
    return not data_args.latent_cache_dir or bool(data_args.eval_data_meta) or bool(args.validation_prompts)


def run(
    model_args: ModelArguments,
    data_args: DataArguments,
    args: EasyAnimateTrainingArguments,
    callbacks: Sequence[TrainerCallback] = (),
) -> EasyAnimateTrainer:
    """Build everything from parsed arguments, train, save the LoRA; returns the trainer."""
    setup_logging(args)
    for note in getattr(args, "launch_notes", ()):
        logger.info(note)
    resume = preflight(model_args, data_args, args)  # flags, data paths, output_dir, resume, model path, loss type
    dtype = weight_dtype(args)
    check_training_setup(
        model_args.pretrained_model_name_or_path,
        loss_type=args.loss_type,
        train_mode=model_args.train_mode,
        config_path=model_args.config_path,
        revision=model_args.revision,
        cache_dir=model_args.cache_dir,
    )
    report_model_config(
        model_args.config_path, model_args.pretrained_model_name_or_path, model_args.revision, model_args.cache_dir
    )
    components = load_components(
        model_args.pretrained_model_name_or_path,
        revision=model_args.revision,
        variant=model_args.variant,
        cache_dir=model_args.cache_dir,
        weight_dtype=dtype,
        transformer_path=model_args.transformer_path,
        vae_path=model_args.vae_path,
        config_path=model_args.config_path,
        encoder_weights=needs_encoder_weights(data_args, args),
        train_mode=model_args.train_mode,
    )
    apply_storage_dtypes(components, args)
    objective = build_objective(args, components)
    inpaint = build_inpaint_conditioner(components)
    prompt_encoder = build_prompt_encoder(components, model_args.tokenizer_max_length)
    check_prompt_lengths(components, prompt_encoder, model_args.tokenizer_max_length)
    grid = frame_grid(components.vae)
    if data_args.latent_cache_dir:
        dataset, sampler, collator = build_cached_training_data(
            model_args, data_args, args, components, prompt_encoder, inpaint
        )
    else:
        dataset, sampler, collator = build_training_data(data_args, args, grid)
        if model_args.train_mode == "inpaint":
            collator.mask_generator = InpaintMaskGenerator()
            # V3/V4 InP: a CLIP reference frame per sample
            collator.reference_frames = components.image_encoder is not None
    if args.should_log:
        report_bucket_plan(sampler, args)
    model = build_lora_model(components.transformer, model_args, args)
    swapper = swap_blocks(components.transformer, args.blocks_to_swap, args.device)
    if args.should_log and args.device.type == "cuda":
        from .memory.command import startup_line

        logger.info(startup_line(model_args, data_args, args))
    encoders = FrozenEncoders(
        components.vae,
        prompt_encoder,
        device=args.device,
        # With the cache the encoders stay in CPU memory and visit the accelerator only for eval batches.
        low_vram=args.low_vram or bool(data_args.latent_cache_dir),
        vae_mini_batch=args.vae_mini_batch,
        image_encoder=components.image_encoder,
    )
    eval_dataset, eval_sampler = build_eval_data(data_args, args, grid)
    trainer = EasyAnimateTrainer(
        model=model,
        args=args,
        encoders=encoders,
        objective=objective,
        inpaint=inpaint,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        train_batch_sampler=sampler,
        eval_batch_sampler=eval_sampler,
        model_args=model_args,
        data_args=data_args,
        callbacks=list(callbacks),
        optimizer_cls_and_kwargs=optimizer_override(args),
        block_swapper=swapper,
    )
    validation = build_validation(args, data_args, components, trainer)
    if validation is not None:
        trainer.add_callback(validation)
    if args.report_model_info:
        trainer.add_callback(EngineReport(trainer))
    stop = GracefulStop()
    trainer.add_callback(stop)
    if args.overwrite_output_dir and resume is None and args.should_save:
        clear_previous_run(args.output_dir)  # only now: a failed load above leaves the earlier run in place
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(args.output_dir)
    trainer.save_state()  # trainer_state.json beside the adapter: the loss history `hf-easyanimate report` plots
    if stop.signum:
        raise TrainingInterrupted(stop.stopped_at, stop.signum, get_last_checkpoint(args.output_dir))
    report_written(trainer)
    return trainer


def report_written(trainer: EasyAnimateTrainer) -> None:
    """The run's last lines: where the LoRA went, in which formats, at which rank and alpha."""
    if not trainer.is_world_process_zero():
        return
    from .hub import written_summary
    from .training.outputs import checkpoints

    config = trainer.accelerator.unwrap_model(trainer.model).peft_config["default"]
    output_dir = trainer.args.output_dir
    print(written_summary(output_dir, trainer._lora_formats(), config.r, config.lora_alpha, checkpoints(output_dir)))


def main(argv: Sequence[str] | None = None, prog: str = "hf-easyanimate train") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet.install()
    code = early_exit(argv, prog)
    if code is not None:
        return code
    try:
        model_args, data_args, training_args = parse_args(argv)
    except ValueError as error:  # RecipeError, ArgumentValidationError, LegacyFlagConflict
        print(f"hf-easyanimate: error: {error}", file=sys.stderr)
        return 2
    quiet.deepspeed_in_use(bool(training_args.deepspeed))
    try:
        run(model_args, data_args, training_args)
    except NothingToTrain as done:
        print(f"hf-easyanimate: {done}", file=sys.stderr)
        return 0
    except TrainingInterrupted as stopped:
        if training_args.should_log:
            print(f"hf-easyanimate: {stopped}", file=sys.stderr)
        return stopped.exit_code
    except KeyboardInterrupt:  # Ctrl-C before training started, or a second Ctrl-C during it
        last = get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
        print("\nhf-easyanimate: aborted" + (f"; the last complete checkpoint is {last}" if last else ""),
              file=sys.stderr)
        return 130
    except (  # raised before step 1: a clear message and exit code 2, not a traceback
        RecipeError, PreflightError, OutputDirError, CheckpointNotFound, ModelConfigMismatch, LoraTargetError,
        MetadataError, DataValidationError, EmptyEpochError, CacheMissError, ClipModelError,
    ) as error:
        print(f"hf-easyanimate: error: {error}", file=sys.stderr)
        return 2
    except (ModelLoadError, NonFiniteLossError, CheckpointSaveError) as error:
        # UnsupportedModelError, divergence, failed checkpoint write: a clear message, not a traceback
        print(f"hf-easyanimate: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m hf_easyanimate.train"))
