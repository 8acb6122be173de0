"""``hf-easyanimate precompute RECIPE.yaml --latent_cache_dir C [--flag value ...]``: encode latents and prompt
embeddings once, with the recipe's own settings; then train with the same ``--latent_cache_dir``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from ..cache.build import build_cached_data, cache_spec
from ..cache.precompute import precompute
from ..models.errors import ModelLoadError
from ..models.loading import load_components
from ..models.text import build_prompt_encoder
from ..models.vae import frame_grid
from ..trainers.lora_config import ARGUMENT_CLASSES, parse_args
from ..training.outputs import remove_interrupted_saves
from ..training.run_lock import FolderLock, FolderLockedError
from ..training.runtime import setup_logging, weight_dtype
from .common import early_exit, error

logger = logging.getLogger("hf_easyanimate")

PROG = "hf-easyanimate precompute"
DESCRIPTION = (
    "Encode every clip's VAE latents and every caption's prompt embedding once, into --latent_cache_dir, with the "
    "same recipe and flags as training; then train with the same --latent_cache_dir. Resumable; under torchrun the "
    "ranks share the work."
)


def _parse(argv: list[str]):
    model_args, data_args, args = parse_args(argv)
    if not data_args.latent_cache_dir:
        raise ValueError("--latent_cache_dir is required: the folder the latents and embeddings go to")
    if not model_args.pretrained_model_name_or_path:
        raise ValueError("--pretrained_model_name_or_path is required")
    return model_args, data_args, args


def encode(model_args, data_args, args, components) -> str:
    """Encode what the cache lacks for this run's entries; returns the report line."""
    prompt_encoder = build_prompt_encoder(components, model_args.tokenizer_max_length)
    inpaint = components.is_inpaint and model_args.train_mode == "inpaint"
    spec = cache_spec(model_args, data_args, components.vae, prompt_encoder, inpaint, components)
    dataset, _, _, config = build_cached_data(
        data_args, spec, args.per_device_train_batch_size, args.seed, 1, 0, frame_grid(components.vae)
    )
    if args.process_index == 0:  # holding the cache's lock: damaged shards go aside, their entries are re-encoded
        for moved in dataset.cache.set_damaged_aside():
            logger.warning("moved the damaged shard aside to %s; its entries are encoded again", moved)
    report = precompute(
        dataset, config, components.vae, prompt_encoder, args.device, rank=args.process_index,
        world_size=args.world_size, workers=args.dataloader_num_workers, progress=args.process_index == 0,
        image_encoder=components.image_encoder if spec.reference_features else None,
    )
    return report.line()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    code = early_exit(argv, PROG, DESCRIPTION, ARGUMENT_CLASSES)
    if code is not None:
        return code
    try:
        model_args, data_args, args = _parse(argv)
    except ValueError as problem:
        error(PROG, problem)
        return 2
    setup_logging(args)
    lock = None
    try:
        if args.process_index == 0:  # one precompute per cache; what a killed one left half-written goes
            lock = FolderLock(data_args.latent_cache_dir, "--latent_cache_dir").acquire()
            remove_interrupted_saves(data_args.latent_cache_dir)
        components = load_components(
            model_args.pretrained_model_name_or_path, revision=model_args.revision, variant=model_args.variant,
            cache_dir=model_args.cache_dir, weight_dtype=weight_dtype(args), vae_path=model_args.vae_path,
            config_path=model_args.config_path, transformer_weights=False,  # only its config is read
            train_mode=model_args.train_mode,
        )
        line = encode(model_args, data_args, args, components)
    except FolderLockedError as problem:
        error(PROG, problem)
        return 2
    except ModelLoadError as problem:
        error(PROG, problem)
        return 1
    finally:
        if lock is not None:
            lock.release()
    print(f"{PROG} (rank {args.process_index}/{args.world_size}): {line}; cache: {data_args.latent_cache_dir}")
    return 0
