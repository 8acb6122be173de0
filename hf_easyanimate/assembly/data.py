"""The run's data side: dataset, this rank's batch sampler and collator (pixels, or the latent cache), the held-out
set of the validation loss, and the one-line bucket plan a run prints at start."""

from __future__ import annotations

import logging

from ..cache import CachedInpaintMasks, check_complete
from ..cache.build import build_cached_data, cache_spec
from ..config import DataArguments, ModelArguments, RecipeError
from ..data import BucketBatchSampler, EasyAnimateCollator, EasyAnimateDataset, build_eval_set, build_train_data
from ..data.buckets import FrameGrid
from ..data.masks import InpaintMaskGenerator
from ..data.pipeline import plan_summary
from ..models.components import EasyAnimateComponents
from ..models.vae import frame_grid

logger = logging.getLogger("hf_easyanimate")


def build_training_data(
    data_args: DataArguments, args, grid: FrameGrid | int
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
    args,
    components: EasyAnimateComponents,
    prompt_encoder,
    inpaint,
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


def build_eval_data(
    data_args: DataArguments, args, grid: FrameGrid | int
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


def report_bucket_plan(sampler: BucketBatchSampler, args) -> None:
    """One line of what an epoch trains, and a warning when some samples can never be trained."""
    summary = plan_summary(sampler.index.bucket_counts(), sampler.batch_size, args.world_size, sampler.remainder)
    logger.info(summary.line())
    if summary.warning():
        logger.warning(summary.warning())


def build_run_data(model_args: ModelArguments, data_args: DataArguments, args, components: EasyAnimateComponents,
                   prompt_encoder, inpaint) -> tuple:
    """(dataset, sampler, collator) of the training set: from the latent cache, or pixels with the inpaint masks
    (and the V3/V4 CLIP reference frames) an InP run draws."""
    if data_args.latent_cache_dir:
        return build_cached_training_data(model_args, data_args, args, components, prompt_encoder, inpaint)
    dataset, sampler, collator = build_training_data(data_args, args, frame_grid(components.vae))
    if model_args.train_mode == "inpaint":
        collator.mask_generator = InpaintMaskGenerator()
        collator.reference_frames = components.image_encoder is not None
    return dataset, sampler, collator

