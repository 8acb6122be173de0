"""Frozen weights stored in a narrower dtype than they compute in (``--base_weight_dtype``, ``--text_encoder_dtype``).

diffusers' layerwise casting (``apply_layerwise_casting``) does exactly this and holds up under training: each
Linear / Conv keeps its weight in the storage dtype and is cast to the compute dtype by a hook around its forward,
the gradient-checkpointing recompute included; autograd keeps the compute-dtype copy it used until the backward
needs it. So it is used as is. What stays in the compute dtype (the patterns below), because fp8 hurts there and
they are small: normalisation layers and the adaLN modulations inside them (``norm``), patch and position
embeddings, the timestep and text/caption/CLIP projections at the input, the output projection, and every LoRA
layer (they train in their own dtype).

Peak-memory note: the saving holds at the step's peak only with gradient checkpointing; without it autograd keeps
every layer's compute-dtype weight copy until the backward pass.
"""

from __future__ import annotations

import torch

STORAGE_DTYPES = {
    "float8_e4m3fn": "float8_e4m3fn",
    "float8_e5m2": "float8_e5m2",
    "bfloat16": "bfloat16",
    "float16": "float16",
}
KEPT_IN_COMPUTE_DTYPE = (
    "norm", "pos_embed", "patch_embed", "^proj_in$", "^proj_out$", "^proj$", "time_embedding", "time_extra_emb",
    "adaln_single", "text_proj", "caption_projection", "text_embedder", "clip_projection", "lora_",
)
# T5's feed-forward casts its input to ``wo.weight.dtype`` before calling ``wo``: with ``wo`` stored in fp8 that
# would feed fp8 activations to the cast-back weight. ``wo`` therefore stays in the compute dtype.
TEXT_ENCODER_KEPT = (*KEPT_IN_COMPUTE_DTYPE, r"\.wo$", "embed_tokens", "shared", "lm_head")


class StorageDtypeError(ValueError):
    """The storage dtype cannot be used here; the message names the flag and the fix."""


def storage_dtype(name: str | None) -> torch.dtype | None:
    """The torch dtype for ``--base_weight_dtype`` / ``--text_encoder_dtype`` (None: store as loaded)."""
    if not name or name in ("none", "auto"):
        return None
    if name not in STORAGE_DTYPES:
        raise StorageDtypeError(f"storage dtype {name!r}: one of {', '.join(STORAGE_DTYPES)}")
    dtype = getattr(torch, STORAGE_DTYPES[name], None)
    if dtype is None:
        raise StorageDtypeError(
            f"storage dtype {name}: this torch build ({torch.__version__}) has no {name}; float8 storage needs torch "
            ">= 2.1. Use --base_weight_dtype bfloat16, or upgrade torch."
        )
    return dtype


def store_weights(module: torch.nn.Module, storage: torch.dtype, compute: torch.dtype,
                  keep: tuple[str, ...] = KEPT_IN_COMPUTE_DTYPE) -> torch.nn.Module:
    """Keep ``module``'s Linear / Conv weights in ``storage`` and compute in ``compute`` (see the module docstring).

    Apply before LoRA layers are added (they are skipped by name anyway). ``keep``: module-name patterns that stay
    in the compute dtype (``TEXT_ENCODER_KEPT`` for text encoders).
    """
    from diffusers.hooks import apply_layerwise_casting

    if storage == compute:
        return torch.nn.Module.to(module, compute)
    torch.nn.Module.to(module, compute)
    apply_layerwise_casting(module, storage_dtype=storage, compute_dtype=compute, skip_modules_pattern=keep,
                            non_blocking=True)
    return module


def parameter_bytes(module: torch.nn.Module, frozen_only: bool = True) -> int:
    """Bytes of ``module``'s parameters as stored right now (frozen ones only by default)."""
    return sum(p.numel() * p.element_size() for p in module.parameters() if not (frozen_only and p.requires_grad))


def stored_bytes(module: torch.nn.Module, storage: torch.dtype | None, compute: torch.dtype) -> int:
    """Bytes of ``module``'s frozen parameters once :func:`store_weights` has run (meta-device models included):
    what the planner predicts, module by module, with the same skip patterns as diffusers' layerwise casting."""
    import re

    from diffusers.hooks.layerwise_casting import _GO_LC_SUPPORTED_PYTORCH_LAYERS

    compute_size = torch.empty((), dtype=compute).element_size()
    storage_size = torch.empty((), dtype=storage).element_size() if storage is not None else compute_size
    total, stored = 0, set()
    for name, child in module.named_modules():
        if isinstance(child, _GO_LC_SUPPORTED_PYTORCH_LAYERS) and not any(re.search(p, name)
                                                                        for p in KEPT_IN_COMPUTE_DTYPE):
            for parameter in child.parameters(recurse=False):
                if not parameter.requires_grad:
                    stored.add(id(parameter))
                    total += parameter.numel() * storage_size
    for parameter in module.parameters():
        if not parameter.requires_grad and id(parameter) not in stored:
            total += parameter.numel() * compute_size
    return total
