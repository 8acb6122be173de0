"""Tiny random parts that every family's tiny checkpoint shares: tokenizers trained here on the demo captions'
vocabulary (so nothing is downloaded) and tiny text encoders. The families write their checkpoints with them
(``models/*/tiny.py``); :mod:`hf_easyanimate.testing` is the public entry point."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

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


# V5 ships BERT (HunyuanDiT's, 77 tokens) and mT5 (256 tokens) tokenizers; the tiny ones keep those limits.
BERT_MAX_LENGTH = 77


T5_MAX_LENGTH = 256


def corpus() -> list[str]:
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
    backend.train_from_iterator(corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=QWEN_CHAT_TEMPLATE,
        model_max_length=32768,
    )


def corpus_words() -> list[str]:
    return sorted({word for line in corpus() for word in line.split()})


def build_tiny_bert_tokenizer():
    """A WordPiece BERT tokenizer over the demo vocabulary (plus single letters), built locally."""
    from transformers import BertTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *corpus_words(), *letters, *(f"##{c}" for c in letters)]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return BertTokenizer(vocab=vocab, model_max_length=BERT_MAX_LENGTH)


def build_tiny_t5_tokenizer():
    """A Unigram T5 tokenizer over the demo vocabulary (plus single letters), built locally."""
    from transformers import T5Tokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(f"\u2581{word}", -1.0) for word in corpus_words()] + [(c, -5.0) for c in letters]
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


def update_json(path: str, **entries) -> None:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    data.update(entries)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
