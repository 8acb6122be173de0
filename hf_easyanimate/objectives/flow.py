"""Rectified-flow objective of EasyAnimate V5.1 (FlowMatchEulerDiscreteScheduler)."""

from __future__ import annotations

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

from .base import Objective, grid_indices
from .losses import thresholded_mse


class FlowMatchingObjective(Objective):
    """x_t = (1 - sigma) x0 + sigma eps, target eps - x0, SD3-style density and weighting.

    Timesteps are drawn from ``weighting_scheme``'s density and mapped onto the scheduler's own
    timestep grid, so the transformer sees exactly the values it sees at inference.
    """

    def __init__(
        self,
        scheduler: FlowMatchEulerDiscreteScheduler,
        weighting_scheme: str = "none",
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        mode_scale: float = 1.29,
    ) -> None:
        self.scheduler = scheduler
        self.weighting_scheme = weighting_scheme
        self.logit_mean = logit_mean
        self.logit_std = logit_std
        self.mode_scale = mode_scale
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        # The training grid: a fresh scheduler's timesteps/sigmas (not whatever inference last set).
        self._timesteps = scheduler.timesteps.clone().float()
        self._sigmas = scheduler.sigmas.clone().float()

    def sample_timesteps(self, batch_size, device="cpu", generator=None):
        u = compute_density_for_timestep_sampling(
            weighting_scheme=self.weighting_scheme,
            batch_size=batch_size,
            logit_mean=self.logit_mean,
            logit_std=self.logit_std,
            mode_scale=self.mode_scale,
            generator=generator,
        )
        indices = (u * self.num_train_timesteps).long().clamp_(0, self.num_train_timesteps - 1)
        return self._timesteps[indices].to(device)

    def timestep_grid(self, count, device="cpu"):
        # Evenly spaced points of the scheduler's own training grid, as sample_timesteps would map them.
        return self._timesteps[grid_indices(count, self.num_train_timesteps)].to(device)

    def sigmas(self, timesteps: torch.Tensor, ndim: int) -> torch.Tensor:
        """sigma for each timestep, looked up on the scheduler grid, shaped to broadcast over latents."""
        grid = self._timesteps.to(timesteps.device)
        indices = (grid[None, :] - timesteps.float()[:, None]).abs().argmin(dim=1)
        sigma = self._sigmas.to(timesteps.device)[indices]
        return sigma.reshape(-1, *([1] * (ndim - 1)))

    def noisy(self, latents, noise, timesteps):
        sigma = self.sigmas(timesteps, latents.ndim).to(latents.dtype)
        return (1.0 - sigma) * latents + sigma * noise

    def target(self, latents, noise, timesteps):
        return noise - latents

    def loss(self, pred, target, timesteps):
        weighting = compute_loss_weighting_for_sd3(self.weighting_scheme, sigmas=self.sigmas(timesteps, pred.ndim))
        return thresholded_mse(pred, target, weighting)
