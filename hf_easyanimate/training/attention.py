"""Attention kernel choice for ``--enable_xformers_memory_efficient_attention``.

diffusers' EasyAnimate attention processor calls ``torch.nn.functional.scaled_dot_product_attention``
directly, and diffusers' xformers processor does not implement EasyAnimate's joint text/video attention,
so xformers cannot be plugged in. The equivalent is to keep SDPA off its "math" kernel (which materialises
the full attention matrix): on CUDA the step runs with SDPA restricted to flash / memory-efficient / cuDNN.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)


def memory_efficient_sdpa_backends(device: torch.device) -> list | None:
    """SDPA kernels that never materialise the attention matrix on ``device``; None if there are none."""
    if device.type != "cuda":
        return None
    from torch.nn.attention import SDPBackend

    return [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]


def attention_context_factory(enabled: bool, device: torch.device | str) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of context managers to wrap each training step in (forward, backward and recompute)."""
    if not enabled:
        return contextlib.nullcontext
    device = torch.device(device)
    backends = memory_efficient_sdpa_backends(device)
    if backends is None:
        logger.warning(
            "--enable_xformers_memory_efficient_attention: no memory-efficient attention kernel on %s; "
            "EasyAnimate's attention runs on PyTorch's default scaled_dot_product_attention.",
            device.type,
        )
        return contextlib.nullcontext
    from torch.nn.attention import sdpa_kernel

    logger.info(
        "--enable_xformers_memory_efficient_attention: EasyAnimate attention runs on PyTorch SDPA restricted to %s.",
        ", ".join(backend.name for backend in backends),
    )
    return lambda: sdpa_kernel(backends)
