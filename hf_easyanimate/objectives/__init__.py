"""Diffusion objectives, one class each, sharing :class:`Objective`'s interface."""

from .base import NoisedBatch, Objective
from .flow import FlowMatchingObjective
from .losses import motion_sub_loss, thresholded_mse, with_motion_loss

__all__ = [
    "FlowMatchingObjective",
    "NoisedBatch",
    "Objective",
    "motion_sub_loss",
    "thresholded_mse",
    "with_motion_loss",
]
