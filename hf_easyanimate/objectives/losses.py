"""Loss terms EasyAnimate adds on top of diffusers' utilities."""

from __future__ import annotations

import torch
import torch.nn.functional as F

OUTLIER_THRESHOLD = 50.0


def thresholded_mse(
    pred: torch.Tensor,
    target: torch.Tensor,
    weighting: torch.Tensor | None = None,
    threshold: float = OUTLIER_THRESHOLD,
) -> torch.Tensor:
    """Mean squared error in float32 that ignores elements with |pred - target| > ``threshold``.

    EasyAnimate zeroes such outliers (rather than clipping them) so one exploding element cannot
    dominate the step; the mean still divides by every element.
    """
    pred, target = pred.float(), target.float()
    squared = F.mse_loss(pred, target, reduction="none")
    squared = squared * ((pred - target).abs() <= threshold).float()
    if weighting is not None:
        squared = squared * weighting.float()
    return squared.mean()


def motion_sub_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE between frame-to-frame differences of prediction and target (latents are B, C, F, H, W)."""
    pred_motion = pred[:, :, 1:].float() - pred[:, :, :-1].float()
    target_motion = target[:, :, 1:].float() - target[:, :, :-1].float()
    return F.mse_loss(pred_motion, target_motion)


def with_motion_loss(loss: torch.Tensor, pred: torch.Tensor, target: torch.Tensor, ratio: float) -> torch.Tensor:
    """(1 - ratio) * loss + ratio * motion_sub_loss, only when there are more than 2 latent frames."""
    if pred.shape[2] <= 2:
        return loss
    return (1.0 - ratio) * loss + ratio * motion_sub_loss(pred, target)
