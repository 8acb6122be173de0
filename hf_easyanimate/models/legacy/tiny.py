"""Tiny random EasyAnimate V4 / V3 / V2 repos in the layout of the Hub releases.

What the real repos have, the tiny ones have: the ``model_index.json`` inherited from HunyuanDiT (V4) or
PixArt-alpha (V2/V3), which names the *wrong* classes; ``transformer/config.json`` in the original schema with
the EMA leftovers (``decay``, ``optimization_step``, ...); ``vae/config.json`` in the original MagVIT schema and
VAE weights that include the decoder (ours sets it aside); T5 (V2/V3) or BERT + T5 (V4) text encoders; the
scheduler config of the release; and for InP repos (V3/V4) the CLIP image encoder as a *pickled*
``pytorch_model.bin`` whose ``config.json`` is a full ``CLIPConfig``. The V3 transformer has 16 blocks, so one
U-ViT long skip (pushed by block 0-12, popped from block 15) is really used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch

LEGACY_TINY_VERSIONS = ("v4", "v3", "v2")
EMA_LEFTOVERS = {"decay": 0.9999, "inv_gamma": 1.0, "min_decay": 0.0, "optimization_step": 4400,
                 "power": 0.6666666666666666, "update_after_step": 0, "use_ema_warmup": False}
CLIP_IMAGE_SIZE = 32


@dataclass(frozen=True)
class TinyLegacyConfig:
    latent_channels: int = 4
    heads: int = 2
    head_dim: int = 16  # width 32: the motion module's GroupNorm(32) needs a multiple of 32
    text_hidden_size: int = 32  # BERT (V4) width; the transformer's cross_attention_dim
    t5_hidden_size: int = 24  # T5 width (caption_channels / cross_attention_dim_t5: 8 pooling heads)
    clip_hidden_size: int = 24
    vae_channels: tuple[int, ...] = (8, 8, 16, 16)
    layers: dict | None = None  # per version; default below

    def num_layers(self, version: str) -> int:
        return (self.layers or {}).get(version, {"v4": 4, "v3": 16, "v2": 4}[version])


def vae_config(version: str, config: TinyLegacyConfig) -> dict:
    """The original ``AutoencoderKLMagvit`` config of the release, at tiny widths."""
    modes = {
        "v2": {"slice_mag_vae": True, "mini_batch_encoder": 9, "mini_batch_decoder": 3},
        "v3": {"slice_compression_vae": True, "mini_batch_encoder": 8, "mini_batch_decoder": 2},
        "v4": {"cache_compression_vae": True, "mini_batch_encoder": 8, "mini_batch_decoder": 2},
    }[version]
    channels = list(config.vae_channels)
    return {
        "_class_name": "AutoencoderKLMagvit", "_diffusers_version": "0.27.0", "act_fn": "silu",
        "block_out_channels": channels, "ch": channels[0], "ch_mult": [c // channels[0] for c in channels],
        "down_block_types": ["SpatialDownBlock3D", "SpatialTemporalDownBlock3D", "SpatialTemporalDownBlock3D",
                             "SpatialTemporalDownBlock3D"],
        "up_block_types": ["SpatialUpBlock3D", "SpatialTemporalUpBlock3D", "SpatialTemporalUpBlock3D",
                           "SpatialTemporalUpBlock3D"],
        "in_channels": 3, "out_channels": 3, "latent_channels": config.latent_channels, "layers_per_block": 1,
        "mid_block_attention_type": "3d", "mid_block_use_attention": True, "norm_num_groups": 4,
        "scaling_factor": 0.18215, "slice_mag_vae": False, "slice_compression_vae": False,
        "cache_compression_vae": False, "cache_mag_vae": False, "use_tiling": False, **modes,
    }


def transformer_config(version: str, inpaint: bool, config: TinyLegacyConfig) -> dict:
    """The original transformer config of the release (EMA leftovers included), at tiny widths."""
    from ..tiny import BERT_MAX_LENGTH, T5_MAX_LENGTH

    latent, width = config.latent_channels, config.heads * config.head_dim
    in_channels = 3 * latent if inpaint else latent
    if version == "v4":
        body = {
            "_class_name": "HunyuanTransformer3DModel", "activation_fn": "gelu-approximate",
            "after_norm": False, "attention_head_dim": config.head_dim, "basic_block_type": "basic",
            "cross_attention_dim": config.text_hidden_size, "cross_attention_dim_t5": config.t5_hidden_size,
            "enable_clip_in_inpaint": True, "hidden_size": width, "in_channels": in_channels, "learn_sigma": True,
            "mlp_ratio": 2.0, "n_query": 4, "norm_type": "layer_norm", "num_attention_heads": config.heads,
            "num_layers": config.num_layers("v4"), "out_channels": 2 * latent, "patch_size": 2,
            "pooled_projection_dim": 16, "projection_dim": config.clip_hidden_size,
            "resize_inpaint_mask_directly": False, "sample_size": 16, "text_len": BERT_MAX_LENGTH,
            "text_len_t5": T5_MAX_LENGTH, "time_position_encoding": True, "time_position_encoding_type": "2d_rope",
        }
    else:
        motion = {"attention_block_types": ["Temporal_Self", "Temporal_Self"], "block_size": 1,
                  "num_attention_heads": config.heads, "num_transformer_block": 1,
                  "remove_time_embedding_in_photo": False, "temporal_attention_dim_div": 1,
                  "temporal_position_encoding": True, "temporal_position_encoding_max_len": 64}
        body = {
            "_class_name": "Transformer3DModel", "activation_fn": "gelu-approximate", "after_norm": False,
            "attention_bias": True, "attention_head_dim": config.head_dim, "attention_type": "default",
            "caption_channels": config.t5_hidden_size, "casual_3d": False, "casual_3d_upsampler_index": None,
            "cross_attention_dim": width, "double_self_attention": False, "dropout": 0.0, "enable_uvit": True,
            "fake_3d": False, "in_channels": in_channels, "motion_module_type": "Vanilla",
            "norm_elementwise_affine": False, "norm_eps": 1e-6, "norm_num_groups": 32,
            "norm_type": "ada_norm_single", "num_attention_heads": config.heads, "num_embeds_ada_norm": 1000,
            "num_layers": config.num_layers(version), "num_vector_embeds": None, "only_cross_attention": False,
            "out_channels": 2 * latent, "patch_3d": False, "patch_size": 2, "qk_norm": False, "sample_size": 16,
            "time_patch_size": None, "time_position_encoding_before_transformer": False, "upcast_attention": False,
            "use_linear_projection": False,
        }
        if version == "v3":
            body.update(basic_block_type="global_motionmodule", motion_module_kwargs=None,
                        motion_module_kwargs_even=motion,
                        motion_module_kwargs_odd={**motion, "attention_block_types": ["Temporal_Self", "Global_Self"]})
        else:
            body.update(basic_block_type="motionmodule", motion_module_kwargs=motion)
    return {**body, "_diffusers_version": "0.27.0", **EMA_LEFTOVERS}


MODEL_INDEX = {  # what the releases ship: the index of the pipeline they were started from
    "v4": {"_class_name": "HunyuanDiTPipeline", "_diffusers_version": "0.28.0",
           "feature_extractor": [None, None], "requires_safety_checker": False, "safety_checker": [None, None],
           "scheduler": ["diffusers", "DDPMScheduler"], "text_encoder": ["transformers", "BertModel"],
           "text_encoder_2": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "BertTokenizer"],
           "tokenizer_2": ["transformers", "MT5Tokenizer"], "transformer": ["diffusers", "HunyuanDiT2DModel"],
           "vae": ["diffusers", "AutoencoderKL"]},
    "v3": {"_class_name": "PixArtAlphaPipeline", "_diffusers_version": "0.22.0.dev0",
           "scheduler": ["diffusers", "DPMSolverMultistepScheduler"], "text_encoder": ["transformers", "T5EncoderModel"],
           "tokenizer": ["transformers", "T5Tokenizer"], "transformer": ["diffusers", "Transformer2DModel"],
           "vae": ["diffusers", "AutoencoderKL"]},
}
MODEL_INDEX["v2"] = MODEL_INDEX["v3"]


def _write_json(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)


def _save_weights(state_dict: dict, folder: str, pickle: bool) -> None:
    from safetensors.torch import save_file

    tensors = {key: value.contiguous() for key, value in state_dict.items()}
    if pickle:
        torch.save(tensors, os.path.join(folder, "diffusion_pytorch_model.bin"))
    else:
        save_file(tensors, os.path.join(folder, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})


def _write_image_encoder(folder: str, version: str, config: TinyLegacyConfig) -> None:
    """A pickled CLIP checkpoint with a full CLIPConfig (text tower included), and its image processor."""
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from ..tiny import build_tiny_clip_tokenizer

    tokenizer = build_tiny_clip_tokenizer()
    width = config.clip_hidden_size
    projection = 768 if version == "v3" else width  # V3's clip_projection takes 768-d image embeddings
    clip = CLIPModel(CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": tokenizer.bos_token_id,
                     "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id},
        vision_config={"hidden_size": width, "intermediate_size": 2 * width, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": CLIP_IMAGE_SIZE, "patch_size": 8,
                       "projection_dim": projection},  # the Hub's CLIP configs repeat it here
        projection_dim=projection,
    )).eval()
    os.makedirs(folder, exist_ok=True)
    clip.config.save_pretrained(folder)
    torch.save(clip.state_dict(), os.path.join(folder, "pytorch_model.bin"))  # pickled, as on the Hub
    CLIPImageProcessorPil(size={"shortest_edge": CLIP_IMAGE_SIZE},
                          crop_size={"height": CLIP_IMAGE_SIZE, "width": CLIP_IMAGE_SIZE}).save_pretrained(folder)


def make_tiny_legacy_model(output_dir: str, version: str = "v4", inpaint: bool = False, seed: int = 0,
                           config: TinyLegacyConfig | None = None, pickle_transformer: bool = False) -> str:
    """Write a tiny random EasyAnimate ``version`` (v4 | v3 | v2) repo; ``inpaint`` adds the InP input channels
    and the CLIP image encoder (V3/V4). Returns ``output_dir``."""
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    from ..tiny import build_tiny_bert_t5, build_tiny_bert_tokenizer, build_tiny_t5_tokenizer
    from .loading import TRANSFORMER_CLASSES, constructor_config
    from .vae import LegacyMagvitVAE

    if version not in LEGACY_TINY_VERSIONS:
        raise ValueError(f"tiny legacy version {version!r}: one of {LEGACY_TINY_VERSIONS}")
    if inpaint and version == "v2":
        raise ValueError("EasyAnimate V2 has no InP release (no image encoder); write v2 without --inpaint")
    config = config or TinyLegacyConfig()
    torch.manual_seed(seed)
    os.makedirs(output_dir, exist_ok=True)

    vae_dir = os.path.join(output_dir, "vae")
    vae_json = vae_config(version, config)
    _write_json(os.path.join(vae_dir, "config.json"), vae_json)
    vae = deterministic_weights(LegacyMagvitVAE.from_config({k: v for k, v in vae_json.items()
                                                             if not k.startswith("_")}), seed)
    latent = config.latent_channels
    decoder = {"decoder.conv_in.conv.weight": torch.randn(config.vae_channels[-1], latent, 3, 3, 3) * 0.02,
               "post_quant_conv.weight": torch.randn(latent, latent, 1, 1, 1) * 0.02}  # set aside by the loader
    _save_weights({**vae.state_dict(), **decoder}, vae_dir, pickle=False)

    transformer_dir = os.path.join(output_dir, "transformer")
    transformer_json = transformer_config(version, inpaint, config)
    _write_json(os.path.join(transformer_dir, "config.json"), transformer_json)
    cls = TRANSFORMER_CLASSES[transformer_json["_class_name"]]

    transformer = deterministic_weights(cls.from_config(constructor_config(cls, transformer_json, "tiny")), seed + 1)
    _save_weights(transformer.state_dict(), transformer_dir, pickle=pickle_transformer)

    bert_tokenizer, t5_tokenizer = build_tiny_bert_tokenizer(), build_tiny_t5_tokenizer()
    bert, t5 = build_tiny_bert_t5(bert_tokenizer, t5_tokenizer, _text_widths(config))
    if version == "v4":
        bert.save_pretrained(os.path.join(output_dir, "text_encoder"))
        bert_tokenizer.save_pretrained(os.path.join(output_dir, "tokenizer"))
        t5.save_pretrained(os.path.join(output_dir, "text_encoder_2"))
        t5_tokenizer.save_pretrained(os.path.join(output_dir, "tokenizer_2"))
        DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.03, beta_schedule="scaled_linear",
                      prediction_type="v_prediction", clip_sample=False,
                      steps_offset=1).save_pretrained(os.path.join(output_dir, "scheduler"))
    else:
        t5.save_pretrained(os.path.join(output_dir, "text_encoder"))
        t5_tokenizer.save_pretrained(os.path.join(output_dir, "tokenizer"))
        DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                                    beta_schedule="linear").save_pretrained(os.path.join(output_dir, "scheduler"))
    if inpaint:
        _write_image_encoder(os.path.join(output_dir, "image_encoder"), version, config)
    _write_json(os.path.join(output_dir, "model_index.json"), MODEL_INDEX[version])
    return output_dir


def _text_widths(config: TinyLegacyConfig):
    from ..tiny import TinyModelConfig

    return TinyModelConfig(text_hidden_size=config.text_hidden_size, t5_hidden_size=config.t5_hidden_size)


FIXED_TABLES = (".pe", "pos_embed.pos_embed", "clip_projection.pos_embed")  # computed, never random


def deterministic_weights(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Give ``model`` random weights that depend on the seed and the parameter names and shapes only (not on the
    order diffusers initialises modules in): the tiny fixtures, and the reference run of the original code that the
    parity test compares with, get identical weights. Norm scales stay near 1; fixed sin-cos tables are kept. Layers
    the original zero-initialises (U-ViT skips, motion-module outputs, CLIP projection) get weights too, so a tiny
    model's skips and motion modules really contribute."""
    generator = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    new = {}
    for key in sorted(state):
        value = state[key]
        if not value.is_floating_point() or key.endswith(FIXED_TABLES):
            new[key] = value
            continue
        noise = torch.randn(value.shape, generator=generator, dtype=torch.float32) * scale
        near_one = key.endswith("weight") and value.ndim == 1
        new[key] = (noise + 1.0 if near_one else noise).to(value.dtype)
    model.load_state_dict(new)
    return model
