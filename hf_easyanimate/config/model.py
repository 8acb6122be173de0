"""``ModelArguments``: which checkpoint to fine-tune and how the LoRA adapter is shaped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .rules import require

TRAIN_MODES = ("normal", "inpaint")


@dataclass
class ModelArguments:
    """Which checkpoint to fine-tune and how the LoRA adapter is shaped."""

    flag_group: ClassVar[str] = "model and LoRA"  # its section in --help and docs/flags.md
    no_effect_flags: ClassVar[tuple[str, ...]] = ("trust_remote_code",)  # accepted, never used (the table says so)

    pretrained_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Diffusers-layout EasyAnimate repo (local folder or Hub id), e.g. "
            "alibaba-pai/EasyAnimateV5.1-12b-zh-InP or a folder written by `hf-easyanimate make-tiny-model`."
        },
    )
    revision: str | None = field(default=None, metadata={"help": "Hub revision (branch, tag or commit) of the model."})
    variant: str | None = field(default=None, metadata={"help": "Weights variant to load, e.g. 'fp16'."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models are stored."})
    config_path: str | None = field(
        default=None,
        metadata={
            "help": "The original EasyAnimate model YAML (config/easyanimate_video_*.yaml). Read for what applies to a "
            "diffusers-layout checkpoint; everything else is reported once and ignored."
        },
    )
    transformer_path: str | None = field(
        default=None, metadata={"help": "Optional transformer weights (safetensors) loaded over the base transformer."}
    )
    vae_path: str | None = field(
        default=None, metadata={"help": "Optional VAE weights (safetensors) loaded over the base VAE."}
    )
    rank: int = field(default=128, metadata={"help": "LoRA rank (dimension of the low-rank update)."})
    network_alpha: float = field(
        default=64, metadata={"help": "LoRA alpha; the update is scaled by network_alpha / rank."}
    )
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Override the adapted modules: names (peft matches a name or a dotted suffix, e.g. `to_q to_v`) "
            "or one regex matched against full module paths. Default: every Linear layer of the transformer "
            "(attention, feed-forward, adaLN modulation, time/text embeddings, output head), as the original "
            "LoRANetwork adapts."
        },
    )
    init_lora_weights: str = field(
        default="true",
        metadata={
            "help": "peft LoRA initialisation: 'true' (the original's: kaiming-uniform down, zero up), 'false' "
            "(random up too: the LoRA changes the output from step 0), 'gaussian', 'pissa', ..."
        },
    )
    train_text_encoder: bool = field(
        default=False, metadata={"help": "Also train a LoRA on the text encoder (not supported yet; fails early)."}
    )
    train_mode: str = field(
        default="normal",
        metadata={"help": "'normal' (text-to-video) or 'inpaint' (image-to-video, the InP checkpoints)."},
    )
    tokenizer_max_length: int = field(
        default=256, metadata={"help": "Maximum prompt length in tokens; longer prompts are truncated."}
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={
            "help": "Accepted, never passed on: components are resolved by class name inside diffusers/transformers "
            "(model_index.json), so no code from a model repo ever runs.",
        },
    )

    def __post_init__(self) -> None:
        require(self.rank > 0, "rank", "must be a positive integer", self.rank)
        require(self.network_alpha > 0, "network_alpha", "must be positive", self.network_alpha)
        require(0.0 <= self.lora_dropout < 1.0, "lora_dropout", "must be in [0, 1)", self.lora_dropout)
        require(self.train_mode in TRAIN_MODES, "train_mode", f"must be one of {TRAIN_MODES}", self.train_mode)
        require(self.tokenizer_max_length > 0, "tokenizer_max_length", "must be positive", self.tokenizer_max_length)
        require(
            not self.train_text_encoder,
            "train_text_encoder",
            "text-encoder LoRA is not supported; train the transformer LoRA only",
            self.train_text_encoder,
        )
