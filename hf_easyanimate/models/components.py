"""What a run loads from a checkpoint, and the steps every family's loader shares (skeletons, extra weights, freezing)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from ..utils.files import safetensors_problem
from .errors import SUPPORTED, ModelLoadError, UnsupportedModelError

logger = logging.getLogger(__name__)


@dataclass
class EasyAnimateComponents:
    """Everything a training run needs from the base model, and the family that loaded it."""

    transformer: torch.nn.Module  # diffusers' EasyAnimateTransformer3DModel, or a port from models/legacy
    vae: torch.nn.Module  # diffusers' AutoencoderKLMagvit, or the V2-V4 MagVIT port
    text_encoder: torch.nn.Module
    tokenizer: Any
    scheduler: Any
    family: Any  # the ModelFamily that loaded them (models/family.py, which builds on this module)
    model_index: dict
    text_encoder_2: torch.nn.Module | None = None
    tokenizer_2: Any | None = None
    # V5: run BERT/T5 with attention masks (the original V5 config sets enable_text_attention_mask: false).
    text_attention_mask: bool = True
    # V3/V4 InP: the CLIP encoder of the reference frame (see models/image_encoder.py)
    image_encoder: Any | None = None

    @property
    def version(self) -> str:
        """The family's short name ('v5.1', ...): for messages and file names, never for branching."""
        return self.family.version

    @property
    def is_inpaint(self) -> bool:
        """InP checkpoints take mask + masked-video latents beside the noisy ones: more input channels than the
        VAE has latent channels (V5: 2C + 1, V2-V4: 3C)."""
        return int(self.transformer.config.in_channels) != int(self.vae.config.latent_channels)


def skeleton(cls, path: str, subfolder: str, dtype: torch.dtype | None = None, revision=None, cache_dir=None):
    """A diffusers or transformers model built from its config on the meta device: shapes and config, no weights."""
    from accelerate import init_empty_weights

    if hasattr(cls, "config_class") and cls.config_class is not None:  # transformers
        config = cls.config_class.from_pretrained(path, subfolder=subfolder, revision=revision, cache_dir=cache_dir)
        with init_empty_weights():
            return cls._from_config(config, dtype=dtype)
    config = cls.load_config(path, subfolder=subfolder, revision=revision, cache_dir=cache_dir)
    with init_empty_weights():
        model = cls.from_config(config)
    return model if dtype is None else as_dtype(model, dtype)


def as_dtype(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """torch's own ``.to``, not diffusers' ModelMixin.to: that one warns about keeping float32 modules (an empty
    list for these models), which means nothing for a skeleton without weights."""
    return torch.nn.Module.to(model, dtype)


def load_state_dict_over(module: torch.nn.Module, path: str, what: str) -> None:
    """Load extra weights from a safetensors file (never pickle), reporting what did not match."""
    from safetensors.torch import load_file

    if not path.endswith(".safetensors"):
        raise ModelLoadError(f"--{what}_path {path}: only .safetensors files are loaded (no pickle files)")
    problem = safetensors_problem(path)
    if problem is not None:
        raise ModelLoadError(f"--{what}_path {path}: {problem}")
    state_dict = load_file(path)
    result = module.load_state_dict(state_dict, strict=False)
    logger.info(
        "Loaded %s weights from %s (%d missing, %d unexpected keys)",
        what, path, len(result.missing_keys), len(result.unexpected_keys),
    )


def finish_loading(components: EasyAnimateComponents, transformer_path: str | None, vae_path: str | None,
                   encoder_weights: bool) -> EasyAnimateComponents:
    """Extra weights (``--transformer_path`` / ``--vae_path``) over the loaded ones; everything frozen."""
    if transformer_path:
        load_state_dict_over(components.transformer, transformer_path, "transformer")
    if vae_path and encoder_weights:
        load_state_dict_over(components.vae, vae_path, "vae")
    for module in (components.vae, components.text_encoder, components.text_encoder_2,
                   getattr(components.image_encoder, "encoder", None)):
        if module is not None:
            module.requires_grad_(False).eval()
    components.transformer.requires_grad_(False)
    return components


def check_learned_sigma_support(transformer: Any, latent_channels: int) -> None:
    """``--loss_type sigma`` needs a transformer that outputs 2 x latent channels (epsilon + variance).

    ``transformer`` is a model or its config dict. diffusers' ``EasyAnimateTransformer3DModel`` unpatchifies its
    output with the *input* channel count, so it cannot return 2C channels even with ``out_channels = 2C``; fail
    before loading any weights. The V2-V4 ports output 2C.
    """
    if isinstance(transformer, torch.nn.Module):
        class_name, config = type(transformer).__name__, transformer.config
    else:
        class_name, config = transformer.get("_class_name"), transformer
    out_channels = config.get("out_channels")
    if out_channels == 2 * latent_channels and class_name not in (None, "EasyAnimateTransformer3DModel"):
        return
    raise UnsupportedModelError(
        f"--loss_type sigma (learned-range variance, the V3/V2 objective) needs a transformer that outputs "
        f"2 x {latent_channels} latent channels; this {class_name or 'transformer'} has out_channels={out_channels} "
        "and diffusers' EasyAnimateTransformer3DModel cannot output twice its input channels, so a learned-sigma "
        f"EasyAnimate transformer is not available in diffusers. {SUPPORTED}"
    )
