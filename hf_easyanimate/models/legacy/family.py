"""EasyAnimate V4 (HunyuanDiT video), V3 and V2 (PixArt-alpha with motion modules): the families of the ports."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import torch

from ...data.buckets import FrameGrid
from ..errors import IncompatibleFlagError, ModelLoadError, UnsupportedModelError
from ..family import CheckpointInfo, LoadOptions, ModelFamily
from ..location import has_component

if TYPE_CHECKING:
    from ..components import EasyAnimateComponents


class LegacyFamily(ModelFamily):
    """A V2-V4 release: our ports of its transformer and MagVIT encoder, its own text encoders and objective."""

    can_decode = False  # the VAE decoder is not ported: nothing can be sampled, only trained
    default_latent_channels = 4

    def __init__(self, version: str, summary: str, recipe: str, objective: str, text_encoders: tuple,
                 encoder_parameters: float, default_grid: FrameGrid, has_inpaint_release: bool = True,
                 learns_sigma_by_default: bool = False, clip_switch: str | None = None,
                 told_by_block_type: bool = False) -> None:
        self.version, self.title, self.summary, self.recipe = version, f"EasyAnimate {version.upper()}", summary, recipe
        self.objective = objective  # the original's --loss_type for this release
        self.text_encoders = text_encoders  # (encoder folder, class, tokenizer folder, class), in order
        self.encoder_parameters = encoder_parameters
        self.default_grid = default_grid
        self.has_inpaint_release = has_inpaint_release
        self.learns_sigma_by_default = learns_sigma_by_default  # V4: HunyuanDiT's learn_sigma default
        self.clip_switch = clip_switch  # the config key that turns the InP CLIP branch off (None: always on)
        self.told_by_block_type = told_by_block_type  # V2 and V3 share a class; basic_block_type tells them apart

    def matches(self, transformer_config: dict, model_index: dict | None) -> bool:
        from .loading import version_of_config

        return version_of_config(transformer_config) == self.version

    def describe_config(self, transformer_config: dict) -> str:
        blocks = transformer_config.get("basic_block_type")
        name = transformer_config.get("_class_name")
        return f"{name}, {blocks!r} blocks" if self.told_by_block_type else str(name)

    def frame_grid(self, vae_config: dict | None) -> FrameGrid:
        from .vae import legacy_frame_grid

        return legacy_frame_grid(vae_config) if vae_config else self.default_grid

    def loss_type(self, checkpoint: CheckpointInfo) -> tuple[str, str]:
        if self.objective == "sigma":
            return "sigma", f"{self.title} ({checkpoint.source}) trains with the learned-variance objective"
        return super().loss_type(checkpoint)

    def check_training_setup(self, checkpoint: CheckpointInfo, loss_type: str, train_mode: str) -> None:
        """The objective and inpaint rules of the release, from its configs (before any weights are read)."""
        vae_config = checkpoint.vae_config
        if vae_config is None:
            raise ModelLoadError(f"{checkpoint.path}: cannot read vae/config.json")
        latent = int(vae_config.get("latent_channels", 4))
        config = {**checkpoint.transformer_config,
                  **(checkpoint.original_config.get("transformer_additional_kwargs") or {})}
        self._check_objective(checkpoint, config, latent, loss_type)
        if train_mode == "inpaint":
            self._check_inpaint(checkpoint, config, latent)

    def _check_objective(self, checkpoint: CheckpointInfo, config: dict, latent: int, loss_type: str) -> None:
        if loss_type == "flow":
            raise UnsupportedModelError(
                f"--loss_type flow: {self.title} was trained as a discrete diffusion model ({self.objective}); flow "
                f"matching is the V5.1 objective and would not give a usable LoRA. Use --loss_type "
                f"{self.objective} (or drop --loss_type: it follows the checkpoint)."
            )
        out_channels = config.get("out_channels")
        if out_channels is None and self.learns_sigma_by_default and config.get("learn_sigma", True):
            out_channels = 2 * int(config.get("in_channels") or latent)
        if loss_type == "sigma" and out_channels != 2 * latent:
            raise UnsupportedModelError(
                f"--loss_type sigma needs the learned-variance output (2 x {latent} channels); this {self.title} "
                f"transformer has out_channels={out_channels}. Use --loss_type ddpm."
            )
        if loss_type == "ddpm" and not has_component(checkpoint.path, "scheduler", "scheduler_config.json",
                                                     checkpoint.revision, checkpoint.cache_dir):
            raise ModelLoadError(
                f"--loss_type ddpm builds its noise schedule from {checkpoint.path}/scheduler/scheduler_config.json, "
                f"which is missing; use --loss_type {self.objective}.")

    def _check_inpaint(self, checkpoint: CheckpointInfo, config: dict, latent: int) -> None:
        in_channels = int(config.get("in_channels") or latent)
        if in_channels not in (latent, 3 * latent):
            raise ModelLoadError(
                f"--train_mode inpaint: {self.title} inpaint models take noisy + mask + masked-video latents "
                f"(in_channels {3 * latent}); {checkpoint.path} has in_channels={in_channels}. Use --train_mode normal."
            )
        needs_clip = self.clip_switch is None or config.get(self.clip_switch, True)
        if needs_clip and not has_component(checkpoint.path, "image_encoder", "config.json", checkpoint.revision,
                                            checkpoint.cache_dir):
            raise ModelLoadError(
                f"--train_mode inpaint on {self.title} needs the CLIP image encoder of the reference frame in "
                f"{checkpoint.path}/image_encoder/ (config.json, the weights and preprocessor_config.json, as the -InP "
                "repos ship it); it is missing. Use the complete -InP repo, or train with --train_mode normal."
            )

    def load_components(self, checkpoint: CheckpointInfo, options: LoadOptions) -> EasyAnimateComponents:
        from .components import load_legacy_components

        return load_legacy_components(self, checkpoint, options)

    def transformer_skeleton(self, config: dict) -> torch.nn.Module:
        from accelerate import init_empty_weights

        from .loading import TRANSFORMER_CLASSES, constructor_config

        cls = TRANSFORMER_CLASSES[config["_class_name"]]
        with init_empty_weights():
            return cls.from_config(constructor_config(cls, config, config["_class_name"]))

    def vae_skeleton(self, config: dict) -> torch.nn.Module:
        from accelerate import init_empty_weights

        from .loading import constructor_config
        from .vae import LegacyMagvitVAE

        with init_empty_weights():
            return LegacyMagvitVAE.from_config(constructor_config(LegacyMagvitVAE, config, "vae/config.json"))

    def prompt_encoder(self, components: EasyAnimateComponents, max_length: int,
                       use_attention_mask: bool | None = None):
        from ..text import DualPromptEncoder, T5PromptEncoder

        mask = bool(components.text_attention_mask) if use_attention_mask is None else use_attention_mask
        if components.text_encoder_2 is not None:
            return DualPromptEncoder(components.tokenizer, components.text_encoder, components.tokenizer_2,
                                     components.text_encoder_2, max_length=max_length, use_attention_mask=mask)
        return T5PromptEncoder(components.tokenizer, components.text_encoder, max_length, use_attention_mask=mask)

    def check_prompt_lengths(self, components: EasyAnimateComponents, prompt_encoder, max_length: int) -> None:
        """V4 pads its text embeddings with learned tokens of a fixed length (``text_len`` / ``text_len_t5``): the
        prompt encoders must produce exactly those lengths, or the first step would fail on a shape."""
        config = components.transformer.config
        if "text_len" not in config or components.tokenizer_2 is None:
            return
        lengths = (prompt_encoder.effective_max_length(components.tokenizer, max_length),
                   prompt_encoder.effective_max_length(components.tokenizer_2, max_length))
        expected = (int(config["text_len"]), int(config["text_len_t5"]))
        if lengths != expected:
            raise IncompatibleFlagError(
                f"--tokenizer_max_length {max_length}: this {self.title} transformer takes exactly {expected[0]} BERT "
                f"and {expected[1]} T5 tokens (text_len / text_len_t5 of its config), the tokenizers would give "
                f"{lengths[0]} and {lengths[1]}; use --tokenizer_max_length {max(expected)}."
            )

    def dummy_prompt(self, config, batch: int, text_tokens: int, dtype: torch.dtype, device) -> dict:
        new = partial(torch.zeros, dtype=dtype, device=device)
        ones = partial(torch.ones, dtype=torch.long, device=device)
        if "text_len" in config:  # V4: BERT + T5 of fixed lengths
            return {"encoder_hidden_states": new(batch, config["text_len"], config["cross_attention_dim"]),
                    "encoder_attention_mask": ones(batch, config["text_len"]),
                    "encoder_hidden_states_t5": new(batch, config["text_len_t5"], config["cross_attention_dim_t5"]),
                    "encoder_attention_mask_t5": ones(batch, config["text_len_t5"])}
        return {"encoder_hidden_states": new(batch, text_tokens, config["caption_channels"]),  # V2 / V3: T5
                "encoder_attention_mask": ones(batch, text_tokens)}

    def dummy_reference(self, transformer: torch.nn.Module, batch: int, dtype: torch.dtype, device) -> dict:
        """CLIP features of ViT-L: the 768-d image embedding (V3) or its 256 patch tokens (V4's resampler)."""
        tokens = getattr(transformer, "clip_tokens", None)
        if tokens is None:
            return {}
        features = (batch, 768) if transformer.reference_image_features == "image_embeds" \
            else (batch, 256, int(transformer.config["projection_dim"]))
        return {"clip_encoder_hidden_states": torch.zeros(features, dtype=dtype, device=device),
                "clip_attention_mask": torch.ones((batch, tokens), dtype=dtype, device=device)}

    def read_original_config(self, config_path, transformer_config, vae_config, model_index):
        from .original_config import read_legacy_model_config

        return read_legacy_model_config(config_path, transformer_config, vae_config)

    def write_tiny(self, output_dir: str, inpaint: bool = False, seed: int = 0) -> str:
        from .tiny import make_tiny_legacy_model

        return make_tiny_legacy_model(output_dir, version=self.version, inpaint=inpaint, seed=seed)


_T5 = (("text_encoder", "T5EncoderModel", "tokenizer", "T5Tokenizer"),)
_BERT_T5 = (("text_encoder", "BertModel", "tokenizer", "BertTokenizer"),
            ("text_encoder_2", "T5EncoderModel", "tokenizer_2", "T5Tokenizer"))
V4 = LegacyFamily("v4", "HunyuanDiT video (BERT + T5)", "recipes/v4/inp_lora.yaml", "ddpm", _BERT_T5,
                  0.33e9 + 1.67e9 + 0.15e9, FrameGrid(8, False, 2), learns_sigma_by_default=True,
                  clip_switch="enable_clip_in_inpaint")
V3 = LegacyFamily("v3", "PixArt-alpha with motion modules (T5)", "recipes/v3/inp_lora.yaml", "sigma", _T5,
                  4.76e9 + 0.15e9, FrameGrid(8, False, 2), told_by_block_type=True)
V2 = LegacyFamily("v2", "PixArt-alpha with motion modules (T5)", "recipes/v2/lora.yaml", "sigma", _T5,
                  4.76e9 + 0.15e9, FrameGrid(9, False, 3), has_inpaint_release=False, told_by_block_type=True)
FAMILIES = (V4, V3, V2)
