"""The diffusers pipelines that sample an EasyAnimate checkpoint: assembled around live training components
(validation sampling), or loaded from a folder or Hub id (``sample``, ``compare``)."""

from __future__ import annotations

import torch


def _mark_magvit_cache(vae: torch.nn.Module) -> None:
    """diffusers' inpaint pipeline reads ``cache_mag_vae`` of the original MagVIT config (the real checkpoints have
    it); diffusers' own AutoencoderKLMagvit always encodes the first frame on its own, which is what True means."""
    if "cache_mag_vae" not in vae.config:
        vae.register_to_config(cache_mag_vae=True)


def training_pipeline(vae, text_encoder, tokenizer, scheduler, transformer: torch.nn.Module):
    """(pipeline, is_inpaint) around ``transformer`` as it is now (LoRA included), with a fresh scheduler (sampling
    sets its timesteps) and no progress bar."""
    from diffusers import EasyAnimateInpaintPipeline, EasyAnimatePipeline

    inpaint = transformer.config.in_channels != transformer.config.out_channels
    if inpaint:
        _mark_magvit_cache(vae)
    pipeline_class = EasyAnimateInpaintPipeline if inpaint else EasyAnimatePipeline
    pipeline = pipeline_class(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer,
                              scheduler=type(scheduler).from_config(scheduler.config))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline, inpaint


def _dtype_keyword(dtype: torch.dtype) -> dict:
    """``dtype=`` where diffusers has it (it deprecates ``torch_dtype=`` with a warning), else ``torch_dtype=``."""
    from diffusers.pipelines import pipeline_utils

    return {"dtype": dtype} if hasattr(pipeline_utils, "_resolve_dtype") else {"torch_dtype": dtype}


def load_pipeline(model: str, image_to_video: bool = False, torch_dtype: torch.dtype = torch.float32,
                  device: str | None = None):
    """The diffusers EasyAnimate pipeline for ``model``; the inpaint pipeline when an image conditions the clip."""
    from diffusers import DiffusionPipeline, EasyAnimateInpaintPipeline

    dtype = _dtype_keyword(torch_dtype)
    if image_to_video:
        pipe = EasyAnimateInpaintPipeline.from_pretrained(model, **dtype)
        if pipe.transformer.config.in_channels == pipe.vae.config.latent_channels:
            raise ValueError(
                f"{model} is a text-to-video checkpoint; --image needs an image-to-video (InP) checkpoint whose "
                "transformer takes mask and masked-video latents"
            )
    else:
        pipe = DiffusionPipeline.from_pretrained(model, **dtype)
    _mark_magvit_cache(pipe.vae)
    return pipe.to(device) if device else pipe
