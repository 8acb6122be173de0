"""Tiny random V5.1 / V5 checkpoints in the exact on-disk layout of the real releases (only the widths are small)."""

from __future__ import annotations

import json
import os

import torch

from ..tiny import (
    TinyModelConfig,
    build_tiny_bert_t5,
    build_tiny_bert_tokenizer,
    build_tiny_qwen2_vl,
    build_tiny_t5_tokenizer,
    build_tiny_tokenizer,
    update_json,
)
from .loading import convert_diffusers_transformer_keys

SUPPORTED_TINY_VERSIONS = ("v5.1", "v5")



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



def _write_v5_repo(output_dir: str, components: dict, inpaint: bool) -> None:
    """The V5 release layout: BERT + T5 encoders, DDIM scheduler, transformer weights with original names.

    diffusers has no V5 pipeline class, so components are saved one by one and ``model_index.json`` names
    EasyAnimate's own multi-text-encoder pipeline, as the released repos do.
    """
    import diffusers
    from safetensors.torch import save_file


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



def write_tiny_repo(output_dir: str, version: str = "v5.1", inpaint: bool = False, seed: int = 0) -> str:
    """Write a tiny random V5.1 or V5 repo in the layout of the real release; returns ``output_dir``.

    v5.1: diffusers layout (Qwen2-VL), loadable by diffusers' EasyAnimate pipelines. v5: the V5 release layout
    (BERT + T5, original transformer key names), loadable by :func:`hf_easyanimate.models.loading.load_components`.
    """
    from diffusers import EasyAnimateInpaintPipeline, EasyAnimatePipeline
    from transformers import Qwen2Tokenizer

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
    update_json(os.path.join(output_dir, "vae", "config.json"), cache_mag_vae=True)
