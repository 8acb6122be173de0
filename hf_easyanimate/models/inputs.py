"""The keywords of one training forward of the transformer, per architecture.

Each ported V2-V4 transformer builds its own (``training_inputs``: text masks, RoPE, image meta sizes, the original
keyword names); diffusers' ``EasyAnimateTransformer3DModel`` (V5 / V5.1) takes the ones below. The trainer asks the
loaded model and never branches on the version.
"""

from __future__ import annotations

import torch


def base_transformer(model: torch.nn.Module) -> torch.nn.Module:
    """The transformer inside peft / DDP / DeepSpeed wrappers."""
    while True:
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        else:
            return model


def transformer_inputs(
    transformer: torch.nn.Module,
    noisy_latents: torch.Tensor,
    timesteps: torch.Tensor,
    prompt: dict[str, torch.Tensor],
    inpaint_latents: torch.Tensor | None = None,
    clip_encoder_hidden_states: torch.Tensor | None = None,
    clip_attention_mask: torch.Tensor | None = None,
) -> dict:
    """Keyword arguments for ``model(**inputs)``; ``transformer`` is the unwrapped model that says how."""
    build = getattr(transformer, "training_inputs", None)
    if build is not None:
        return build(noisy_latents, timesteps, prompt, inpaint_latents=inpaint_latents,
                     clip_encoder_hidden_states=clip_encoder_hidden_states, clip_attention_mask=clip_attention_mask)
    return {
        "hidden_states": noisy_latents,
        "timestep": timesteps,
        "encoder_hidden_states": prompt["encoder_hidden_states"],
        "encoder_hidden_states_t5": prompt.get("encoder_hidden_states_t5"),
        "inpaint_latents": inpaint_latents,
        "return_dict": False,
    }
