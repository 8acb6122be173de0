"""From parsed arguments to the cached training data, and the ``precompute`` command."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from ..data.buckets import FrameGrid
from ..data.dataset import SampleOptions
from ..data.pipeline import frame_sampling, prepare_index
from ..data.plan import PlanConfig
from ..data.sampler import BucketBatchSampler
from .data import CachedCollator, CachedDataset, CacheSpec
from .keys import text_fingerprint, vae_fingerprint
from .store import LatentCache

logger = logging.getLogger(__name__)

PRECOMPUTE_DESCRIPTION = (
    "Encode every clip's VAE latents and every caption's prompt embedding once, into --latent_cache_dir, with the "
    "same recipe and flags as training; then train with the same --latent_cache_dir. Resumable; under torchrun the "
    "ranks share the work."
)


def cache_spec(model_args, data_args, vae, prompt_encoder, inpaint: bool, components=None) -> CacheSpec:
    """The identity of this run's entries (frame sampling, text drop, encoder fingerprints) and, for inpaint, which
    conditioning they hold: V5's masked-video latents, or V2-V4's VAE-encoded masks (``resize_inpaint_mask_directly:
    false``) with the reference frame's CLIP features where the model has an image encoder."""
    options = SampleOptions(frames=frame_sampling(data_args), text_drop_ratio=data_args.text_drop_ratio)
    config = components.transformer.config if components is not None else {}
    return CacheSpec(
        options=options,
        vae=vae_fingerprint(model_args, vae),
        text=text_fingerprint(model_args, prompt_encoder),
        inpaint=inpaint,
        encoded_mask=inpaint and not config.get("resize_inpaint_mask_directly", True),
        reference_features=inpaint and getattr(components, "image_encoder", None) is not None,
    )


def build_cached_data(
    data_args, spec: CacheSpec, batch_size: int, seed: int, num_replicas: int, rank: int,
    frame_grid: FrameGrid | int,
) -> tuple[CachedDataset, BucketBatchSampler, CachedCollator, PlanConfig]:
    """Dataset, batch sampler and collator reading ``--latent_cache_dir`` (the sampler is the pixel run's)."""
    meta, index, _ = prepare_index(data_args)
    config = PlanConfig.from_data_args(data_args, frame_grid)
    dataset = CachedDataset(meta, index, LatentCache(data_args.latent_cache_dir), spec, seed=seed)
    sampler = BucketBatchSampler(index, batch_size, config, seed=seed, num_replicas=num_replicas, rank=rank,
                                 remainder=getattr(data_args, "bucket_remainder", "drop"))
    return dataset, sampler, CachedCollator(config), config


def precompute_main(argv: Sequence[str] | None = None) -> int:
    """``hf-easyanimate precompute RECIPE.yaml --latent_cache_dir C [--flag value ...]``."""
    from ..models.loading import ModelLoadError, load_components
    from ..models.text import build_prompt_encoder
    from ..models.vae import frame_grid
    from ..parser import early_exit, parse_args
    from ..training.runtime import setup_logging, weight_dtype
    from .precompute import precompute

    argv = list(sys.argv[1:] if argv is None else argv)
    code = early_exit(argv, "hf-easyanimate precompute", PRECOMPUTE_DESCRIPTION)
    if code is not None:
        return code
    try:
        model_args, data_args, args = parse_args(argv)
        if not data_args.latent_cache_dir:
            raise ValueError("--latent_cache_dir is required: the folder the latents and embeddings go to")
        if not model_args.pretrained_model_name_or_path:
            raise ValueError("--pretrained_model_name_or_path is required")
    except ValueError as error:
        print(f"hf-easyanimate precompute: error: {error}", file=sys.stderr)
        return 2
    setup_logging(args)
    try:
        components = load_components(
            model_args.pretrained_model_name_or_path, revision=model_args.revision, variant=model_args.variant,
            cache_dir=model_args.cache_dir, weight_dtype=weight_dtype(args), vae_path=model_args.vae_path,
            config_path=model_args.config_path, transformer_weights=False,  # only its config is read
            train_mode=model_args.train_mode,
        )
    except ModelLoadError as error:
        print(f"hf-easyanimate precompute: error: {error}", file=sys.stderr)
        return 1
    prompt_encoder = build_prompt_encoder(components, model_args.tokenizer_max_length)
    inpaint = components.is_inpaint and model_args.train_mode == "inpaint"
    spec = cache_spec(model_args, data_args, components.vae, prompt_encoder, inpaint, components)
    dataset, _, _, config = build_cached_data(
        data_args, spec, args.per_device_train_batch_size, args.seed, 1, 0, frame_grid(components.vae)
    )
    report = precompute(
        dataset, config, components.vae, prompt_encoder, args.device, rank=args.process_index,
        world_size=args.world_size, workers=args.dataloader_num_workers, progress=args.process_index == 0,
        image_encoder=components.image_encoder if spec.reference_features else None,
    )
    print(f"hf-easyanimate precompute (rank {args.process_index}/{args.world_size}): {report.line()}; "
          f"cache: {data_args.latent_cache_dir}")
    return 0
