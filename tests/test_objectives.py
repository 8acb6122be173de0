"""Parity of every objective with a direct computation from diffusers' schedulers/utilities (float32, 1e-6)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, FlowMatchEulerDiscreteScheduler
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

from hf_easyanimate.objectives import (
    DDPMObjective,
    DiscreteTimestepSampler,
    FlowMatchingObjective,
    NoiseOptions,
    share_noise_in_frames,
)

TOL = {"rtol": 0.0, "atol": 1e-6}
SHAPE = (3, 4, 5, 6, 8)  # B, C, F, h, w


def tensors(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(SHAPE, generator=generator)
    noise = torch.randn(SHAPE, generator=generator)
    pred = torch.randn(SHAPE, generator=generator)
    pred[0, 0, 0, 0, :3] = torch.tensor([80.0, -70.0, 49.0])  # two outliers beyond the |err| <= 50 threshold
    return latents, noise, pred


def reference_thresholded_mse(pred, target, weighting=None):
    error = pred.float() - target.float()
    squared = error**2 * (error.abs() <= 50).float()
    if weighting is not None:
        squared = squared * weighting
    return squared.mean()


def v51_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """The EasyAnimateV5.1 scheduler config (shift 3, dynamic shifting on)."""
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096,
    )


def v5_ddpm_scheduler(prediction_type: str = "v_prediction") -> DDPMScheduler:
    """The EasyAnimateV5 scheduler config (a DDIM config) read as DDPMScheduler, as the trainer does."""
    ddim = DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type=prediction_type, rescale_betas_zero_snr=True, timestep_spacing="trailing",
        clip_sample=False, set_alpha_to_one=True,
    )
    return DDPMScheduler.from_config(ddim.config)


@pytest.mark.parametrize("scheme", ["none", "logit_normal", "mode", "sigma_sqrt", "cosmap"])
def test_flow_matches_diffusers_scheduler_and_sd3_utilities(scheme):
    latents, noise, pred = tensors()
    objective = FlowMatchingObjective(v51_scheduler(), weighting_scheme=scheme, logit_mean=0.3, logit_std=1.2)
    batch = objective.prepare(latents, noise, generator=torch.Generator().manual_seed(7))

    scheduler = v51_scheduler()
    u = compute_density_for_timestep_sampling(
        scheme, batch_size=3, logit_mean=0.3, logit_std=1.2, mode_scale=1.29, generator=torch.Generator().manual_seed(7)
    )
    index = (u * scheduler.config.num_train_timesteps).long()
    sigma = scheduler.sigmas[index].reshape(-1, 1, 1, 1, 1)
    torch.testing.assert_close(batch.timesteps, scheduler.timesteps[index], **TOL)
    torch.testing.assert_close(batch.noisy_latents, (1 - sigma) * latents + sigma * noise, **TOL)
    torch.testing.assert_close(batch.target, noise - latents, **TOL)
    weighting = compute_loss_weighting_for_sd3(scheme, sigmas=sigma)
    expected = reference_thresholded_mse(pred, noise - latents, weighting)
    torch.testing.assert_close(objective.loss(pred, batch), expected, rtol=1e-6, atol=1e-6)
    # The two outliers really are dropped: including them changes the loss by a lot.
    assert abs(((pred - batch.target) ** 2 * weighting).mean() - expected) > 1.0


def test_flow_timesteps_are_the_scheduler_grid_sigma_times_1000():
    objective = FlowMatchingObjective(v51_scheduler())
    index = objective.sample_index(4096, generator=torch.Generator().manual_seed(0))
    assert index.min() >= 0 and index.max() <= 999
    timesteps = objective.model_timesteps(index)
    torch.testing.assert_close(timesteps, objective.sigmas(index, 1) * 1000, rtol=1e-6, atol=1e-3)
    assert timesteps.max() == pytest.approx(1000.0, abs=1.0)  # index 0 is pure noise


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
def test_ddpm_matches_diffusers_ddpm_scheduler(prediction_type):
    latents, noise, pred = tensors(1)
    objective = DDPMObjective(v5_ddpm_scheduler(prediction_type), sampler=DiscreteTimestepSampler(1000))
    batch = objective.prepare(latents, noise, generator=torch.Generator().manual_seed(3))

    scheduler = v5_ddpm_scheduler(prediction_type)
    t = torch.randint(0, 1000, (3,), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(batch.index, t, rtol=0, atol=0)
    torch.testing.assert_close(batch.timesteps, t.float(), rtol=0, atol=0)
    torch.testing.assert_close(batch.noisy_latents, scheduler.add_noise(latents, noise, t), **TOL)
    target = scheduler.get_velocity(latents, noise, t) if prediction_type == "v_prediction" else noise
    torch.testing.assert_close(batch.target, target, **TOL)
    torch.testing.assert_close(objective.loss(pred, batch), reference_thresholded_mse(pred, target), **TOL)


def test_ddpm_prediction_type_override_and_bad_steps():
    assert DDPMObjective(v5_ddpm_scheduler("v_prediction"), prediction_type="epsilon").prediction_type == "epsilon"
    with pytest.raises(ValueError, match="train_sampling_steps=2000"):
        DDPMObjective(v5_ddpm_scheduler(), sampler=DiscreteTimestepSampler(2000))
    with pytest.raises(ValueError, match="sample"):
        DDPMObjective(DDPMScheduler(prediction_type="sample"))


def test_flow_and_ddpm_score_only_the_first_half_of_a_learned_sigma_output():
    latents, noise, pred = tensors(2)
    for objective in (FlowMatchingObjective(v51_scheduler()), DDPMObjective(v5_ddpm_scheduler())):
        batch = objective.prepare(latents, noise, generator=torch.Generator().manual_seed(0))
        doubled = torch.cat([pred, torch.full_like(pred, 1e3)], dim=1)
        torch.testing.assert_close(objective.loss(doubled, batch), objective.loss(pred, batch), rtol=0, atol=0)
        with pytest.raises(ValueError, match="channels"):
            objective.loss(pred[:, :3], batch)


def test_motion_sub_loss_mixes_the_frame_difference_mse():
    latents, noise, pred = tensors(3)
    plain = DDPMObjective(v5_ddpm_scheduler())
    moving = DDPMObjective(v5_ddpm_scheduler(), motion_sub_loss_ratio=0.25)
    batch = plain.prepare(latents, noise, generator=torch.Generator().manual_seed(0))
    motion = F.mse_loss(pred[:, :, 1:] - pred[:, :, :-1], batch.target[:, :, 1:] - batch.target[:, :, :-1])
    expected = 0.75 * reference_thresholded_mse(pred, batch.target) + 0.25 * motion
    torch.testing.assert_close(moving.loss(pred, batch), expected, **TOL)
    # Two latent frames or fewer: no motion term, as in the original.
    short = plain.prepare(latents[:, :, :2], noise[:, :, :2], generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(moving.loss(pred[:, :, :2], short), plain.loss(pred[:, :, :2], short), **TOL)


def test_noise_share_in_frames_is_the_sequential_recurrence():
    noise = torch.randn(2, 3, 6, 4, 4, generator=torch.Generator().manual_seed(0))
    shared = share_noise_in_frames(noise, 0.5)
    expected = noise.clone()
    for i in range(1, 6):
        expected[:, :, i] = 0.5 * expected[:, :, i - 1] + 0.5 * noise[:, :, i]
    torch.testing.assert_close(shared, expected, **TOL)
    assert torch.equal(shared[:, :, 0], noise[:, :, 0])
    # Adjacent frames become correlated (about 0.58 for r = 0.5); independent noise is near 0.
    big = share_noise_in_frames(torch.randn(1, 1, 8, 256, 256, generator=torch.Generator().manual_seed(1)), 0.5)
    correlation = torch.corrcoef(torch.stack([big[0, 0, 3].flatten(), big[0, 0, 4].flatten()]))[0, 1]
    assert 0.5 < correlation < 0.66


def test_noise_offset_and_input_perturbation():
    latents = torch.zeros(4, 3, 5, 8, 8)
    options = NoiseOptions(offset=0.5, share_in_frames=False)
    objective = DDPMObjective(v5_ddpm_scheduler("epsilon"), noise_options=options)
    noise = objective.sample_noise(latents, generator=torch.Generator().manual_seed(0))
    plain = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    shift = noise - plain  # offset x N(0,1), one value per sample and channel
    assert torch.allclose(shift, shift[:, :, :1, :1, :1].expand_as(shift))
    assert shift.abs().max() > 0.05

    perturbed = DDPMObjective(v5_ddpm_scheduler("epsilon"), noise_options=NoiseOptions(input_perturbation=0.1))
    batch = perturbed.prepare(latents, plain, generator=torch.Generator().manual_seed(5))
    assert torch.equal(batch.target, plain)  # the target keeps the clean noise
    generator = torch.Generator().manual_seed(5)
    t = torch.randint(0, 1000, (4,), generator=generator)
    input_noise = plain + 0.1 * torch.randn(plain.shape, generator=generator)
    torch.testing.assert_close(batch.noisy_latents, perturbed.scheduler.add_noise(latents, input_noise, t), **TOL)
