"""``EasyAnimateTrainingArguments``: the LoRA trainer's config, the shared arguments plus the diffusion objective.

``--loss_type`` picks the objective (flow for V5.1, ddpm for V5/V4, sigma for V3/V2; by default the one the
checkpoint was trained with) and the rest shape it. The control trainer trains with the same objective and extends
this config; the reward trainer does not and extends :class:`~hf_easyanimate.config.BaseTrainingArguments`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..config.data import DataArguments
from ..config.model import ModelArguments
from ..config.parser import parse_dataclasses, parse_flag_values
from ..config.rules import check_combination, require
from ..config.training import BaseTrainingArguments

logger = logging.getLogger(__name__)

LOSS_TYPES = ("flow", "ddpm", "sigma")
WEIGHTING_SCHEMES = ("none", "sigma_sqrt", "logit_normal", "mode", "cosmap")
OBJECTIVE_FLAGS = (
    "loss_type", "prediction_type", "train_sampling_steps", "uniform_sampling", "weighting_scheme", "logit_mean",
    "logit_std", "mode_scale", "snr_loss", "noise_offset", "input_perturbation", "noise_share_in_frames",
    "noise_share_in_frames_ratio", "motion_sub_loss", "motion_sub_loss_ratio",
)


@dataclass
class EasyAnimateTrainingArguments(BaseTrainingArguments):
    """``TrainingArguments`` plus EasyAnimate's objective, memory and validation flags (the LoRA trainer's config)."""

    flag_sections: ClassVar[dict[str, tuple[str, ...]]] = {"objective": OBJECTIVE_FLAGS}

    loss_type: str | None = field(
        default=None,
        metadata={
            "help": "Diffusion objective: 'flow' (V5.1), 'ddpm' (V5, V4) or 'sigma' (V3, V2). Default: the one the "
            "checkpoint was trained with, read from its scheduler (FlowMatch: flow; DDPM/DDIM: ddpm; the V3/V2 "
            "learned-variance transformers: sigma)."
        },
    )
    prediction_type: str | None = field(
        default=None,
        metadata={
            "help": "ddpm only: 'epsilon' or 'v_prediction'; default: the checkpoint scheduler's (the original "
            "always used the scheduler's). No effect with flow or sigma."
        },
    )
    train_sampling_steps: int = field(
        default=1000,
        metadata={
            "help": "ddpm and sigma: size of the discrete timestep range [0, N) (sigma: the diffusion is respaced "
            "to N steps; ddpm: the indices are the DDPM timesteps). No effect with flow."
        },
    )
    uniform_sampling: bool = field(
        default=False,
        metadata={
            "help": "Split timesteps across ranks so each global batch spans [0, train_sampling_steps). "
            "No effect with --loss_type flow (as in the original, flow draws its own timesteps)."
        },
    )
    weighting_scheme: str = field(
        default="none",
        metadata={
            "help": f"flow only: timestep density / loss weighting, one of {WEIGHTING_SCHEMES}.",
        },
    )
    logit_mean: float = field(
        default=0.0,
        metadata={"help": "flow, logit_normal scheme: mean."},
    )
    logit_std: float = field(
        default=1.0,
        metadata={"help": "flow, logit_normal scheme: standard deviation."},
    )
    mode_scale: float = field(default=1.29, metadata={"help": "flow, mode scheme: scale."})
    snr_loss: bool = field(
        default=False,
        metadata={
            "help": "sigma only: compare x0 instead of epsilon for timesteps <= 249. No effect otherwise.",
        },
    )
    noise_offset: float = field(
        default=0.0,
        metadata={
            "help": "Offset noise: add noise_offset x N(0, 1) per sample and channel, constant over frames and "
            "pixels. 0 disables (the original parses this flag but never applies it)."
        },
    )
    input_perturbation: float = field(
        default=0.0,
        metadata={
            "help": "Noise the model input with noise + input_perturbation x N(0, 1) while the target keeps the "
            "clean noise. 0 disables (the original parses this flag but never applies it)."
        },
    )
    noise_share_in_frames: bool = field(
        default=False,
        metadata={"help": "Correlate noise across frames: e_i = r * e_(i-1) + (1 - r) * e_i."},
    )
    noise_share_in_frames_ratio: float = field(
        default=0.5,
        metadata={"help": "r of --noise_share_in_frames."},
    )
    motion_sub_loss: bool = field(
        default=False,
        metadata={
            "help": "flow and ddpm: add a loss on frame differences (clips with more than 2 latent frames). "
            "No effect with sigma."
        },
    )
    motion_sub_loss_ratio: float = field(
        default=0.25,
        metadata={"help": "Weight of --motion_sub_loss."},
    )
    eval_timesteps: int = field(
        default=4,
        metadata={
            "help": "Deterministic validation loss: each eval clip is scored at this many timesteps spread evenly "
            "over the training range, with noise from --seed, so eval_loss is comparable across steps. It is also "
            "split by noise level into eval_loss_low_noise / _mid_noise / _high_noise (thirds of the range; the "
            "default 4 timesteps put 1, 2 and 1 in them)."
        },
    )

    POSITIVE = (*BaseTrainingArguments.POSITIVE, "train_sampling_steps", "logit_std", "eval_timesteps")
    NON_NEGATIVE = (*BaseTrainingArguments.NON_NEGATIVE, "noise_offset", "input_perturbation")

    def check_flags(self) -> None:
        require(self.loss_type in (None, *LOSS_TYPES), "loss_type", f"must be one of {LOSS_TYPES}", self.loss_type)
        require(self.weighting_scheme in WEIGHTING_SCHEMES, "weighting_scheme", f"must be one of {WEIGHTING_SCHEMES}",
                self.weighting_scheme)
        require(self.prediction_type in (None, "epsilon", "v_prediction"), "prediction_type",
                "must be 'epsilon' or 'v_prediction'", self.prediction_type)
        super().check_flags()
        require(
            self.eval_timesteps <= self.train_sampling_steps, "eval_timesteps",
            f"must be <= --train_sampling_steps ({self.train_sampling_steps})", self.eval_timesteps,
        )
        for key in ("motion_sub_loss_ratio", "noise_share_in_frames_ratio"):
            value = getattr(self, key)
            require(0.0 <= value <= 1.0, key, "must be in [0, 1]", value)
        if self.loss_type is not None:  # else resolved from the checkpoint, then checked (assembly/preflight.py)
            self.warn_inapplicable_flags()

    def warn_inapplicable_flags(self) -> None:
        """One warning per flag that the chosen --loss_type ignores (called once the loss type is known)."""
        if self.uniform_sampling and self.loss_type == "flow":
            logger.warning(
                "--uniform_sampling has no effect with --loss_type flow: flow draws its timesteps from "
                "--weighting_scheme's density, as the original trainer does."
            )
        if self.loss_type != "flow" and self.weighting_scheme != "none":
            logger.warning("--weighting_scheme only applies to --loss_type flow; ignored for %s.", self.loss_type)
        if self.snr_loss and self.loss_type != "sigma":
            logger.warning("--snr_loss only applies to --loss_type sigma; ignored for %s.", self.loss_type)
        for key, default in (("logit_mean", 0.0), ("logit_std", 1.0), ("mode_scale", 1.29)):
            if self.loss_type != "flow" and getattr(self, key) != default:
                logger.warning("--%s only applies to --loss_type flow; ignored for %s.", key, self.loss_type)
        if self.prediction_type is not None and self.loss_type != "ddpm":
            logger.warning("--prediction_type only applies to --loss_type ddpm; ignored for %s.", self.loss_type)
        if self.train_sampling_steps != 1000 and self.loss_type == "flow":
            logger.warning(
                "--train_sampling_steps has no effect with --loss_type flow (the scheduler's grid is used)."
            )
        if self.motion_sub_loss and self.loss_type == "sigma":
            logger.warning("--motion_sub_loss has no effect with --loss_type sigma, as in the original trainer.")


ARGUMENT_CLASSES = (ModelArguments, DataArguments, EasyAnimateTrainingArguments)


def parse_args(argv: Sequence[str] | None = None) -> tuple[ModelArguments, DataArguments, EasyAnimateTrainingArguments]:
    """``[RECIPE.yaml | --config RECIPE.yaml] [--flag value ...]`` -> the LoRA trainer's three dataclasses."""
    model_args, data_args, training_args = parse_dataclasses(argv, ARGUMENT_CLASSES)
    check_combination(model_args, data_args, training_args)
    return model_args, data_args, training_args


def parse_values(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Every flag's value after recipe + command line, without building the dataclasses (see parse_flag_values)."""
    return parse_flag_values(argv, ARGUMENT_CLASSES)


def flags_markdown() -> str:
    """docs/flags.md: every flag of the LoRA trainer (``python -m hf_easyanimate.trainers > docs/flags.md``)."""
    from ..config.flagdocs import render

    return render(ARGUMENT_CLASSES)
