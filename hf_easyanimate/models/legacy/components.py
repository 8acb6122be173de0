"""V4 / V3 / V2 components from the original Hub layouts, with the classes the original trainer uses.

The releases' ``model_index.json`` names the pipeline they started from (HunyuanDiT, PixArt-alpha), not what is
inside, so every class is chosen by the family: T5 for V2/V3, BERT + T5 for V4, our ports for the transformer and
the VAE, ``CLIPVisionModelWithProjection`` for the InP reference image. The transformer is built from the config the
run read already (:class:`~hf_easyanimate.models.checkpoint.Checkpoint`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
import transformers
from diffusers import DDPMScheduler

from ..components import EasyAnimateComponents, finish_loading, skeleton
from ..errors import ModelLoadError
from ..location import local_snapshot
from .loading import LegacyLoadError, load_image_encoder, load_legacy_transformer, load_legacy_vae

if TYPE_CHECKING:
    from ..family import CheckpointInfo, LoadOptions, ModelFamily


def _text_parts(root: str, text_encoders: tuple, options: LoadOptions) -> dict:
    """Each (encoder folder, encoder class, tokenizer folder, tokenizer class) of the family, loaded or as skeleton."""
    parts = {}
    for encoder_name, encoder_class, tokenizer_name, tokenizer_class in text_encoders:
        encoder_class = getattr(transformers, encoder_class)
        if options.encoder_weights:
            parts[encoder_name] = encoder_class.from_pretrained(root, subfolder=encoder_name,
                                                                dtype=options.weight_dtype)
        else:
            parts[encoder_name] = skeleton(encoder_class, root, encoder_name, options.weight_dtype)
        parts[tokenizer_name] = getattr(transformers, tokenizer_class).from_pretrained(root, subfolder=tokenizer_name)
    return parts


def _image_encoder(root: str, transformer: torch.nn.Module, options: LoadOptions):
    """V3/V4 InP: the CLIP encoder of the reference frame (None for a model without CLIP tokens or T2V training)."""
    from ..image_encoder import ReferenceImageEncoder

    if options.train_mode != "inpaint" or transformer.clip_tokens is None:
        return None
    if options.encoder_weights:
        encoder, processor = load_image_encoder(root, torch_dtype=options.weight_dtype)
    else:
        encoder = skeleton(transformers.CLIPVisionModelWithProjection, root, "image_encoder", options.weight_dtype)
        processor = None
    return ReferenceImageEncoder(encoder, processor, transformer.reference_image_features)


def _model_index(root: str) -> dict:
    """Kept for reference only: it names the pipeline the release started from."""
    import json

    path = os.path.join(root, "model_index.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def load_legacy_components(family: ModelFamily, checkpoint: CheckpointInfo, options: LoadOptions) -> EasyAnimateComponents:
    """Every component of a V2-V4 checkpoint (see the module docstring); ``family`` is the release's
    :class:`~hf_easyanimate.models.legacy.family.LegacyFamily`, which calls this (its ``text_encoders`` are read)."""
    root = local_snapshot(checkpoint.path, checkpoint.revision, checkpoint.cache_dir)
    yaml_kwargs = checkpoint.original_config.get("transformer_additional_kwargs") or {}
    dtype = options.weight_dtype
    try:
        vae = load_legacy_vae(os.path.join(root, "vae"), torch_dtype=dtype, weights=options.encoder_weights)
        transformer = load_legacy_transformer(
            os.path.join(root, "transformer"), torch_dtype=dtype, train_mode=options.train_mode,
            latent_channels=int(vae.config.latent_channels), yaml_kwargs=yaml_kwargs,
            weights=options.transformer_weights, config=checkpoint.transformer_config,
        )
        text = _text_parts(root, family.text_encoders, options)
        scheduler = None
        if os.path.isfile(os.path.join(root, "scheduler", "scheduler_config.json")):
            scheduler = DDPMScheduler.from_pretrained(root, subfolder="scheduler")
        image_encoder = _image_encoder(root, transformer, options)
    except LegacyLoadError as error:
        raise ModelLoadError(str(error)) from error
    except ModelLoadError:
        raise
    except Exception as error:
        raise ModelLoadError(f"cannot load {family.title} from {checkpoint.path}: {error}") from error
    components = EasyAnimateComponents(
        transformer=transformer, vae=vae, scheduler=scheduler, family=family, model_index=_model_index(root),
        text_attention_mask=bool(transformer.config.get("enable_text_attention_mask", True)),
        image_encoder=image_encoder, **text,
    )
    return finish_loading(components, options.transformer_path, options.vae_path, options.encoder_weights)
