"""The run's model side, from the checkpoint the preflight read: components (frozen, stored as asked), the prompt
encoder and the inpaint conditioning the family prescribes, the LoRA-wrapped transformer and the frozen encoders."""

from __future__ import annotations

import torch
import transformers

from ..config import DataArguments, ModelArguments
from ..memory.storage import TEXT_ENCODER_KEPT, storage_dtype, store_weights
from ..models.checkpoint import Checkpoint
from ..models.components import EasyAnimateComponents
from ..models.encoders import FrozenEncoders
from ..models.family import LoadOptions
from ..models.lora import add_lora, build_lora_config, require_linear_targets
from ..models.text import build_prompt_encoder
from ..training.runtime import weight_dtype


def needs_encoder_weights(data_args: DataArguments, args) -> bool:
    """Whether the run encodes anything itself: not when it trains from the latent cache with no eval set and
    no validation samples (then the VAE and text encoder are built from their configs only)."""
    return not data_args.latent_cache_dir or bool(data_args.eval_data_meta) or bool(args.validation_prompts)


def apply_storage_dtypes(components: EasyAnimateComponents, args) -> None:
    """``--base_weight_dtype`` / ``--text_encoder_dtype``: frozen weights stored narrow, computed in the run's dtype."""
    compute = weight_dtype(args)
    base = storage_dtype(args.base_weight_dtype)
    if base is not None:
        store_weights(components.transformer, base, compute)
    text = storage_dtype(args.text_encoder_dtype)
    if text is not None:
        for encoder in (components.text_encoder, components.text_encoder_2):
            if encoder is not None and not any(p.is_meta for p in encoder.parameters()):
                store_weights(encoder, text, compute, keep=TEXT_ENCODER_KEPT)


def load_run_components(checkpoint: Checkpoint, model_args: ModelArguments, data_args: DataArguments,
                        args) -> EasyAnimateComponents:
    """Every component the run uses, loaded by the checkpoint's family and stored in the dtypes asked for."""
    components = checkpoint.load(LoadOptions(
        weight_dtype=weight_dtype(args), variant=model_args.variant, transformer_path=model_args.transformer_path,
        vae_path=model_args.vae_path, encoder_weights=needs_encoder_weights(data_args, args),
        train_mode=model_args.train_mode,
    ))
    apply_storage_dtypes(components, args)
    return components


def run_prompt_encoder(components: EasyAnimateComponents, model_args: ModelArguments):
    """The family's prompt encoder at ``--tokenizer_max_length``, refused when the transformer cannot take it."""
    prompt_encoder = build_prompt_encoder(components, model_args.tokenizer_max_length)
    components.family.check_prompt_lengths(components, prompt_encoder, model_args.tokenizer_max_length)
    return prompt_encoder


def build_inpaint_conditioner(components: EasyAnimateComponents):
    """For InP checkpoints: how mask/masked-video latents are built (the family reads it from the configs)."""
    return components.family.inpaint_conditioner(components)


def build_lora_model(transformer: torch.nn.Module, model_args: ModelArguments, args):
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


def build_encoders(components: EasyAnimateComponents, prompt_encoder, data_args: DataArguments, args) -> FrozenEncoders:
    """The frozen encoders, outside the model Trainer wraps; with the latent cache they stay in CPU memory and visit
    the accelerator only for eval batches."""
    return FrozenEncoders(
        components.vae,
        prompt_encoder,
        device=args.device,
        low_vram=args.low_vram or bool(data_args.latent_cache_dir),
        vae_mini_batch=args.vae_mini_batch,
        image_encoder=components.image_encoder,
    )
