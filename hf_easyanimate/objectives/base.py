"""The interface every diffusion objective implements: pure tensor code, no Trainer, no models."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch

from .losses import with_motion_loss
from .noise import NoiseOptions, perturb_noise, sample_training_noise
from .timesteps import DiscreteTimestepSampler


@dataclass
class NoisedBatch:
    """One training step's tensors: what the model sees, what it is compared with, and where on the schedule.

    ``timesteps`` is what the transformer receives; ``index`` is the position on the objective's own
    training grid (the scheduler index for flow/ddpm, the spaced index for sigma) that the loss needs.
    """

    latents: torch.Tensor
    noise: torch.Tensor
    noisy_latents: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor
    index: torch.Tensor


def grid_indices(count: int, total: int) -> torch.Tensor:
    """Centres of ``count`` equal bins over ``range(total)``: e.g. 4 of 1000 -> 125, 375, 625, 875."""
    if not 0 < count <= total:
        raise ValueError(f"need 0 < count <= {total}, got {count}")
    return ((torch.arange(count, dtype=torch.float64) + 0.5) * total / count).long()


@dataclass
class Objective(ABC):
    """Diffusion objective: draw noise and timesteps, noise the latents, state the target, score a prediction.

    ``motion_sub_loss_ratio`` (None = off) adds EasyAnimate's frame-difference term where the objective
    supports it; ``noise`` holds the noise tricks (offset, input perturbation, frame sharing).
    """

    noise_options: NoiseOptions = field(default_factory=NoiseOptions, kw_only=True)
    motion_sub_loss_ratio: float | None = field(default=None, kw_only=True)

    @abstractmethod
    def sample_index(
        self, batch_size: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Positions on the training grid, one per sample."""

    @property
    @abstractmethod
    def grid_size(self) -> int:
        """Number of positions on the training grid, the range :meth:`sample_index` draws from."""

    @abstractmethod
    def model_timesteps(self, index: torch.Tensor) -> torch.Tensor:
        """The timestep values the transformer is conditioned on for ``index``."""

    def noise_level(self, index: torch.Tensor) -> torch.Tensor:
        """Where ``index`` sits on the diffusion range as a fraction: 0 = clean, 1 = pure noise (eval loss bands)."""
        return self.model_timesteps(index).float() / float(getattr(self, "num_train_timesteps", 1000))

    @abstractmethod
    def noisy(self, latents: torch.Tensor, noise: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The model input x_t."""

    @abstractmethod
    def target(self, latents: torch.Tensor, noise: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """What the model output is compared with."""

    @abstractmethod
    def loss(self, pred: torch.Tensor, batch: NoisedBatch) -> torch.Tensor:
        """Scalar loss of the transformer output ``pred`` for ``batch``."""

    # --- shared steps ------------------------------------------------------------------------------
    def sample_noise(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Gaussian noise shaped like ``latents`` with the configured offset / frame sharing applied."""
        return sample_training_noise(latents, self.noise_options, generator)

    def index_grid(self, count: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """``count`` positions spread evenly over the training grid (bin centres), for a deterministic eval loss."""
        return grid_indices(count, self.grid_size).to(device)

    def prepare(
        self, latents: torch.Tensor, noise: torch.Tensor, generator: torch.Generator | None = None
    ) -> NoisedBatch:
        """Draw timesteps (always through :meth:`sample_index`, which evaluation pins) and build the model input
        and target for one batch.

        With ``input_perturbation`` the model input is built from perturbed noise while the target keeps
        the clean noise (the diffusers training-example recipe).
        """
        index = self.sample_index(latents.shape[0], device=latents.device, generator=generator)
        input_noise = perturb_noise(noise, self.noise_options.input_perturbation, generator)
        return NoisedBatch(
            latents=latents,
            noise=noise,
            noisy_latents=self.noisy(latents, input_noise, index),
            timesteps=self.model_timesteps(index),
            target=self.target(latents, noise, index),
            index=index,
        )

    def _with_motion(self, loss: torch.Tensor, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.motion_sub_loss_ratio is None:
            return loss
        return with_motion_loss(loss, pred, target, self.motion_sub_loss_ratio)


class DiscreteGridSampling:
    """Mixin for objectives whose timesteps are indices drawn by a ``DiscreteTimestepSampler`` (``sampler``).

    ddpm and sigma draw ``--train_sampling_steps`` indices (split per rank by ``--uniform_sampling``) the same
    way; only what an index means differs.
    """

    sampler: DiscreteTimestepSampler

    def sample_index(self, batch_size, device="cpu", generator=None):
        return self.sampler(batch_size, device=device, generator=generator)

    @property
    def grid_size(self) -> int:
        return self.sampler.num_steps


def first_half_if_learned_sigma(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A transformer with a learned-variance head outputs 2C channels; flow/ddpm score only the first C."""
    channels = target.shape[1]
    if pred.shape[1] == channels:
        return pred
    if pred.shape[1] == 2 * channels:
        return pred[:, :channels]
    raise ValueError(f"model output has {pred.shape[1]} channels; expected {channels} or {2 * channels}")
