"""Load an EasyAnimate checkpoint: read its configs once (:mod:`.checkpoint`), then let its family load it.

The same code loads ``alibaba-pai/EasyAnimateV5.1-12b-zh-InP`` and the tiny repos written by
:mod:`hf_easyanimate.testing`. Each family knows its release's layout: V5 / V5.1 name their classes in
``model_index.json`` (diffusers), V4 / V3 / V2 keep the index of the pipeline they started from, so their classes
come from :mod:`hf_easyanimate.models.legacy`. The functions here are the public entry points; each is a line or two
over :class:`~hf_easyanimate.models.checkpoint.Checkpoint`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from ..utils.deprecation import moved_name
from .checkpoint import Checkpoint, read_checkpoint
from .components import EasyAnimateComponents, check_learned_sigma_support
from .errors import ModelLoadError, UnsupportedModelError
from .family import LoadOptions, family_of
from .original_config import ModelConfigMismatch, ModelConfigReading

logger = logging.getLogger(__name__)

__all__ = [
    "EasyAnimateComponents",
    "ModelLoadError",
    "UnsupportedModelError",
    "check_learned_sigma_support",
    "check_training_setup",
    "checkpoint_loss_type",
    "load_components",
    "read_model_config",
    "report_model_config",
    "transformer_from_config",
]


def load_components(
    pretrained_model_name_or_path: str,
    *,
    revision: str | None = None,
    variant: str | None = None,
    cache_dir: str | None = None,
    weight_dtype: torch.dtype = torch.float32,
    transformer_path: str | None = None,
    vae_path: str | None = None,
    config_path: str | None = None,
    transformer_weights: bool = True,
    encoder_weights: bool = True,
    train_mode: str = "normal",
    checkpoint: Checkpoint | None = None,
) -> EasyAnimateComponents:
    """Transformer, VAE, text encoder(s), tokenizer(s), scheduler (and V3/V4 InP image encoder), all frozen.

    ``transformer_weights=False`` builds the transformer on the meta device from its config only (``precompute``
    reads its config, not 22 GB of weights). ``encoder_weights=False`` does the same for the VAE and text
    encoder(s): training from a latent cache with nothing to encode then never reads the 15 GB Qwen2-VL.
    ``config_path`` is the original EasyAnimate YAML, if given. ``checkpoint``: the run's configs, already read
    (otherwise they are read here).
    """
    if checkpoint is None:
        checkpoint = read_checkpoint(pretrained_model_name_or_path, revision, cache_dir, config_path)
    return checkpoint.load(LoadOptions(
        weight_dtype=weight_dtype, variant=variant, transformer_weights=transformer_weights,
        encoder_weights=encoder_weights, train_mode=train_mode, transformer_path=transformer_path, vae_path=vae_path,
    ))


def check_training_setup(path: str, *, loss_type: str, train_mode: str, config_path: str | None = None,
                         revision: str | None = None, cache_dir: str | None = None) -> None:
    """Refuse, from configs alone (before any weights load), combinations that cannot train (the family's rules)."""
    read_checkpoint(path, revision, cache_dir, config_path).check_training_setup(loss_type, train_mode)


def checkpoint_loss_type(path: str, config_path: str | None = None, revision: str | None = None,
                         cache_dir: str | None = None) -> tuple[str, str]:
    """(loss type, why) the checkpoint was trained with."""
    return read_checkpoint(path, revision, cache_dir, config_path).loss_type()


def transformer_from_config(config: dict) -> torch.nn.Module:
    """The transformer a ``transformer/config.json`` describes, on the meta device (no memory, no weights)."""
    family = family_of(config)
    if family is None:
        raise UnsupportedModelError(f"{config.get('_class_name')!r} is not an EasyAnimate transformer")
    return family.transformer_skeleton(config)


def read_model_config(
    config_path: str,
    transformer_config: dict[str, Any],
    vae_config: dict[str, Any],
    model_index: dict[str, Any],
) -> ModelConfigReading:
    """Compare the original YAML with a checkpoint's configs, as the checkpoint's family reads it; raise
    :class:`ModelConfigMismatch` when it names another architecture."""
    if not os.path.isfile(config_path):
        return ModelConfigReading(config_path, False, {}, {}, [])
    family = family_of(transformer_config, model_index)
    if family is None:
        raise ModelConfigMismatch(f"--config_path {config_path}: the checkpoint's transformer "
                                  f"{transformer_config.get('_class_name')!r} is not an EasyAnimate one")
    return family.read_original_config(config_path, transformer_config, vae_config or {}, model_index or {})


def report_model_config(
    config_path: str | None, model_path: str, revision: str | None = None, cache_dir: str | None = None,
    checkpoint=None,
) -> ModelConfigReading | None:
    """Read ``--config_path`` against the checkpoint's configs and warn once about what did not apply.

    ``checkpoint``: the run's :class:`~hf_easyanimate.models.checkpoint.Checkpoint`, whose configs are read already.
    """
    if not config_path:
        return None
    if checkpoint is None:
        checkpoint = read_checkpoint(model_path, revision=revision, cache_dir=cache_dir)
    reading = read_model_config(config_path, checkpoint.transformer_config, checkpoint.vae_config or {},
                                checkpoint.model_index or {})
    message = reading.report()
    if message:
        logger.warning(message)
    return reading


def __getattr__(name: str):  # the 0.1 helpers of this module, now in checkpoint, components, location, ...
    return moved_name(__name__, name)
