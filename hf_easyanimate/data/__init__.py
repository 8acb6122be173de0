"""Data side: metadata -> samples -> single-size batches. Never touches models."""

from .buckets import ASPECT_RATIO_512, bucket_size, closest_ratio, frames_on_vae_grid
from .collator import EasyAnimateCollator
from .dataset import EasyAnimateDataset, FrameSampling
from .metadata import MetadataError, load_metadata
from .sampler import BucketBatchSampler, bucket_key
from .video import SampleReadError

__all__ = [
    "ASPECT_RATIO_512",
    "BucketBatchSampler",
    "EasyAnimateCollator",
    "EasyAnimateDataset",
    "FrameSampling",
    "MetadataError",
    "SampleReadError",
    "bucket_key",
    "bucket_size",
    "closest_ratio",
    "frames_on_vae_grid",
    "load_metadata",
]
