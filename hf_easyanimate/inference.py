"""Use a trained LoRA with diffusers' EasyAnimate pipelines, which have no LoRA loader of their own.

``load_lora_into_pipeline(pipe, path, scale)`` merges the LoRA into ``pipe.transformer``'s weights with the
EasyAnimate rule ``W += scale * (alpha / rank) * up @ down`` (what the original ``merge_lora`` and its ComfyUI
nodes do), so inference runs at the base model's speed. ``unmerge_lora`` subtracts it again; in bfloat16 the
round trip is exact only up to rounding, so reload the pipeline for bit-exact base weights.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch

from .models.lora_files import read_lora
from .models.lora_format import LoraFormatError, LoraWeights

logger = logging.getLogger(__name__)


def _transformer_of(target: Any) -> torch.nn.Module:
    transformer = getattr(target, "transformer", target)
    if not isinstance(transformer, torch.nn.Module):
        raise TypeError(f"expected an EasyAnimate pipeline or transformer, got {type(target).__name__}")
    if hasattr(transformer, "get_base_model"):  # a peft-wrapped transformer: merge into the base layers
        transformer = transformer.get_base_model()
    return transformer


def _as_weights(lora: str | os.PathLike | LoraWeights) -> LoraWeights:
    return lora if isinstance(lora, LoraWeights) else read_lora(os.fspath(lora))


def _plan(transformer: torch.nn.Module, weights: LoraWeights) -> list[tuple[torch.nn.Linear, Any]]:
    """Match every LoRA layer to a Linear of ``transformer`` and check shapes, before any weight changes."""
    modules = dict(transformer.named_modules())
    plan, problems = [], []
    for path, module in sorted(weights.modules.items()):
        layer = modules.get(path)
        layer = layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer
        if not isinstance(layer, torch.nn.Linear):
            problems.append(f"{path}: {'not in the model' if layer is None else type(layer).__name__ + ', not Linear'}")
            continue
        expected = (layer.out_features, layer.in_features)
        if (module.up.shape[0], module.down.shape[1]) != expected:
            problems.append(f"{path}: LoRA is {module.up.shape[0]}x{module.down.shape[1]}, layer is "
                            f"{expected[0]}x{expected[1]}")
            continue
        plan.append((layer, module))
    if problems:
        raise LoraFormatError(
            f"{weights.source or 'LoRA'} does not fit this transformer ({len(problems)} layer(s)); was it trained "
            f"on another model? " + "; ".join(problems[:5])
        )
    return plan


@torch.no_grad()
def _apply(target: Any, lora: str | os.PathLike | LoraWeights, multiplier: float) -> LoraWeights:
    weights = _as_weights(lora)
    for layer, module in _plan(_transformer_of(target), weights):
        weight = layer.weight
        update = module.delta(multiplier).to(weight.device)
        weight.copy_((weight.float() + update).to(weight.dtype))
    return weights


def merge_lora(target: Any, lora: str | os.PathLike | LoraWeights, scale: float = 1.0) -> LoraWeights:
    """Add the LoRA to the transformer's weights (pipeline or transformer); returns the weights merged.

    All layers are checked against the model first: a LoRA that does not fit changes nothing.
    """
    return _apply(target, lora, scale)


def unmerge_lora(target: Any, lora: str | os.PathLike | LoraWeights, scale: float = 1.0) -> LoraWeights:
    """Subtract a LoRA merged with :func:`merge_lora` at the same ``scale``."""
    return _apply(target, lora, -scale)


def load_lora_into_pipeline(pipe: Any, path: str | os.PathLike | LoraWeights, scale: float = 1.0) -> LoraWeights:
    """Load a LoRA (peft adapter or EasyAnimate file; a file, or a training output / checkpoint folder) into
    ``EasyAnimatePipeline`` / ``EasyAnimateInpaintPipeline`` by merging it into ``pipe.transformer``.

    Returns the merged :class:`LoraWeights`; ``unmerge_lora(pipe, weights, scale)`` takes it out again.
    """
    if getattr(pipe, "transformer", None) is None:
        raise TypeError(f"{type(pipe).__name__} has no transformer to load a LoRA into")
    weights = merge_lora(pipe, path, scale)
    logger.info("Merged LoRA %s at scale %g: %s", weights.source, scale, weights.summary())
    return weights


# --- sampling ---------------------------------------------------------------------------------------------------

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
    if "cache_mag_vae" not in pipe.vae.config:
        # diffusers' inpaint pipeline reads this key of the original MagVIT config (the real checkpoints have it);
        # diffusers' own AutoencoderKLMagvit always encodes the first frame on its own, which is what True means.
        pipe.vae.register_to_config(cache_mag_vae=True)
    return pipe.to(device) if device else pipe


def first_frame_conditioning(image, num_frames: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(video, mask_video)`` for image-to-video: the image is frame 0 (kept), every later frame is generated.

    ``video`` is (1, 3, F, H, W) in [0, 1] (the image repeated, as EasyAnimate's own helper does; masked frames are
    replaced by -1 inside the pipeline anyway); ``mask_video`` is (1, 1, F, H, W), 0 = keep, 255 = generate.
    """
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.open(image)
    picture = picture.convert("RGB").resize((width, height), Image.BICUBIC)
    frame = torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1).float() / 255.0
    video = frame[None, :, None].repeat(1, 1, num_frames, 1, 1)
    mask = torch.zeros(1, 1, num_frames, height, width)
    mask[:, :, 1:] = 255
    return video, mask


def render_video(
    pipe,
    prompt: str,
    image=None,
    num_frames: int = 49,
    height: int = 512,
    width: int = 512,
    num_inference_steps: int = 50,
    guidance_scale: float = 6.0,
    negative_prompt: str = "",
    seed: int = 42,
) -> np.ndarray:
    """Render one clip; returns (F, H, W, 3) uint8 frames."""
    temporal = getattr(pipe, "vae_temporal_compression_ratio", 4)
    if num_frames < 1 or (num_frames - 1) % temporal:
        raise ValueError(f"--num_frames={num_frames}: the MagVIT VAE decodes {temporal}n+1 frames "
                         f"(e.g. {max(1, (num_frames - 1) // temporal * temporal + 1)} or "
                         f"{((num_frames - 1) // temporal + 1) * temporal + 1})")
    if height % 16 or width % 16:
        raise ValueError(f"--height/--width must be multiples of 16, got {height}x{width}")
    kwargs: dict[str, Any] = {}
    if image is not None:
        kwargs["video"], kwargs["mask_video"] = first_frame_conditioning(image, num_frames, height, width)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    frames = pipe(
        prompt,
        negative_prompt=negative_prompt,  # diffusers' pipeline needs one with classifier-free guidance
        num_frames=num_frames,
        height=height,
        width=width,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        generator=generator,
        output_type="np",
        **kwargs,
    ).frames[0]
    return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)
