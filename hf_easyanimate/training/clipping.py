"""The original trainer's gradient clipping: a warm-up of the clip norm and harder clipping of abnormal steps."""

from __future__ import annotations


def linear_decay(initial: float, final: float, total_steps: int, step: int) -> float:
    """``initial`` at step 0 going linearly to ``final`` at ``total_steps``, then ``final``."""
    if step >= total_steps:
        return final
    return initial + (final - initial) / total_steps * max(step, 0)


def original_clip_norm(
    total_norm: float, step: int, max_grad_norm: float, abnormal_norm_clip_start: int, initial_grad_norm_ratio: float
) -> float:
    """The norm EasyAnimate's ``train_lora.py`` clips to at ``step`` (completed optimizer steps) for this gradient.

    The limit starts at ``initial_grad_norm_ratio x max_grad_norm`` and decays linearly to ``max_grad_norm`` over
    ``abnormal_norm_clip_start`` steps. After that, a gradient more than 5x over the limit is treated as
    abnormal and clipped to ``limit / min(norm / limit, 10)``. A negative ``abnormal_norm_clip_start``
    disables both (a constant ``max_grad_norm``, Trainer's behaviour).
    """
    if abnormal_norm_clip_start < 0:
        return max_grad_norm
    limit = linear_decay(
        max_grad_norm * initial_grad_norm_ratio, max_grad_norm, abnormal_norm_clip_start, step
    )
    ratio = total_norm / limit
    if ratio > 5 and step > abnormal_norm_clip_start:
        return limit / min(ratio, 10)
    return limit
