"""Model families: one object per EasyAnimate generation answers everything the rest of the package asks about it.

The family is found once, from the checkpoint's ``transformer/config.json`` (:mod:`.checkpoint`). From then on the
code outside ``models/`` asks ``checkpoint.family`` or ``components.family``: the frame grid, the objective the
checkpoint was trained with, what it refuses, the loaders, the prompt encoder, the inpaint conditioning, the
facts the memory planner needs, the diffusers pipelines that sample it, and how to write a tiny copy of it. It
never compares version strings or class names. A new generation (say Wan 2.1) is one subpackage under
``models/`` with a family class, listed in :data:`FAMILY_MODULES` (docs/contributing.md walks through it).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

import torch

from ..data.buckets import FrameGrid
from .components import EasyAnimateComponents
from .original_config import ModelConfigReading

# Each module defines ``FAMILIES``, a tuple of family objects; the order is the order of `make-tiny-model --version`.
FAMILY_MODULES = ("hf_easyanimate.models.easyanimate.family", "hf_easyanimate.models.legacy.family")


class CheckpointInfo(Protocol):
    """What a family reads of a checkpoint: :class:`~hf_easyanimate.models.checkpoint.Checkpoint` (which finds the
    family, so it sits above this module) is one."""

    path: str
    revision: str | None
    cache_dir: str | None
    transformer_config: dict
    source: str
    original_config: dict
    model_index: dict | None

    @property
    def vae_config(self) -> dict | None: ...

    @property
    def scheduler_config(self) -> dict: ...

    @property
    def latent_channels(self) -> int: ...


@dataclass(frozen=True)
class LoadOptions:
    """How a run loads a checkpoint's components (the model flags that reach the loaders)."""

    weight_dtype: torch.dtype = torch.float32
    variant: str | None = None
    transformer_weights: bool = True  # False: the transformer on the meta device (precompute reads its config)
    encoder_weights: bool = True  # False: VAE and text encoders from their configs only (cached training)
    train_mode: str = "normal"
    transformer_path: str | None = None
    vae_path: str | None = None


class ModelFamily(ABC):
    """One EasyAnimate generation. Subclasses set the class attributes and implement the abstract methods."""

    version: str  # the release's short name, as recipes and `make-tiny-model --version` spell it
    title: str  # "EasyAnimate V5.1", for messages
    summary: str  # one line for --help: what sets it apart
    recipe: str  # the recipe to start from
    has_inpaint_release: bool = True
    can_decode: bool = True  # False: the VAE decoder is not ported, so nothing can be sampled from it
    uniform_blocks: bool = False  # a plain loop over identical blocks: the planner may extrapolate depth
    encoder_parameters: float = 0.0  # text encoder(s) + VAE (+ CLIP), for planning without the folder
    default_latent_channels: int = 16
    # The diffusers pipelines a LoRA of this family is loaded into (text-to-video, image-to-video), and whether
    # validation sampling can build them from the training components.
    pipeline_names: tuple[str, str] = ("EasyAnimatePipeline", "EasyAnimateInpaintPipeline")
    samples_in_training: bool = False

    @abstractmethod
    def matches(self, transformer_config: dict, model_index: dict | None) -> bool:
        """Whether a checkpoint with these configs belongs to this family."""

    @abstractmethod
    def frame_grid(self, vae_config: dict | None) -> FrameGrid:
        """The frame counts the VAE encodes (from its config; the release's own when there is none)."""

    def loss_type(self, checkpoint: CheckpointInfo) -> tuple[str, str]:
        """(objective, why): the one this checkpoint was trained with; by default its scheduler's kind."""
        name = str(checkpoint.scheduler_config.get("_class_name", ""))
        if name.startswith("FlowMatch"):
            return "flow", f"its scheduler is {name}"
        return "ddpm", f"its scheduler is {name or 'a DDPM-family scheduler'}"

    @abstractmethod
    def check_training_setup(self, checkpoint: CheckpointInfo, loss_type: str, train_mode: str) -> None:
        """Refuse, from the configs alone, an objective or train mode this checkpoint cannot train with."""

    @abstractmethod
    def load_components(self, checkpoint: CheckpointInfo, options: LoadOptions) -> EasyAnimateComponents:
        """Transformer, VAE, text encoder(s), tokenizer(s), scheduler (and image encoder) of the checkpoint."""

    @abstractmethod
    def transformer_skeleton(self, config: dict) -> torch.nn.Module:
        """The transformer ``config`` describes, on the meta device (no weights)."""

    @abstractmethod
    def vae_skeleton(self, config: dict) -> torch.nn.Module:
        """The VAE ``config`` describes, on the meta device (the planner counts its parameters)."""

    @abstractmethod
    def prompt_encoder(self, components: EasyAnimateComponents, max_length: int,
                       use_attention_mask: bool | None = None):
        """What turns captions into the transformer's text inputs."""

    @abstractmethod
    def dummy_prompt(self, config, batch: int, text_tokens: int, dtype: torch.dtype, device) -> dict:
        """Prompt embeddings of the transformer's text widths, for the memory planner's trace (values do not matter)."""

    def dummy_reference(self, transformer: torch.nn.Module, batch: int, dtype: torch.dtype, device) -> dict:
        """The reference-image inputs of an InP step, for the planner's trace ({} for families without them)."""
        return {}

    @abstractmethod
    def read_original_config(self, config_path: str, transformer_config: dict, vae_config: dict,
                             model_index: dict) -> ModelConfigReading:
        """The original YAML (``--config_path``) read against this checkpoint's configs."""

    @abstractmethod
    def write_tiny(self, output_dir: str, inpaint: bool = False, seed: int = 0) -> str:
        """A tiny random checkpoint of this family, in the layout of the real release."""

    @property
    def names_in_configs(self) -> tuple[str, ...]:
        """The release names an original YAML or a model path may give a checkpoint of this family."""
        return (self.version,)

    def describe_config(self, transformer_config: dict) -> str:
        """The transformer config in a few words, for messages."""
        return str(transformer_config.get("_class_name"))

    def latent_channels(self, vae_config: dict | None) -> int:
        return int((vae_config or {}).get("latent_channels", self.default_latent_channels))

    def inpaint_conditioner(self, components: EasyAnimateComponents):
        """How an InP checkpoint's mask + masked-video latents are built, from its configs (None for T2V)."""
        from .inpaint import conditioner_for

        return conditioner_for(components) if components.is_inpaint else None

    def check_prompt_lengths(self, components: EasyAnimateComponents, prompt_encoder, max_length: int) -> None:
        """Refuse a ``--tokenizer_max_length`` the transformer cannot take (most take any: nothing to check)."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.title}>"


@cache
def families() -> tuple[ModelFamily, ...]:
    """Every family, in :data:`FAMILY_MODULES` order."""
    found: list[ModelFamily] = []
    for name in FAMILY_MODULES:
        found.extend(importlib.import_module(name).FAMILIES)
    return tuple(found)


def family_named(version: str) -> ModelFamily:
    """The family of a release name ('v5.1', 'v4', ...); ValueError naming the known ones."""
    for family in families():
        if family.version == version:
            return family
    raise ValueError(f"unknown EasyAnimate release {version!r}; known: {', '.join(f.version for f in families())}")


def family_of(transformer_config: dict, model_index: dict | None = None) -> ModelFamily | None:
    """The family of a checkpoint's configs, or None for a transformer no family knows."""
    for family in families():
        if family.matches(transformer_config, model_index):
            return family
    return None


def tiny_versions() -> dict[str, Any]:
    """Release name -> one-line summary, for `make-tiny-model --version`."""
    return {family.version: family.summary for family in families()}
