"""Process-level set-up shared by ``train`` and ``precompute``: log verbosity per rank and the frozen dtype.

It lives here, not in ``train.py``, so that the cache command can use it without importing the training
script (``train`` imports the cache, never the other way round).
"""

from __future__ import annotations

import logging

import torch
import transformers

logger = logging.getLogger("hf_easyanimate")


def weight_dtype(args) -> torch.dtype:
    """dtype of the frozen weights: the mixed-precision dtype, since they never receive gradients."""
    if args.bf16:
        return torch.bfloat16
    if args.fp16:
        return torch.float16
    return torch.float32


def setup_logging(args) -> None:
    level = args.get_process_log_level()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logger.setLevel(level)
    transformers.utils.logging.set_verbosity(level)
