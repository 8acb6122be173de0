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
    """Libraries log at ``--log_level`` (Trainer's rule: warnings by default); our own lines also at INFO on the
    main process, since they say what the run does (loss type, bucket plan, files written). Other processes
    print errors only (``--log_level_replica``): their notices would repeat rank 0's."""
    level = args.get_process_log_level()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    ours = min(level, logging.INFO) if args.log_level == "passive" and args.should_log else level
    logger.setLevel(ours)
    transformers.utils.logging.set_verbosity(level)
