"""Tiny random EasyAnimate repos and synthetic clip sets, for tests, demos and CI (and your own tests).

A tiny repo has the exact on-disk layout of the real release it stands for (``model_index.json``, ``transformer/``,
``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``, ...) so it loads through the same code path; only the
widths are small. Each model family writes its own (``models/*/tiny.py``); nothing is downloaded: the tokenizers
are trained here.
"""

from __future__ import annotations

import json
import os
import random

import numpy as np
import torch

from ..models.easyanimate.tiny import build_tiny_components  # noqa: F401  (public: tiny components in memory)
from ..models.family import families, family_named
from ..models.tiny import (  # noqa: F401  (public: the parts of the tiny repos)
    BERT_MAX_LENGTH,
    COLOURS,
    SHAPES,
    T5_MAX_LENGTH,
    TinyModelConfig,
    build_tiny_bert_t5,
    build_tiny_bert_tokenizer,
    build_tiny_clip_tokenizer,
    build_tiny_qwen2_vl,
    build_tiny_t5_tokenizer,
    build_tiny_tokenizer,
)
from ..utils.media import write_mp4  # noqa: F401  (re-exported: testing.write_mp4 predates utils/media.py)


def make_tiny_model(output_dir: str, version: str | None = None, inpaint: bool = False, seed: int = 0) -> str:
    """Write a tiny random EasyAnimate repo in the layout of the real ``version`` release; returns ``output_dir``.

    ``version`` defaults to the newest release (V5.1: diffusers layout, Qwen2-VL, loadable by diffusers' EasyAnimate
    pipelines). V5: the V5 release layout (BERT + T5, original transformer key names). V4 / V3 / V2: the original
    layouts of those releases.
    """
    family = family_named(version) if version else families()[0]
    return family.write_tiny(output_dir, inpaint=inpaint, seed=seed)


# --- demo data ------------------------------------------------------------------------------------

DEMO_VIDEO_SIZES = ((64, 64), (64, 96), (96, 64), (48, 96), (80, 64), (64, 112))


DEMO_IMAGE_SIZES = ((64, 64), (96, 64), (64, 96), (72, 72))


def _render_frame(height: int, width: int, shape: str, colour: tuple[int, int, int],
                  background: tuple[int, int, int], cx: float, cy: float, radius: int) -> np.ndarray:
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:] = background
    ys, xs = np.ogrid[:height, :width]
    if shape == "disc":
        inside = (ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2
    elif shape == "bar":
        inside = (abs(xs - cx) <= radius // 2) & (abs(ys - cy) <= radius * 2)
    else:
        inside = (abs(xs - cx) <= radius) & (abs(ys - cy) <= radius)
    frame[inside] = colour
    return frame


def make_demo_data(output_dir: str, videos: int = 8, images: int = 4, seed: int = 0,
                   frame_range: tuple[int, int] = (24, 48)) -> str:
    """Write coloured moving-shape clips (mp4), still images (png) and an EasyAnimate ``metadata.json``.

    Captions describe what is drawn, so a model can in principle learn the mapping. Each clip has between
    ``frame_range[0]`` and ``frame_range[1]`` frames. Returns the path of ``metadata.json``; ``file_path`` entries are
    relative to ``output_dir``.
    """
    from PIL import Image

    rng = random.Random(seed)
    os.makedirs(os.path.join(output_dir, "videos"), exist_ok=True)
    os.makedirs(os.path.join(output_dir, "images"), exist_ok=True)
    names = list(COLOURS)
    rows = []
    for index in range(videos):
        height, width = DEMO_VIDEO_SIZES[index % len(DEMO_VIDEO_SIZES)]
        num_frames = rng.randint(*frame_range)
        colour, background = rng.sample(names, 2)
        shape = rng.choice(SHAPES)
        direction = rng.choice(("left", "right", "up", "down"))
        radius = max(4, min(height, width) // 6)
        frames = []
        for step in range(num_frames):
            progress = step / max(1, num_frames - 1)
            cx, cy = width / 2, height / 2
            if direction in ("left", "right"):
                cx = width * (0.15 + 0.7 * (progress if direction == "right" else 1 - progress))
            else:
                cy = height * (0.15 + 0.7 * (progress if direction == "down" else 1 - progress))
            frames.append(_render_frame(height, width, shape, COLOURS[colour], COLOURS[background], cx, cy, radius))
        relative = f"videos/clip_{index:03d}.mp4"
        write_mp4(os.path.join(output_dir, relative), np.stack(frames))
        rows.append({
            "file_path": relative,
            "text": f"a {colour} {shape} moving {direction} on a {background} background",
            "type": "video",
        })
    for index in range(images):
        height, width = DEMO_IMAGE_SIZES[index % len(DEMO_IMAGE_SIZES)]
        colour, background = rng.sample(names, 2)
        shape = rng.choice(SHAPES)
        frame = _render_frame(height, width, shape, COLOURS[colour], COLOURS[background],
                              width * rng.uniform(0.3, 0.7), height * rng.uniform(0.3, 0.7),
                              max(4, min(height, width) // 5))
        relative = f"images/image_{index:03d}.png"
        Image.fromarray(frame).save(os.path.join(output_dir, relative))
        rows.append({"file_path": relative, "text": f"an image of a {colour} {shape} on a {background} background",
                     "type": "image"})
    meta_path = os.path.join(output_dir, "metadata.json")
    with open(meta_path, "w", encoding="utf-8") as handle:
        json.dump(rows, handle, indent=2)
    return meta_path



# --- tiny CLIP (validation metrics) -----------------------------------------------------------------------------

def make_tiny_clip(output_dir: str, seed: int = 0, image_size: int = 32) -> str:
    """Write a tiny random ``CLIPModel`` + ``CLIPProcessor`` (tokenizer built locally) to ``output_dir``."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer = build_tiny_clip_tokenizer()
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 77,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": image_size, "patch_size": 8},
        projection_dim=16,
    )
    CLIPModel(config).eval().save_pretrained(output_dir, safe_serialization=True)
    # The PIL processor: the default one needs torchvision, which this project does not depend on.
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                            crop_size={"height": image_size, "width": image_size})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(output_dir)
    return output_dir


def __getattr__(name: str):  # the tiny parts of 0.1 (QWEN_CHAT_TEMPLATE, ...), now in models/tiny.py
    from ..utils.deprecation import moved_name

    return moved_name(__name__, name)
