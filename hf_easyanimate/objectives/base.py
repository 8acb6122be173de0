"""The interface every diffusion objective implements: pure tensor code, no Trainer, no models."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass
class NoisedBatch:
    """What one training step needs from an objective: model input, its timestep, the target."""

    noisy_latents: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor


def grid_indices(count: int, total: int) -> torch.Tensor:
    """Centres of ``count`` equal bins over ``range(total)``: e.g. 4 of 1000 -> 125, 375, 625, 875."""
    if not 0 < count <= total:
        raise ValueError(f"need 0 < count <= {total}, got {count}")
    return ((torch.arange(count, dtype=torch.float64) + 0.5) * total / count).long()


class Objective(ABC):
    """Diffusion objective: sample timesteps, noise the latents, state the target, score a prediction."""

    @abstractmethod
    def sample_timesteps(
        self, batch_size: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Timesteps in the form the transformer expects."""

    @abstractmethod
    def noisy(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The model input x_t."""

    @abstractmethod
    def target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What the model output is compared with."""

    @abstractmethod
    def loss(self, pred: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Scalar loss of ``pred`` against ``target`` (any per-timestep weighting applied here)."""

    def timestep_grid(self, count: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """``count`` timesteps spread evenly over the training range (bin centres), for a deterministic eval loss.

        Default: integer timesteps of ``range(self.num_train_timesteps)`` (DDPM-style objectives). Objectives
        whose transformer timesteps live on another grid (flow: the scheduler's timesteps) override it.
        """
        total = getattr(self, "num_train_timesteps", None)
        if total is None:
            raise NotImplementedError(f"{type(self).__name__} sets no num_train_timesteps; override timestep_grid")
        return grid_indices(count, int(total)).to(device)

    def prepare(
        self, latents: torch.Tensor, noise: torch.Tensor, generator: torch.Generator | None = None
    ) -> NoisedBatch:
        """Draw timesteps (always through :meth:`sample_timesteps`) and build the model input and target."""
        timesteps = self.sample_timesteps(latents.shape[0], device=latents.device, generator=generator)
        return NoisedBatch(
            noisy_latents=self.noisy(latents, noise, timesteps),
            timesteps=timesteps,
            target=self.target(latents, noise, timesteps),
        )
