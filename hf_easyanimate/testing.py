"""Tiny random EasyAnimate repos and synthetic clip sets, for tests, demos and CI.

The tiny repo has the exact on-disk layout of the real diffusers checkpoints (``model_index.json``,
``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``) so it loads through the
same code path; only the widths are small. Nothing is downloaded: the tokenizer is trained here.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from .media import write_mp4

QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Same message layout as Qwen2-VL's template (text parts only), enough for caption encoding.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
COLOURS = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 220, 40),
    "white": (245, 245, 245),
    "purple": (150, 50, 200),
}
SHAPES = ("square", "bar", "disc")


@dataclass(frozen=True)
class TinyModelConfig:
    """Widths of the tiny model; everything else mirrors the real V5.1 configuration."""

    latent_channels: int = 4
    num_layers: int = 2
    num_attention_heads: int = 2
    attention_head_dim: int = 16  # 3D RoPE splits the head dim 1/4, 3/8, 3/8: keep it a multiple of 16
    text_hidden_size: int = 32
    vocab_size: int = 400
    vae_channels: tuple[int, ...] = (8, 8, 16, 16)


def _corpus() -> list[str]:
    words = list(COLOURS) + list(SHAPES) + [
        "a", "moving", "left", "right", "up", "down", "on", "background", "bouncing", "slowly", "quickly",
        "the", "video", "image", "of", "and", "user", "assistant", "system", "black", "grey",
    ]
    rng = random.Random(0)
    return [" ".join(rng.choice(words) for _ in range(12)) for _ in range(400)]


def build_tiny_tokenizer(vocab_size: int = 400):
    """A byte-level BPE tokenizer with Qwen2's special tokens and chat template, trained locally."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=QWEN_CHAT_TEMPLATE,
        model_max_length=32768,
    )


def build_tiny_qwen2_vl(tokenizer, config: TinyModelConfig):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    token = tokenizer.convert_tokens_to_ids
    hidden = config.text_hidden_size
    model_config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 1024,
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
            "bos_token_id": token("<|endoftext|>"),
            "eos_token_id": token("<|im_end|>"),
            "pad_token_id": token("<|endoftext|>"),
        },
        vision_config={
            "depth": 1,
            "embed_dim": 16,
            "hidden_size": hidden,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "in_chans": 3,
            "temporal_patch_size": 2,
        },
        image_token_id=token("<|image_pad|>"),
        video_token_id=token("<|video_pad|>"),
        vision_start_token_id=token("<|vision_start|>"),
        vision_end_token_id=token("<|vision_end|>"),
    )
    return Qwen2VLForConditionalGeneration(model_config).eval()


def build_tiny_components(version: str = "v5.1", inpaint: bool = False, config: TinyModelConfig | None = None,
                          seed: int = 0) -> dict:
    """Random tiny components keyed like the pipeline's modules."""
    from diffusers import AutoencoderKLMagvit, EasyAnimateTransformer3DModel, FlowMatchEulerDiscreteScheduler

    if version != "v5.1":
        raise ValueError(f"tiny model version {version!r} is not available; supported: v5.1")
    config = config or TinyModelConfig()
    torch.manual_seed(seed)
    latent = config.latent_channels
    vae = AutoencoderKLMagvit(
        in_channels=3,
        latent_channels=latent,
        out_channels=3,
        block_out_channels=list(config.vae_channels),
        layers_per_block=1,
        norm_num_groups=4,
        spatial_group_norm=False,
    ).eval()
    tokenizer = build_tiny_tokenizer(config.vocab_size)
    text_encoder = build_tiny_qwen2_vl(tokenizer, config)
    transformer = EasyAnimateTransformer3DModel(
        num_attention_heads=config.num_attention_heads,
        attention_head_dim=config.attention_head_dim,
        in_channels=2 * latent + 1 if inpaint else latent,
        out_channels=latent,
        patch_size=2,
        sample_width=16,
        sample_height=16,
        num_layers=config.num_layers,
        mmdit_layers=config.num_layers,
        time_embed_dim=32,
        text_embed_dim=config.text_hidden_size,
        add_norm_text_encoder=False,
        after_norm=False,
        resize_inpaint_mask_directly=True,
        enable_text_attention_mask=True,
        add_noise_in_inpaint_model=True,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    return {
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "transformer": transformer,
        "scheduler": scheduler,
    }


def make_tiny_model(output_dir: str, version: str = "v5.1", inpaint: bool = False, seed: int = 0) -> str:
    """Write a tiny random EasyAnimate repo in diffusers layout; returns ``output_dir``."""
    from diffusers import EasyAnimateInpaintPipeline, EasyAnimatePipeline
    from transformers import Qwen2Tokenizer

    components = build_tiny_components(version=version, inpaint=inpaint, seed=seed)
    pipeline_class = EasyAnimateInpaintPipeline if inpaint else EasyAnimatePipeline
    pipeline = pipeline_class(**components)
    pipeline.save_pretrained(output_dir, safe_serialization=True)
    # Save the tokenizer again under Qwen2Tokenizer so model_index.json names the real checkpoints' class.
    tokenizer_dir = os.path.join(output_dir, "tokenizer")
    Qwen2Tokenizer.from_pretrained(tokenizer_dir).save_pretrained(tokenizer_dir)
    index_path = os.path.join(output_dir, "model_index.json")
    with open(index_path, encoding="utf-8") as handle:
        index = json.load(handle)
    index["tokenizer"] = ["transformers", "Qwen2Tokenizer"]
    with open(index_path, "w", encoding="utf-8") as handle:
        json.dump(index, handle, indent=2)
    return output_dir


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


def make_demo_data(output_dir: str, videos: int = 8, images: int = 4, seed: int = 0) -> str:
    """Write coloured moving-shape clips (mp4), still images (png) and an EasyAnimate ``metadata.json``.

    Captions describe what is drawn, so a model can in principle learn the mapping. Returns the
    path of ``metadata.json``; ``file_path`` entries are relative to ``output_dir``.
    """
    from PIL import Image

    rng = random.Random(seed)
    os.makedirs(os.path.join(output_dir, "videos"), exist_ok=True)
    os.makedirs(os.path.join(output_dir, "images"), exist_ok=True)
    names = list(COLOURS)
    rows = []
    for index in range(videos):
        height, width = DEMO_VIDEO_SIZES[index % len(DEMO_VIDEO_SIZES)]
        num_frames = rng.randint(24, 48)
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
