"""The run's objective (``--loss_type`` on the checkpoint's scheduler config) and optimizer, from the arguments."""

from __future__ import annotations

from ..config import RecipeError
from ..models.components import EasyAnimateComponents, check_learned_sigma_support
from ..objectives import (
    DDPMObjective,
    DiscreteTimestepSampler,
    FlowMatchingObjective,
    LearnedSigmaObjective,
    NoiseOptions,
    Objective,
)


def build_objective(args, components: EasyAnimateComponents) -> Objective:
    """The ``--loss_type`` objective on the checkpoint's scheduler config (as the original builds it).

    flow and ddpm construct their diffusers scheduler from the checkpoint's ``scheduler`` config whatever
    class it names (V5 ships a DDIM config, V5.1 a flow-matching one); ``--uniform_sampling`` splits the
    timestep range by this process's rank.
    """
    from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

    noise = NoiseOptions(
        offset=args.noise_offset,
        input_perturbation=args.input_perturbation,
        share_in_frames=args.noise_share_in_frames,
        share_in_frames_ratio=args.noise_share_in_frames_ratio,
    )
    motion = args.motion_sub_loss_ratio if args.motion_sub_loss and args.loss_type != "sigma" else None
    sampler = DiscreteTimestepSampler(
        num_steps=args.train_sampling_steps,
        uniform_sampling=args.uniform_sampling,
        rank=args.process_index,
        world_size=args.world_size,
    )
    config = components.scheduler.config
    if args.loss_type == "flow":  # a scheduler that disagrees was warned about by the preflight
        return FlowMatchingObjective(
            FlowMatchEulerDiscreteScheduler.from_config(config),
            weighting_scheme=args.weighting_scheme,
            logit_mean=args.logit_mean,
            logit_std=args.logit_std,
            mode_scale=args.mode_scale,
            noise_options=noise,
            motion_sub_loss_ratio=motion,
        )
    if args.loss_type == "ddpm":
        return DDPMObjective(
            DDPMScheduler.from_config(config),
            sampler=sampler,
            prediction_type=args.prediction_type,
            noise_options=noise,
            motion_sub_loss_ratio=motion,
        )
    if args.loss_type == "sigma":
        check_learned_sigma_support(components.transformer, components.vae.config.latent_channels)
        return LearnedSigmaObjective(sampler=sampler, snr_loss=args.snr_loss, noise_options=noise)
    raise RecipeError(f"--loss_type={args.loss_type!r}: must be one of flow, ddpm, sigma")


def optimizer_override(args) -> tuple[type, dict] | None:
    """--use_came: the original's CAME settings (betas 0.9/0.999/0.9999, eps 1e-30/1e-16); else Trainer's --optim."""
    if not args.use_came:
        return None
    from came_pytorch import CAME

    return CAME, {"lr": args.learning_rate, "betas": (0.9, 0.999, 0.9999), "eps": (1e-30, 1e-16)}

