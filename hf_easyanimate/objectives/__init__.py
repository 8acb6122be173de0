"""Diffusion objectives, one class each, sharing :class:`Objective`'s interface (pure tensor code)."""

from .base import NoisedBatch, Objective, first_half_if_learned_sigma
from .ddpm import DDPMObjective
from .flow import FlowMatchingObjective
from .losses import motion_sub_loss, thresholded_mse, with_motion_loss
from .noise import NoiseOptions, offset_noise, perturb_noise, sample_training_noise, share_noise_in_frames
from .sigma import LearnedRangeDiffusion, LearnedSigmaObjective, linear_betas, space_timesteps
from .timesteps import DiscreteTimestepSampler, rank_interval, uniform_sampling_groups

__all__ = [
    "DDPMObjective",
    "DiscreteTimestepSampler",
    "FlowMatchingObjective",
    "LearnedRangeDiffusion",
    "LearnedSigmaObjective",
    "NoiseOptions",
    "NoisedBatch",
    "Objective",
    "first_half_if_learned_sigma",
    "linear_betas",
    "motion_sub_loss",
    "offset_noise",
    "perturb_noise",
    "rank_interval",
    "sample_training_noise",
    "share_noise_in_frames",
    "space_timesteps",
    "thresholded_mse",
    "uniform_sampling_groups",
    "with_motion_loss",
]
