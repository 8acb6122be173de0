"""Fitting a large model on a small GPU: narrower weight storage, block swapping, activation offload, and the
planner that predicts peak memory (``hf-easyanimate plan-memory``). See docs/memory.md."""

from .block_swap import BlockSwapper, swap_blocks
from .offload import activation_offload
from .planner import MemoryPlan, PlannerError, RunShape, find_transformer_config, plan
from .storage import storage_dtype, store_weights, stored_bytes

__all__ = [
    "BlockSwapper",
    "MemoryPlan",
    "PlannerError",
    "RunShape",
    "activation_offload",
    "find_transformer_config",
    "plan",
    "store_weights",
    "stored_bytes",
    "storage_dtype",
    "swap_blocks",
]
