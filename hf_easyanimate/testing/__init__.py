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

from ..utils.media import write_mp4  # noqa: F401  (re-exported: testing.write_mp4 predates media.py)

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
    t5_hidden_size: int = 24  # V5 only: T5 width, != BERT width so a mix-up fails loudly
    vocab_size: int = 400
    vae_channels: tuple[int, ...] = (8, 8, 16, 16)


SUPPORTED_TINY_VERSIONS = ("v5.1", "v5")
# V5 ships BERT (HunyuanDiT's, 77 tokens) and mT5 (256 tokens) tokenizers; the tiny ones keep those limits.
BERT_MAX_LENGTH = 77
T5_MAX_LENGTH = 256


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


def _corpus_words() -> list[str]:
    return sorted({word for line in _corpus() for word in line.split()})


def build_tiny_bert_tokenizer():
    """A WordPiece BERT tokenizer over the demo vocabulary (plus single letters), built locally."""
    from transformers import BertTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_corpus_words(), *letters, *(f"##{c}" for c in letters)]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return BertTokenizer(vocab=vocab, model_max_length=BERT_MAX_LENGTH)


def build_tiny_t5_tokenizer():
    """A Unigram T5 tokenizer over the demo vocabulary (plus single letters), built locally."""
    from transformers import T5Tokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(f"\u2581{word}", -1.0) for word in _corpus_words()] + [(c, -5.0) for c in letters]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=T5_MAX_LENGTH)


def build_tiny_bert_t5(bert_tokenizer, t5_tokenizer, config: TinyModelConfig):
    """Tiny random BERT (``text_encoder``) and T5 encoder (``text_encoder_2``) for the V5 layout."""
    from transformers import BertConfig, BertModel, T5Config, T5EncoderModel

    bert = BertModel(BertConfig(
        vocab_size=len(bert_tokenizer), hidden_size=config.text_hidden_size, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=2 * config.text_hidden_size, max_position_embeddings=128,
    )).eval()
    t5 = T5EncoderModel(T5Config(
        vocab_size=len(t5_tokenizer), d_model=config.t5_hidden_size, d_kv=8, d_ff=2 * config.t5_hidden_size,
        num_layers=2, num_heads=2, pad_token_id=t5_tokenizer.pad_token_id, eos_token_id=t5_tokenizer.eos_token_id,
        decoder_start_token_id=t5_tokenizer.pad_token_id,
    )).eval()
    return bert, t5


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
    from diffusers import (
        AutoencoderKLMagvit,
        DDIMScheduler,
        EasyAnimateTransformer3DModel,
        FlowMatchEulerDiscreteScheduler,
    )

    if version not in SUPPORTED_TINY_VERSIONS:
        raise ValueError(f"tiny model version {version!r} is not available; supported: "
                         f"{', '.join(SUPPORTED_TINY_VERSIONS)}, v4, v3, v2")
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
    text = {}
    if version == "v5.1":
        text["tokenizer"] = build_tiny_tokenizer(config.vocab_size)
        text["text_encoder"] = build_tiny_qwen2_vl(text["tokenizer"], config)
    else:
        text["tokenizer"], text["tokenizer_2"] = build_tiny_bert_tokenizer(), build_tiny_t5_tokenizer()
        text["text_encoder"], text["text_encoder_2"] = build_tiny_bert_t5(text["tokenizer"], text["tokenizer_2"], config)
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
        text_embed_dim_t5=config.t5_hidden_size if version == "v5" else None,
        add_norm_text_encoder=False,
        after_norm=False,
        resize_inpaint_mask_directly=True,
        enable_text_attention_mask=version == "v5.1",
        add_noise_in_inpaint_model=version == "v5.1",
    )
    if version == "v5.1":
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    else:  # the V5 release's scheduler config: v-prediction DDIM with zero terminal SNR
        scheduler = DDIMScheduler(
            num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing",
            clip_sample=False, set_alpha_to_one=True, steps_offset=0,
        )
    return {"vae": vae, **text, "transformer": transformer, "scheduler": scheduler}


