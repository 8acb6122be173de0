"""Load the components of a diffusers-layout EasyAnimate repo; the only module that knows repo layouts.

The same code loads ``alibaba-pai/EasyAnimateV5.1-12b-zh-InP`` and the tiny repos written by
:mod:`hf_easyanimate.testing`: ``model_index.json`` names each component's library and class.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import transformers
from diffusers import AutoencoderKLMagvit, DiffusionPipeline, EasyAnimateTransformer3DModel
from diffusers import schedulers as diffusers_schedulers
from safetensors.torch import load_file

logger = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model repo cannot be used; the message names the repo and the component."""


@dataclass
class EasyAnimateComponents:
    """Everything a training run needs from the base model."""

    transformer: EasyAnimateTransformer3DModel
    vae: AutoencoderKLMagvit
    text_encoder: torch.nn.Module
    tokenizer: Any
    scheduler: Any
    version: str
    model_index: dict
    text_encoder_2: torch.nn.Module | None = None
    tokenizer_2: Any | None = None

    @property
    def is_inpaint(self) -> bool:
        """InP checkpoints take mask + masked-video latents: in_channels = 2 * latent + 1."""
        config = self.transformer.config
        return config.in_channels != config.out_channels


def read_model_index(path: str, revision: str | None = None, cache_dir: str | None = None) -> dict:
    try:
        return dict(DiffusionPipeline.load_config(path, revision=revision, cache_dir=cache_dir))
    except Exception as error:  # OSError, EnvironmentError, HF hub errors
        raise ModelLoadError(
            f"{path} is not a diffusers-layout EasyAnimate repo (no readable model_index.json): {error}"
        ) from error


def detect_version(model_index: dict) -> str:
    """'v5.1' (Qwen2-VL text encoder) or 'v5' (BERT + T5 multi text encoder)."""
    encoder_class = (model_index.get("text_encoder") or [None, None])[1]
    if model_index.get("text_encoder_2") and model_index["text_encoder_2"][1]:
        return "v5"
    if encoder_class and encoder_class.startswith("Qwen2"):
        return "v5.1"
    if encoder_class == "BertModel":
        return "v5"
    raise ModelLoadError(f"unrecognised text encoder {encoder_class!r} in model_index.json")


def _component_class(model_index: dict, name: str) -> type:
    library, class_name = model_index[name]
    if library == "transformers":
        return getattr(transformers, class_name)
    if library == "diffusers":
        import diffusers

        return getattr(diffusers, class_name, None) or getattr(diffusers_schedulers, class_name)
    raise ModelLoadError(f"component {name}: unsupported library {library!r}")


def _load_state_dict_over(module: torch.nn.Module, path: str, what: str) -> None:
    """Load extra weights from a safetensors file (never pickle), reporting what did not match."""
    if not path.endswith(".safetensors"):
        raise ModelLoadError(f"--{what}_path {path}: only .safetensors files are loaded (no pickle files)")
    state_dict = load_file(path)
    result = module.load_state_dict(state_dict, strict=False)
    logger.info(
        "Loaded %s weights from %s (%d missing, %d unexpected keys)",
        what, path, len(result.missing_keys), len(result.unexpected_keys),
    )


def load_components(
    pretrained_model_name_or_path: str,
    *,
    revision: str | None = None,
    variant: str | None = None,
    cache_dir: str | None = None,
    weight_dtype: torch.dtype = torch.float32,
    transformer_path: str | None = None,
    vae_path: str | None = None,
) -> EasyAnimateComponents:
    """Load transformer, VAE, text encoder(s), tokenizer(s) and scheduler of an EasyAnimate repo.

    Weights load from safetensors only (``use_safetensors=True``: a repo with only pickle ``.bin`` weights is
    refused, never unpickled), and classes come from the diffusers/transformers libraries by the names in
    ``model_index.json``: no code from the repo runs (``trust_remote_code`` is never passed).
    """
    path = pretrained_model_name_or_path
    model_index = read_model_index(path, revision=revision, cache_dir=cache_dir)
    version = detect_version(model_index)
    common = {"revision": revision, "cache_dir": cache_dir}
    try:
        transformer = EasyAnimateTransformer3DModel.from_pretrained(
            path, subfolder="transformer", torch_dtype=weight_dtype, variant=variant, use_safetensors=True, **common
        )
        vae = AutoencoderKLMagvit.from_pretrained(
            path, subfolder="vae", torch_dtype=weight_dtype, variant=variant, use_safetensors=True, **common
        )
        text_encoder = _component_class(model_index, "text_encoder").from_pretrained(
            path, subfolder="text_encoder", dtype=weight_dtype, use_safetensors=True, **common
        )
        tokenizer = _component_class(model_index, "tokenizer").from_pretrained(path, subfolder="tokenizer", **common)
        scheduler = _component_class(model_index, "scheduler").from_pretrained(path, subfolder="scheduler", **common)
        text_encoder_2 = tokenizer_2 = None
        if model_index.get("text_encoder_2") and model_index["text_encoder_2"][1]:
            text_encoder_2 = _component_class(model_index, "text_encoder_2").from_pretrained(
                path, subfolder="text_encoder_2", dtype=weight_dtype, use_safetensors=True, **common
            )
            tokenizer_2 = _component_class(model_index, "tokenizer_2").from_pretrained(
                path, subfolder="tokenizer_2", **common
            )
    except ModelLoadError:
        raise
    except Exception as error:
        hint = (
            " (weights are loaded from .safetensors files only; pickle .bin weights are refused: convert them "
            "with safetensors or use a repo that ships safetensors)"
            if "safetensors" in str(error)
            else ""
        )
        raise ModelLoadError(f"cannot load {path}: {error}{hint}") from error

    if transformer_path:
        _load_state_dict_over(transformer, transformer_path, "transformer")
    if vae_path:
        _load_state_dict_over(vae, vae_path, "vae")
    for module in (vae, text_encoder, text_encoder_2):
        if module is not None:
            module.requires_grad_(False).eval()
    transformer.requires_grad_(False)
    return EasyAnimateComponents(
        transformer=transformer,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        version=version,
        model_index=model_index,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
    )
