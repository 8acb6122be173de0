"""The ``sigma`` objective of EasyAnimate V3/V2: epsilon MSE plus the learned-range variance VLB term.

This is the improved-DDPM loss (``GaussianDiffusion.training_losses`` with ``LEARNED_RANGE`` variance and
``LossType.MSE``) that EasyAnimate inherited from PixArt. The model outputs 2C channels: C for epsilon and
C for a variance interpolation value v in [-1, 1]; log sigma^2 = (v+1)/2 log beta_t + (1-v)/2 log beta~_t.
The VLB term sees a *detached* epsilon, so the mean is trained by the MSE only and the variance by the
VLB only. Schedule tables are float64 (like the original) and cast to float32 when indexed.

diffusers' ``EasyAnimateTransformer3DModel`` cannot output 2C channels (it unpatchifies with the input
channel count), so this objective cannot train it; ``hf_easyanimate.train`` refuses that combination
before loading weights. The class is complete and tested as pure tensor code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .base import DiscreteGridSampling, NoisedBatch, Objective
from .timesteps import DiscreteTimestepSampler

# Below this spaced index the --snr_loss variant compares x0 predictions instead of epsilon (the original's 249).
SNR_X0_MAX_INDEX = 249


def linear_betas(num_diffusion_steps: int = 1000) -> torch.Tensor:
    """Ho et al.'s linear schedule, scaled to work for any number of steps (float64)."""
    scale = 1000.0 / num_diffusion_steps
    return torch.linspace(scale * 1e-4, scale * 0.02, num_diffusion_steps, dtype=torch.float64)