def _update_json(path: str, **entries) -> None:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    data.update(entries)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)


def _write_v5_repo(output_dir: str, components: dict, inpaint: bool) -> None:
    """The V5 release layout: BERT + T5 encoders, DDIM scheduler, transformer weights with original names.

    diffusers has no V5 pipeline class, so components are saved one by one and ``model_index.json`` names
    EasyAnimate's own multi-text-encoder pipeline, as the released repos do.
    """
    import diffusers
    from safetensors.torch import save_file

    from ..models.loading import convert_diffusers_transformer_keys

    os.makedirs(output_dir, exist_ok=True)
    for name, component in components.items():
        component.save_pretrained(os.path.join(output_dir, name))
    weights = os.path.join(output_dir, "transformer", "diffusion_pytorch_model.safetensors")
    state_dict = {k: v.contiguous() for k, v in components["transformer"].state_dict().items()}
    save_file(convert_diffusers_transformer_keys(state_dict), weights, metadata={"format": "pt"})
    index = {
        "_class_name": "EasyAnimatePipeline_Multi_Text_Encoder" + ("_Inpaint" if inpaint else ""),
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "BertModel"],
        "text_encoder_2": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "BertTokenizer"],
        "tokenizer_2": ["transformers", "T5Tokenizer"],
        "transformer": ["diffusers", "EasyAnimateTransformer3DModel"],
        "vae": ["diffusers", "AutoencoderKLMagvit"],
    }
    with open(os.path.join(output_dir, "model_index.json"), "w", encoding="utf-8") as handle:
        json.dump(index, handle, indent=2)


def make_tiny_model(output_dir: str, version: str = "v5.1", inpaint: bool = False, seed: int = 0) -> str:
    """Write a tiny random EasyAnimate repo in the layout of the real ``version`` release; returns ``output_dir``.

    v5.1: diffusers layout (Qwen2-VL), loadable by diffusers' EasyAnimate pipelines. v5: the V5 release layout
    (BERT + T5, original transformer key names), loadable by :func:`hf_easyanimate.models.loading.load_components`.
    v4 / v3 / v2: the original layouts of those releases (:mod:`hf_easyanimate.testing.legacy`).
    """
    from diffusers import EasyAnimateInpaintPipeline, EasyAnimatePipeline
    from transformers import Qwen2Tokenizer

    from .legacy import LEGACY_TINY_VERSIONS, make_tiny_legacy_model

    if version in LEGACY_TINY_VERSIONS:
        return make_tiny_legacy_model(output_dir, version=version, inpaint=inpaint, seed=seed)
    components = build_tiny_components(version=version, inpaint=inpaint, seed=seed)
    if version == "v5":
        _write_v5_repo(output_dir, components, inpaint)
        _mark_magvit_cache(output_dir)
        return output_dir
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
    _mark_magvit_cache(output_dir)
    return output_dir


def _mark_magvit_cache(output_dir: str) -> None:
    """Real V5/V5.1 VAE configs carry ``cache_mag_vae: true`` (frame 0 encoded alone); the inpaint pipeline
    reads it to resize masks, so the tiny repos carry it too."""
    _update_json(os.path.join(output_dir, "vae", "config.json"), cache_mag_vae=True)


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

def build_tiny_clip_tokenizer():
    """A CLIP BPE tokenizer whose vocabulary is the byte alphabet (every word splits into characters), built here.

    CLIP's tokenizer lower-cases and marks word ends with ``</w>``; with no merges each character is a token, which
    is all a random tiny model needs, and it saves in the real format (vocab.json, merges.txt, tokenizer.json).
    """
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = ["<|startoftext|>", "<|endoftext|>", *alphabet, *(f"{character}</w>" for character in alphabet)]
    return CLIPTokenizer(vocab={token: index for index, token in enumerate(tokens)}, merges=[], model_max_length=77)


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
