"""Rendering one clip with a pipeline (optionally from a first frame), at the size a LoRA was trained at."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ..config.data import DataArguments
from ..data.buckets import frames_on_vae_grid
from ..models.lora.files import RECIPE_NAME


def trained_size(lora: str | None) -> tuple[dict, str | None]:
    """(num_frames, height, width) a LoRA was trained at, from the training_recipe.yaml beside it, and that path."""
    if not lora or not os.path.exists(lora):
        return {}, None
    path = os.path.join(lora if os.path.isdir(lora) else os.path.dirname(lora), RECIPE_NAME)
    if not os.path.isfile(path):
        return {}, None
    import yaml

    with open(path, encoding="utf-8") as handle:
        recipe = yaml.safe_load(handle) or {}
    defaults = DataArguments.__dataclass_fields__
    side = int(recipe.get("video_sample_size", defaults["video_sample_size"].default))
    frames = int(recipe.get("video_sample_n_frames", defaults["video_sample_n_frames"].default))
    return {"num_frames": frames_on_vae_grid(frames, 4), "height": side, "width": side}, path


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