def space_timesteps(num_timesteps: int, count: int) -> list[int]:
    """``count`` evenly strided original steps out of ``num_timesteps`` (one section, rounded strides)."""
    if not 1 <= count <= num_timesteps:
        raise ValueError(f"cannot keep {count} of {num_timesteps} diffusion steps")
    stride = 1.0 if count == 1 else (num_timesteps - 1) / (count - 1)
    return sorted({round(i * stride) for i in range(count)})


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of the standard normal CDF used by the original."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """log P(x) under N(means, e^(2 log_scales)) integrated over x's 1/255-wide bin (edges open-ended)."""
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def mean_flat(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.mean(dim=list(range(1, tensor.ndim)))


class LearnedRangeDiffusion:
    """Float64 schedule tables of a (possibly respaced) Gaussian diffusion, and the per-sample VLB term."""

    def __init__(self, betas: torch.Tensor, timestep_map: list[int] | None = None) -> None:
        betas = betas.to(torch.float64)
        if betas.ndim != 1 or len(betas) < 2 or not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must be a 1-D tensor of at least 2 values in (0, 1]")
        self.num_timesteps = len(betas)
        self.timestep_map = torch.tensor(timestep_map if timestep_map is not None else range(len(betas)))
        alphas = 1.0 - betas
        cumprod = torch.cumprod(alphas, dim=0)
        cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), cumprod[:-1]])
        self.betas = betas
        self.sqrt_alphas_cumprod = cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - cumprod).sqrt()
        self.sqrt_recip_alphas_cumprod = (1.0 / cumprod).sqrt()
        self.sqrt_recipm1_alphas_cumprod = (1.0 / cumprod - 1.0).sqrt()
        posterior_variance = betas * (1.0 - cumprod_prev) / (1.0 - cumprod)
        # log(0) at t = 0: the original reuses the t = 1 value there.
        self.posterior_log_variance_clipped = torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]]))
        self.posterior_mean_coef1 = betas * cumprod_prev.sqrt() / (1.0 - cumprod)
        self.posterior_mean_coef2 = (1.0 - cumprod_prev) * alphas.sqrt() / (1.0 - cumprod)
        self.log_betas = torch.log(betas)

    @classmethod
    def respaced(cls, base_betas: torch.Tensor, count: int) -> LearnedRangeDiffusion:
        """Keep ``count`` of the base steps (``space_timesteps``), recomputing betas from alpha-bar ratios."""
        keep = space_timesteps(len(base_betas), count)
        cumprod = torch.cumprod(1.0 - base_betas.to(torch.float64), dim=0)
        betas, last = [], 1.0
        for step in keep:
            betas.append(1.0 - cumprod[step].item() / last)
            last = cumprod[step].item()
        return cls(torch.tensor(betas, dtype=torch.float64), timestep_map=keep)

    @staticmethod
    def _take(table: torch.Tensor, index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        values = table.to(index.device)[index].to(torch.float32)
        return values.reshape(-1, *([1] * (like.ndim - 1)))

    def q_sample(self, x0: torch.Tensor, noise: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self._take(self.sqrt_alphas_cumprod, index, x0) * x0 + self._take(
            self.sqrt_one_minus_alphas_cumprod, index, x0
        ) * noise

    def predict_x0(self, x_t: torch.Tensor, index: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return self._take(self.sqrt_recip_alphas_cumprod, index, x_t) * x_t - self._take(
            self.sqrt_recipm1_alphas_cumprod, index, x_t
        ) * eps

    def posterior_mean(self, x0: torch.Tensor, x_t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self._take(self.posterior_mean_coef1, index, x_t) * x0 + self._take(
            self.posterior_mean_coef2, index, x_t
        ) * x_t

    def vb_bits(
        self, x0: torch.Tensor, x_t: torch.Tensor, index: torch.Tensor, eps: torch.Tensor, var_values: torch.Tensor
    ) -> torch.Tensor:
        """Per-sample VLB term in bits: KL(q(x_t-1 | x_t, x0) || p(x_t-1 | x_t)), or the decoder NLL at t = 0."""
        true_mean = self.posterior_mean(x0, x_t, index)
        true_log_var = self._take(self.posterior_log_variance_clipped, index, x_t)
        min_log, max_log = true_log_var, self._take(self.log_betas, index, x_t)
        frac = (var_values + 1.0) / 2.0
        model_log_var = frac * max_log + (1.0 - frac) * min_log
        model_mean = self.posterior_mean(self.predict_x0(x_t, index, eps), x_t, index)
        kl = mean_flat(normal_kl(true_mean, true_log_var, model_mean, model_log_var)) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var)
        nll = mean_flat(nll) / math.log(2.0)
        return torch.where(index == 0, nll, kl)


@dataclass
class LearnedSigmaObjective(DiscreteGridSampling, Objective):
    """loss = mean over the batch of [ MSE(eps, eps_pred) + VLB(variance | detached eps_pred) ].

    ``snr_loss`` switches the MSE to x0 space for indices <= 249 (no weighting factor), as ``--snr_loss`` does.
    No outlier threshold and no motion loss, as in the original sigma path.
    """

    sampler: DiscreteTimestepSampler = field(default_factory=DiscreteTimestepSampler)
    snr_loss: bool = False
    base_betas: torch.Tensor | None = None
    diffusion: LearnedRangeDiffusion = field(init=False, repr=False)

    def __post_init__(self) -> None:
        betas = linear_betas(1000) if self.base_betas is None else self.base_betas
        self.diffusion = LearnedRangeDiffusion.respaced(betas, self.sampler.num_steps)
        if self.motion_sub_loss_ratio is not None:
            raise ValueError("--motion_sub_loss does not apply to --loss_type sigma (the original ignores it there)")

    def model_timesteps(self, index):
        return self.diffusion.timestep_map.to(index.device)[index]

    def noisy(self, latents, noise, index):
        return self.diffusion.q_sample(latents, noise, index)

    def target(self, latents, noise, index):
        return noise

    def loss_terms(self, pred: torch.Tensor, batch: NoisedBatch) -> dict[str, torch.Tensor]:
        """Per-sample ``mse`` and ``vb`` (bits) and their sum ``loss``, like ``training_losses``."""
        channels = batch.latents.shape[1]
        if pred.shape[1] != 2 * channels:
            raise ValueError(
                f"--loss_type sigma needs a model output of 2 x {channels} channels (epsilon + variance), "
                f"got {pred.shape[1]}"
            )
        eps, var_values = pred.float().split(channels, dim=1)
        x0, x_t, index = batch.latents.float(), batch.noisy_latents.float(), batch.index
        vb = self.diffusion.vb_bits(x0, x_t, index, eps.detach(), var_values)
        target, output = batch.target.float(), eps
        if self.snr_loss:
            use_eps = (index > SNR_X0_MAX_INDEX).reshape(-1, *([1] * (eps.ndim - 1)))
            target = torch.where(use_eps, target, x0)
            output = torch.where(use_eps, eps, self.diffusion.predict_x0(x_t, index, eps))
        mse = mean_flat((target - output) ** 2)
        return {"mse": mse, "vb": vb, "loss": mse + vb}

    def loss(self, pred: torch.Tensor, batch: NoisedBatch) -> torch.Tensor:
        return self.loss_terms(pred, batch)["loss"].mean()
