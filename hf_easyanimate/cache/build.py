"""From parsed arguments to the cached training data: the spec that keys a run's entries, and its dataset,
sampler and collator (``hf-easyanimate precompute`` and cached training both build them here)."""

from __future__ import annotations

import logging

from ..data.buckets import FrameGrid
from ..data.dataset import SampleOptions
from ..data.pipeline import frame_sampling, prepare_index
from ..data.plan import PlanConfig
from ..data.sampler import BucketBatchSampler
from .data import CachedCollator, CachedDataset, CacheSpec
from .keys import text_fingerprint, vae_fingerprint
from .store import LatentCache

logger = logging.getLogger(__name__)

def cache_spec(model_args, data_args, vae, prompt_encoder, inpaint: bool, components=None) -> CacheSpec:
    """The identity of this run's entries (frame sampling, text drop, encoder fingerprints) and, for inpaint, which
    conditioning they hold: masked-video latents (V5), or the posteriors of VAE-encoded masks (V2-V4, whose inpaint
    conditioning encodes the mask) with the reference frame's CLIP features where the model has an image encoder."""
    options = SampleOptions(frames=frame_sampling(data_args), text_drop_ratio=data_args.text_drop_ratio)
    conditioner = components.family.inpaint_conditioner(components) if inpaint and components is not None else None
    return CacheSpec(
        options=options,
        vae=vae_fingerprint(model_args, vae),
        text=text_fingerprint(model_args, prompt_encoder),
        inpaint=inpaint,
        encoded_mask=bool(conditioner is not None and conditioner.encodes_mask),
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
