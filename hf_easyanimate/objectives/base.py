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

    def prepare(
        self, latents: torch.Tensor, noise: torch.Tensor, generator: torch.Generator | None = None
    ) -> NoisedBatch:
        """Draw timesteps and build the model input and target for one batch."""
        timesteps = self.sample_timesteps(latents.shape[0], device=latents.device, generator=generator)
        return NoisedBatch(
            noisy_latents=self.noisy(latents, noise, timesteps),
            timesteps=timesteps,
            target=self.target(latents, noise, timesteps),
        )
