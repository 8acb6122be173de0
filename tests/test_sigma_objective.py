"""The learned-sigma (V3/V2) objective against a direct re-statement of GaussianDiffusion's formulas.

The reference below is written from the improved-DDPM equations, the way the original computes them:
float64 numpy tables, float32 after indexing, MSE on epsilon plus the VLB of the learned-range variance
with the epsilon prediction detached. It shares no code with hf_easyanimate.objectives.sigma.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from hf_easyanimate.objectives import DiscreteTimestepSampler, LearnedSigmaObjective, NoisedBatch

TOL = {"rtol": 1e-6, "atol": 1e-6}


class ReferenceDiffusion:
    """Improved-DDPM tables in float64 numpy (linear betas, optional respacing)."""

    def __init__(self, steps: int = 1000) -> None:
        base = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
        base_cumprod = np.cumprod(1.0 - base)
        stride = 1.0 if steps == 1 else 999 / (steps - 1)
        self.timestep_map = sorted({round(i * stride) for i in range(steps)})
        betas, last = [], 1.0
        for i in self.timestep_map:
            betas.append(1.0 - base_cumprod[i] / last)
            last = base_cumprod[i]
        betas = np.array(betas, dtype=np.float64)
        alphas = 1.0 - betas
        cumprod = np.cumprod(alphas)
        cumprod_prev = np.append(1.0, cumprod[:-1])
        self.betas = betas
        self.sqrt_ac = np.sqrt(cumprod)
        self.sqrt_1m_ac = np.sqrt(1.0 - cumprod)
        self.sqrt_recip_ac = np.sqrt(1.0 / cumprod)
        self.sqrt_recipm1_ac = np.sqrt(1.0 / cumprod - 1)
        post_var = betas * (1.0 - cumprod_prev) / (1.0 - cumprod)
        self.post_logvar = np.log(np.append(post_var[1], post_var[1:]))
        self.coef1 = betas * np.sqrt(cumprod_prev) / (1.0 - cumprod)
        self.coef2 = (1.0 - cumprod_prev) * np.sqrt(alphas) / (1.0 - cumprod)

    @staticmethod
    def take(array, t, ndim):
        value = torch.from_numpy(array)[t].float()
        return value.reshape(-1, *([1] * (ndim - 1)))

    def loss_terms(self, x0, noise, t, output, snr=False):
        n = x0.ndim
        x_t = self.take(self.sqrt_ac, t, n) * x0 + self.take(self.sqrt_1m_ac, t, n) * noise
        channels = x0.shape[1]
        eps, v = torch.split(output, channels, dim=1)
        frozen_eps = eps.detach()
        # true posterior q(x_{t-1} | x_t, x0)
        true_mean = self.take(self.coef1, t, n) * x0 + self.take(self.coef2, t, n) * x_t
        true_logvar = self.take(self.post_logvar, t, n)
        # model p(x_{t-1} | x_t) from the frozen epsilon and the learned range
        min_log = self.take(self.post_logvar, t, n)
        max_log = self.take(np.log(self.betas), t, n)
        frac = (v + 1) / 2
        model_logvar = frac * max_log + (1 - frac) * min_log
        pred_x0 = self.take(self.sqrt_recip_ac, t, n) * x_t - self.take(self.sqrt_recipm1_ac, t, n) * frozen_eps
        model_mean = self.take(self.coef1, t, n) * pred_x0 + self.take(self.coef2, t, n) * x_t
        kl = 0.5 * (-1.0 + model_logvar - true_logvar + torch.exp(true_logvar - model_logvar)
                    + (true_mean - model_mean) ** 2 * torch.exp(-model_logvar))
        kl = kl.mean(dim=list(range(1, n))) / math.log(2.0)

        def cdf(x):
            return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))

        inv_std = torch.exp(-0.5 * model_logvar)
        plus = cdf(inv_std * (x0 - model_mean + 1 / 255))
        minus = cdf(inv_std * (x0 - model_mean - 1 / 255))
        log_probs = torch.where(
            x0 < -0.999,
            torch.log(plus.clamp(min=1e-12)),
            torch.where(x0 > 0.999, torch.log((1 - minus).clamp(min=1e-12)), torch.log((plus - minus).clamp(min=1e-12))),
        )
        nll = -log_probs.mean(dim=list(range(1, n))) / math.log(2.0)
        vb = torch.where(t == 0, nll, kl)
        target, prediction = noise, eps
        if snr:
            expanded = t.reshape(-1, *([1] * (n - 1))).expand_as(eps)
            x0_hat = self.take(self.sqrt_recip_ac, t, n) * x_t - self.take(self.sqrt_recipm1_ac, t, n) * eps
            target = torch.where(expanded > 249, noise, x0)
            prediction = torch.where(expanded > 249, eps, x0_hat)
        mse = ((target - prediction) ** 2).mean(dim=list(range(1, n)))
        return x_t, {"mse": mse, "vb": vb, "loss": mse + vb}


def batch_for(objective, x0, noise, t) -> NoisedBatch:
    return NoisedBatch(
        latents=x0, noise=noise, noisy_latents=objective.noisy(x0, noise, t), timesteps=objective.model_timesteps(t),
        target=objective.target(x0, noise, t), index=t,
    )


def data(seed=0, batch=4):
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn(batch, 4, 3, 6, 6, generator=generator).clamp(-1.2, 1.2)  # some |x0| > 0.999 edge bins
    noise = torch.randn(x0.shape, generator=generator)
    output = torch.randn(batch, 8, 3, 6, 6, generator=generator)
    output[:, 4:] = output[:, 4:].clamp(-1, 1)
    return x0, noise, output


@pytest.mark.parametrize("snr", [False, True])
def test_sigma_loss_matches_the_gaussian_diffusion_formulas(snr):
    x0, noise, output = data()
    objective = LearnedSigmaObjective(snr_loss=snr)
    t = torch.tensor([0, 5, 249, 999])  # decoder-NLL branch, both sides of the snr switch, the last step
    batch = batch_for(objective, x0, noise, t)
    x_t, expected = ReferenceDiffusion().loss_terms(x0, noise, t, output, snr=snr)
    torch.testing.assert_close(batch.noisy_latents, x_t, **TOL)
    terms = objective.loss_terms(output, batch)
    for key in ("mse", "vb", "loss"):
        torch.testing.assert_close(terms[key], expected[key], **TOL)
    torch.testing.assert_close(objective.loss(output, batch), expected["loss"].mean(), **TOL)
    assert torch.equal(batch.timesteps, t) and torch.equal(batch.target, noise)


def test_sigma_respaced_schedule_matches_space_timesteps():
    x0, noise, output = data(1)
    objective = LearnedSigmaObjective(sampler=DiscreteTimestepSampler(num_steps=100))
    reference = ReferenceDiffusion(100)
    assert objective.diffusion.timestep_map.tolist() == reference.timestep_map
    t = torch.tensor([0, 17, 50, 99])
    batch = batch_for(objective, x0, noise, t)
    # The transformer sees original-schedule timesteps; the tables use the spaced index.
    assert batch.timesteps.tolist() == [reference.timestep_map[i] for i in t.tolist()]
    _, expected = ReferenceDiffusion(100).loss_terms(x0, noise, t, output)
    torch.testing.assert_close(objective.loss_terms(output, batch)["loss"], expected["loss"], **TOL)


def test_sigma_q_sample_equals_diffusers_ddpm_add_noise_on_the_linear_schedule():
    """Same forward process as diffusers' DDPMScheduler; diffusers multiplies alpha-bar out in float32
    (the original and we in float64), which leaves differences of a few 1e-6 at late steps."""
    x0, noise, _ = data(2)
    objective = LearnedSigmaObjective()
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    t = torch.tensor([0, 300, 600, 999])
    torch.testing.assert_close(objective.noisy(x0, noise, t), scheduler.add_noise(x0, noise, t), rtol=0, atol=1e-5)


def test_sigma_gradients_mean_from_mse_only_variance_from_vb_only():
    x0, noise, output = data(3)
    objective = LearnedSigmaObjective()
    batch = batch_for(objective, x0, noise, torch.tensor([10, 200, 500, 900]))
    output = output.requires_grad_(True)
    terms = objective.loss_terms(output, batch)
    (grad_vb,) = torch.autograd.grad(terms["vb"].sum(), output, retain_graph=True)
    (grad_mse,) = torch.autograd.grad(terms["mse"].sum(), output)
    assert grad_vb[:, :4].abs().max() == 0 and grad_vb[:, 4:].abs().max() > 0
    assert grad_mse[:, 4:].abs().max() == 0 and grad_mse[:, :4].abs().max() > 0


def test_sigma_needs_twice_the_latent_channels_and_refuses_motion_loss():
    x0, noise, output = data(4)
    objective = LearnedSigmaObjective()
    batch = batch_for(objective, x0, noise, torch.tensor([1, 2, 3, 4]))
    with pytest.raises(ValueError, match="2 x 4 channels"):
        objective.loss(output[:, :4], batch)
    with pytest.raises(ValueError, match="motion_sub_loss"):
        LearnedSigmaObjective(motion_sub_loss_ratio=0.25)
