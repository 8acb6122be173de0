"""Data side: metadata -> index -> single-bucket batches of frames. Never touches models."""

from .buckets import (
    ASPECT_RATIO_512,
    ASPECT_RATIO_RANDOM_CROP_512,
    ASPECT_RATIO_RANDOM_CROP_PROB,
    bucket_size,
    closest_ratio,
    frames_on_vae_grid,
    frames_per_resolution,
)
from .collator import EasyAnimateCollator
from .dataset import EasyAnimateDataset, SampleOptions
from .index import SampleIndex
from .metadata import MetadataError, MetadataTable, load_metadata
from .pipeline import TrainData, bucket_plan, build_eval_set, build_train_data, prepare_index
from .plan import BatchPlan, PlanConfig, plan_batch
from .problems import DataProblem, DataProblemLog, DataProblemsCallback, DataValidationError
from .sampler import BucketBatchSampler, EmptyEpochError, unshard_batch_sampler
from .video import FrameSampling, SampleReadError

__all__ = [
    "ASPECT_RATIO_512",
    "ASPECT_RATIO_RANDOM_CROP_512",
    "ASPECT_RATIO_RANDOM_CROP_PROB",
    "BatchPlan",
    "BucketBatchSampler",
    "DataProblem",
    "DataProblemLog",
    "DataProblemsCallback",
    "DataValidationError",
    "EasyAnimateCollator",
    "EasyAnimateDataset",
    "EmptyEpochError",
    "FrameSampling",
    "MetadataError",
    "MetadataTable",
    "PlanConfig",
    "SampleIndex",
    "SampleOptions",
    "SampleReadError",
    "TrainData",
    "bucket_plan",
    "bucket_size",
    "build_eval_set",
    "build_train_data",
    "closest_ratio",
    "frames_on_vae_grid",
    "frames_per_resolution",
    "load_metadata",
    "plan_batch",
    "prepare_index",
    "unshard_batch_sampler",
]
