"""Rectified-flow objective of EasyAnimate V5.1 (FlowMatchEulerDiscreteScheduler)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

from .base import NoisedBatch, Objective, first_half_if_learned_sigma
from .losses import thresholded_mse


@dataclass
class FlowMatchingObjective(Objective):
    """x_t = (1 - sigma) x0 + sigma eps, target eps - x0, SD3-style density and weighting.

    An index u * N (u from ``weighting_scheme``'s density) picks a point of the scheduler's own training
    grid, so the transformer sees exactly the timestep values (sigma x 1000) it sees at inference.
    ``--uniform_sampling`` does not apply: like the original, flow draws its own timesteps.
    """

    scheduler: FlowMatchEulerDiscreteScheduler
    weighting_scheme: str = "none"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29
    _timesteps: torch.Tensor = field(init=False, repr=False)
    _sigmas: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.num_train_timesteps = int(self.scheduler.config.num_train_timesteps)
        # The training grid of a freshly loaded scheduler (not whatever an inference call last set).
        self._timesteps = self.scheduler.timesteps.clone().float()
        self._sigmas = self.scheduler.sigmas.clone().float()[: len(self._timesteps)]

    def sample_index(self, batch_size, device="cpu", generator=None):
        u = compute_density_for_timestep_sampling(
            weighting_scheme=self.weighting_scheme,
            batch_size=batch_size,
            logit_mean=self.logit_mean,
            logit_std=self.logit_std,
            mode_scale=self.mode_scale,
            generator=generator,
        )
        return (u * self.num_train_timesteps).long().clamp_(0, len(self._timesteps) - 1).to(device)

    @property
    def grid_size(self) -> int:
        return len(self._timesteps)

    def model_timesteps(self, index):
        return self._timesteps.to(index.device)[index]

    def sigmas(self, index: torch.Tensor, ndim: int) -> torch.Tensor:
        """sigma of each sample's grid point, shaped to broadcast over latents of ``ndim`` dims."""
        return self._sigmas.to(index.device)[index].reshape(-1, *([1] * (ndim - 1)))

    def noisy(self, latents, noise, index):
        sigma = self.sigmas(index, latents.ndim).to(latents.dtype)
        return (1.0 - sigma) * latents + sigma * noise

    def target(self, latents, noise, index):
        return noise - latents

    def loss(self, pred: torch.Tensor, batch: NoisedBatch) -> torch.Tensor:
        pred = first_half_if_learned_sigma(pred, batch.target)
        weighting = compute_loss_weighting_for_sd3(self.weighting_scheme, sigmas=self.sigmas(batch.index, pred.ndim))
        return self._with_motion(thresholded_mse(pred, batch.target, weighting), pred, batch.target)
