"""Prompt encoding, matching what diffusers' EasyAnimate pipelines feed the transformer at inference."""

from __future__ import annotations

from typing import Any

import torch


class PromptEncoder:
    """Turns captions into ``encoder_hidden_states`` (+ mask) for one EasyAnimate version.

    V5.1 (Qwen2-VL): each caption goes through the tokenizer's chat template as a user message, is
    right-padded to ``max_length`` and encoded; the second-to-last hidden layer is the embedding,
    exactly as ``EasyAnimatePipeline.encode_prompt`` does, so training and sampling agree.
    """

    def __init__(self, tokenizer: Any, text_encoder: torch.nn.Module, max_length: int = 256) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.max_length = max_length

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
