"""EasyAnimate V5.1 and V5 on diffusers' ``EasyAnimateTransformer3DModel`` and ``AutoencoderKLMagvit``.

The two differ in their text encoders (V5.1: one Qwen2-VL; V5: BERT + T5), hence in their prompt encoders and in
whether diffusers' pipelines can sample them (they take one text encoder), and in their scheduler (flow matching
vs v-prediction DDIM), which the objective follows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ...data.buckets import FrameGrid
from ...utils.quiet import register_benign_config_keys
from ..components import check_learned_sigma_support
from ..errors import ModelLoadError
from ..family import CheckpointInfo, LoadOptions, ModelFamily

if TYPE_CHECKING:
    from ..components import EasyAnimateComponents

TRANSFORMER_CLASS = "EasyAnimateTransformer3DModel"
TEMPORAL_COMPRESSION = 4  # every V5/V5.1 MagVIT compresses time by 4 and encodes 4n + 1 frames
# Keys of the original EasyAnimate VAE configs that diffusers' AutoencoderKLMagvit does not declare: every real
# checkpoint has them and they describe what diffusers' class does anyway, so its "will be ignored" notice goes.
register_benign_config_keys("AutoencoderKLMagvit", {"cache_mag_vae", "cache_compression_vae", "slice_compression_vae",
                                                    "slice_mag_vae", "mini_batch_encoder", "mini_batch_decoder"})


def has_two_text_encoders(transformer_config: dict, model_index: dict | None) -> bool:
    """V5 (BERT + T5) rather than V5.1 (Qwen2-VL): from ``model_index.json`` when it says, else the transformer's
    T5 projection (``text_embed_dim_t5``, set only for V5)."""
    if model_index:
        if (model_index.get("text_encoder_2") or [None, None])[1]:
            return True
        encoder = (model_index.get("text_encoder") or [None, None])[1]
        if encoder and encoder.startswith("Qwen2"):
            return False
        if encoder == "BertModel":
            return True
    return bool(transformer_config.get("text_embed_dim_t5"))


class EasyAnimateFamily(ModelFamily):
    """V5.1 or V5: one class, two instances (see the module docstring)."""

    uniform_blocks = True
    names_in_configs = ("v5", "v5.1")  # the YAML of either names the same transformer class
    default_latent_channels = 16

    def __init__(self, version: str, summary: str, two_text_encoders: bool, encoder_parameters: float,
                 text_attention_mask: bool, samples_in_training: bool) -> None:
        self.version, self.title, self.summary = version, f"EasyAnimate {version.upper()}", summary
        self.recipe = f"recipes/{version}/inp_lora.yaml"
        self.two_text_encoders = two_text_encoders
        self.encoder_parameters = encoder_parameters
        self.text_attention_mask = text_attention_mask  # the encoders' default (V5's YAML: enable_text_attention_mask)
        self.samples_in_training = samples_in_training  # diffusers' pipelines take its one text encoder

    def matches(self, transformer_config: dict, model_index: dict | None) -> bool:
        name = transformer_config.get("_class_name", TRANSFORMER_CLASS)
        if name != TRANSFORMER_CLASS:
            return False
        return has_two_text_encoders(transformer_config, model_index) == self.two_text_encoders

    def frame_grid(self, vae_config: dict | None) -> FrameGrid:
        return FrameGrid(TEMPORAL_COMPRESSION)

    def check_training_setup(self, checkpoint: CheckpointInfo, loss_type: str, train_mode: str) -> None:
        """``--loss_type sigma`` cannot work on diffusers' transformer; ``--train_mode inpaint`` needs InP inputs."""
        if checkpoint.vae_config is None:
            raise ModelLoadError(f"{checkpoint.path}: cannot read vae/config.json")
        latent = checkpoint.latent_channels
        config = checkpoint.transformer_config
        if loss_type == "sigma":
            check_learned_sigma_support(config, latent)
        in_channels = config.get("in_channels")
        if train_mode == "inpaint" and in_channels != 2 * latent + 1:
            raise ModelLoadError(
                f"--train_mode inpaint needs an InP checkpoint (transformer in_channels = 2 x {latent} + 1 for "
                f"noisy + mask + masked-video latents); {checkpoint.path} has in_channels={in_channels}. Use an -InP "
                "model or --train_mode normal."
            )

    def load_components(self, checkpoint: CheckpointInfo, options: LoadOptions) -> EasyAnimateComponents:
        from .loading import load_diffusers_components

        return load_diffusers_components(self, checkpoint, options)

    def transformer_skeleton(self, config: dict) -> torch.nn.Module:
        from .loading import transformer_skeleton

        return transformer_skeleton(config)

    def vae_skeleton(self, config: dict) -> torch.nn.Module:
        from .loading import vae_skeleton

        return vae_skeleton(config)

    def prompt_encoder(self, components: EasyAnimateComponents, max_length: int,
                       use_attention_mask: bool | None = None):
        from ..text import DualPromptEncoder, PromptEncoder

        if not self.two_text_encoders:
            return PromptEncoder(components.tokenizer, components.text_encoder, max_length)
        mask = bool(components.text_attention_mask) if use_attention_mask is None else use_attention_mask
        return DualPromptEncoder(components.tokenizer, components.text_encoder, components.tokenizer_2,
                                 components.text_encoder_2, max_length=max_length, use_attention_mask=mask)

    def dummy_prompt(self, config, batch: int, text_tokens: int, dtype: torch.dtype, device) -> dict:
        prompt = {"encoder_hidden_states": torch.zeros(batch, text_tokens, config["text_embed_dim"], dtype=dtype,
                                                       device=device)}
        if config.get("text_embed_dim_t5"):
            prompt["encoder_hidden_states_t5"] = torch.zeros(batch, text_tokens, config["text_embed_dim_t5"],
                                                             dtype=dtype, device=device)
        return prompt

    def read_original_config(self, config_path, transformer_config, vae_config, model_index):
        from .original_config import read_diffusers_model_config

        return read_diffusers_model_config(config_path, transformer_config, vae_config, model_index)

    def write_tiny(self, output_dir: str, inpaint: bool = False, seed: int = 0) -> str:
        from .tiny import write_tiny_repo

        return write_tiny_repo(output_dir, version=self.version, inpaint=inpaint, seed=seed)


V5_1 = EasyAnimateFamily("v5.1", "Qwen2-VL", two_text_encoders=False, encoder_parameters=8.29e9 + 0.21e9,
                         text_attention_mask=True, samples_in_training=True)
V5 = EasyAnimateFamily("v5", "BERT + T5", two_text_encoders=True, encoder_parameters=0.33e9 + 1.67e9 + 0.21e9,
                       text_attention_mask=False, samples_in_training=False)
FAMILIES = (V5_1, V5)
