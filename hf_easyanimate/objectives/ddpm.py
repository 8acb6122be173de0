"""DDPM objective of EasyAnimate V5 and V4 (diffusers ``DDPMScheduler``, epsilon or v-prediction)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers import DDPMScheduler

from .base import DiscreteGridSampling, NoisedBatch, Objective, first_half_if_learned_sigma
from .losses import thresholded_mse
from .timesteps import DiscreteTimestepSampler

PREDICTION_TYPES = ("epsilon", "v_prediction")


@dataclass
class DDPMObjective(DiscreteGridSampling, Objective):
    """x_t = scheduler.add_noise(x0, eps, t); target eps or scheduler.get_velocity(x0, eps, t).

    Timesteps are the integer indices of ``sampler`` (``--train_sampling_steps``, ``--uniform_sampling``)
    used directly as DDPM timesteps, as the original does; the scheduler comes from the checkpoint's
    scheduler config (V5 ships a v-prediction, zero-terminal-SNR DDIM config).
    """

    scheduler: DDPMScheduler
    sampler: DiscreteTimestepSampler = field(default_factory=DiscreteTimestepSampler)
    prediction_type: str | None = None

    def __post_init__(self) -> None:
        self.prediction_type = self.prediction_type or self.scheduler.config.prediction_type
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"ddpm prediction_type {self.prediction_type!r} is not supported; use one of {PREDICTION_TYPES}"
            )
        num_train_timesteps = self.num_train_timesteps = int(self.scheduler.config.num_train_timesteps)
        if self.sampler.num_steps > num_train_timesteps:
            raise ValueError(
                f"--train_sampling_steps={self.sampler.num_steps} exceeds the scheduler's "
                f"num_train_timesteps={num_train_timesteps}; ddpm uses the indices as timesteps directly"
            )

    def model_timesteps(self, index):
        return index.float()

    def noisy(self, latents, noise, index):
        return self.scheduler.add_noise(latents, noise, index)

    def target(self, latents, noise, index):
        if self.prediction_type == "v_prediction":
            return self.scheduler.get_velocity(latents, noise, index)
        return noise

    def loss(self, pred: torch.Tensor, batch: NoisedBatch) -> torch.Tensor:
        pred = first_half_if_learned_sigma(pred, batch.target)
        return self._with_motion(thresholded_mse(pred, batch.target), pred, batch.target)
