"""``--activation_offload``: the tensors autograd saves for backward live in (pinned) CPU memory.

torch's ``save_on_cpu`` does it and composes with gradient checkpointing: a checkpointed block saves its inputs
through the saved-tensor hooks active when it runs, so each block's input goes to the CPU, while the recompute in
backward (outside the context) keeps its short-lived tensors where they are.
"""

from __future__ import annotations

import contextlib

import torch


def activation_offload(enabled: bool, device: torch.device | str) -> contextlib.AbstractContextManager:
    """A context for the forward pass: ``save_on_cpu`` when enabled (pinned when a CUDA device is used)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autograd.graph.save_on_cpu(pin_memory=torch.device(device).type == "cuda")
