"""Prompt encoding per EasyAnimate version: what the transformer's text inputs must look like.

* V5.1 (Qwen2-VL): matches ``EasyAnimatePipeline.encode_prompt`` of diffusers, so training and sampling agree.
* V2 / V3 (T5): the original's single-encoder ``encode_prompt`` (special tokens on, mask on by default).
* V5 and V4 (BERT ``text_encoder`` + T5 ``text_encoder_2``): diffusers has no such pipeline; this follows the original
  trainer's ``encode_prompt`` for multi-text-encoder configs. Each encoder gets its own max length
  ``min(tokenizer.model_max_length, tokenizer_max_length)``, no special tokens are added, and the encoders
  run without attention masks unless asked (the V5 config sets ``enable_text_attention_mask: false``).
  BERT's last hidden state becomes ``encoder_hidden_states``, T5's ``encoder_hidden_states_t5``;
  the transformer projects both and concatenates them along the token axis.
"""

from __future__ import annotations

from typing import Any

import torch


class PromptEncoder:
    """Turns captions into ``encoder_hidden_states`` (+ mask) for V5.1 (Qwen2-VL).

    Each caption goes through the tokenizer's chat template as a user message, is right-padded to
    ``max_length`` and encoded; the second-to-last hidden layer is the embedding, exactly as
    ``EasyAnimatePipeline.encode_prompt`` does.
    """

    def __init__(self, tokenizer: Any, text_encoder: torch.nn.Module, max_length: int = 256) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.max_length = max_length

    @property
    def text_encoders(self) -> list[torch.nn.Module]:
        """The modules to move on and off the accelerator with ``--low_vram``."""
        return [self.text_encoder]

    def _chat(self, prompt: str) -> str:
        # A lone surrogate (an emoji split by a scraper, "\ud83d") makes the Rust tokenizer raise a TypeError;
        # replace it instead of failing the step. Valid text is unchanged.
        prompt = prompt.encode("utf-8", "replace").decode("utf-8")
        message = {"role": "user", "content": [{"type": "text", "text": prompt}]}
        return self.tokenizer.apply_chat_template([message], tokenize=False, add_generation_prompt=True)

    @torch.no_grad()
    def __call__(self, prompts: list[str], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        device = device or self.text_encoder.device
        tokens = self.tokenizer(
            text=[self._chat(prompt) for prompt in prompts],
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            return_attention_mask=True,
            padding_side="right",
            return_tensors="pt",
        ).to(device)
        hidden = self.text_encoder(
            input_ids=tokens.input_ids, attention_mask=tokens.attention_mask, output_hidden_states=True
        ).hidden_states[-2]
        return {"encoder_hidden_states": hidden, "encoder_attention_mask": tokens.attention_mask}


def encode_with_plain_tokenizer(
    tokenizer: Any,
    text_encoder: torch.nn.Module,
    prompts: list[str],
    max_length: int,
    use_attention_mask: bool,
    device: torch.device | str,
    add_special_tokens: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT/T5 branch of the original ``encode_prompt``: last hidden state and the padding mask."""
    tokens = tokenizer(
        prompts,
        padding="max_length",
        max_length=max_length,
        truncation=True,
        return_attention_mask=True,
        add_special_tokens=add_special_tokens,
        return_tensors="pt",
    ).to(device)
    mask = tokens.attention_mask if use_attention_mask else None
    hidden = text_encoder(input_ids=tokens.input_ids, attention_mask=mask)[0]
    return hidden, tokens.attention_mask


class DualPromptEncoder:
    """V5: BERT (``tokenizer``/``text_encoder``) and T5 (``tokenizer_2``/``text_encoder_2``) embeddings.

    Returns ``encoder_hidden_states`` (BERT) and ``encoder_hidden_states_t5`` (T5), each with its mask.
    """

    def __init__(
        self,
        tokenizer: Any,
        text_encoder: torch.nn.Module,
        tokenizer_2: Any,
        text_encoder_2: torch.nn.Module,
        max_length: int = 256,
        use_attention_mask: bool = False,
    ) -> None:
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self.tokenizer_2, self.text_encoder_2 = tokenizer_2, text_encoder_2
        self.max_length = max_length
        self.use_attention_mask = use_attention_mask

    @property
    def text_encoders(self) -> list[torch.nn.Module]:
        return [self.text_encoder, self.text_encoder_2]

    @staticmethod
    def effective_max_length(tokenizer: Any, max_length: int) -> int:
        """The original caps ``--tokenizer_max_length`` by the tokenizer's own ``model_max_length``."""
        model_max = getattr(tokenizer, "model_max_length", None) or max_length
        return int(min(model_max, max_length))

    @torch.no_grad()
    def __call__(self, prompts: list[str], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        device = device or self.text_encoder.device
        bert, bert_mask = encode_with_plain_tokenizer(
            self.tokenizer, self.text_encoder, prompts,
            self.effective_max_length(self.tokenizer, self.max_length), self.use_attention_mask, device,
        )
        t5, t5_mask = encode_with_plain_tokenizer(
            self.tokenizer_2, self.text_encoder_2, prompts,
            self.effective_max_length(self.tokenizer_2, self.max_length), self.use_attention_mask, device,
        )
        return {
            "encoder_hidden_states": bert,
            "encoder_attention_mask": bert_mask,
            "encoder_hidden_states_t5": t5.to(bert.device),
            "encoder_attention_mask_t5": t5_mask.to(bert.device),
        }


class T5PromptEncoder:
    """V2/V3 (one T5 encoder): the original's single-encoder ``encode_prompt``, *with* special tokens (T5's
    closing ``</s>``), each caption padded to ``min(model_max_length, tokenizer_max_length)``; the encoder sees
    the padding mask unless the transformer config says ``enable_text_attention_mask: false``. The transformer
    receives the mask as ``encoder_attention_mask`` either way."""

    def __init__(self, tokenizer: Any, text_encoder: torch.nn.Module, max_length: int = 256,
                 use_attention_mask: bool = True) -> None:
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self.max_length = max_length
        self.use_attention_mask = use_attention_mask

    @property
    def text_encoders(self) -> list[torch.nn.Module]:
        return [self.text_encoder]

    @torch.no_grad()
    def __call__(self, prompts: list[str], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        device = device or self.text_encoder.device
        hidden, mask = encode_with_plain_tokenizer(
            self.tokenizer, self.text_encoder, prompts,
            DualPromptEncoder.effective_max_length(self.tokenizer, self.max_length), self.use_attention_mask, device,
            add_special_tokens=True,
        )
        return {"encoder_hidden_states": hidden, "encoder_attention_mask": mask}


def build_prompt_encoder(components: Any, max_length: int = 256, use_attention_mask: bool | None = None):
    """The prompt encoder for loaded :class:`~hf_easyanimate.models.components.EasyAnimateComponents`: the family's.

    ``use_attention_mask`` (BERT/T5 encoders) defaults to ``components.text_attention_mask``, resolved by the loader
    (False for V5 unless the original YAML given as ``--config_path`` says otherwise).
    """
    return components.family.prompt_encoder(components, max_length, use_attention_mask)
