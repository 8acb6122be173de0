"""The base model of a run as its configs describe it: read once, before any weight loads, and handed on.

``transformer/config.json`` is read here and nowhere else in a run (``tests/test_checkpoint.py`` counts the reads):
the family, the frame grid, the block count, the objective check and the loaders all take it from
:class:`Checkpoint`. The other configs (``vae/config.json``, ``model_index.json``, the scheduler's) are read on
first use, each once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from .errors import MISSING_COMPONENTS, SUPPORTED, ModelLoadError, UnsupportedModelError
from .family import LoadOptions, ModelFamily, families, family_of
from .location import read_json_file
from .original_config import ModelConfigMismatch, ModelConfigReading, detect_original_version, read_original_config

if TYPE_CHECKING:
    from ..data.buckets import FrameGrid
    from .components import EasyAnimateComponents

TRANSFORMER_CONFIG = "transformer/config.json"


@dataclass
class Checkpoint:
    """A checkpoint's configs and family; ``load`` builds its components."""

    path: str
    family: ModelFamily
    transformer_config: dict
    source: str  # where transformer_config came from
    revision: str | None = None
    cache_dir: str | None = None
    config_path: str | None = None  # --config_path, the original YAML
    original_config: dict = field(default_factory=dict)  # its content ({} without one)
    model_index: dict | None = None

    @property
    def version(self) -> str:
        return self.family.version

    @property
    def title(self) -> str:
        return self.family.title

    @cached_property
    def vae_config(self) -> dict | None:
        return self._optional_json("config.json", "vae")

    @property
    def frame_grid(self) -> FrameGrid:
        return self.family.frame_grid(self.vae_config)

    @property
    def latent_channels(self) -> int:
        return self.family.latent_channels(self.vae_config)

    @property
    def block_count(self) -> int | None:
        """Transformer blocks (``num_layers``), when the config says."""
        count = self.transformer_config.get("num_layers")
        return int(count) if count is not None else None

    @cached_property
    def scheduler_config(self) -> dict:
        try:
            return read_json_file(self.path, "scheduler_config.json", "scheduler", self.revision, self.cache_dir)
        except Exception as error:  # no scheduler folder: name the file
            raise ModelLoadError(f"{self.path}: cannot read scheduler/scheduler_config.json: {error}") from error

    def loss_type(self) -> tuple[str, str]:
        """(objective, why) this checkpoint was trained with."""
        return self.family.loss_type(self)

    def check_training_setup(self, loss_type: str, train_mode: str) -> None:
        self.family.check_training_setup(self, loss_type, train_mode)

    def original_config_reading(self) -> ModelConfigReading | None:
        """``--config_path`` read against this checkpoint (None without one)."""
        if not self.config_path:
            return None
        if not os.path.isfile(self.config_path):
            return ModelConfigReading(self.config_path, False, {}, {}, [])
        return self.family.read_original_config(self.config_path, self.transformer_config, self.vae_config or {},
                                                self.model_index or {})

    def load(self, options: LoadOptions = LoadOptions()) -> EasyAnimateComponents:
        return self.family.load_components(self, options)

    def _optional_json(self, filename: str, subfolder: str | None = None) -> dict | None:
        try:
            return read_json_file(self.path, filename, subfolder, self.revision, self.cache_dir)
        except Exception:  # absent: the checks that need it say so
            return None


def _refuse_unknown_generation(hint: str | None, source: str, path: str) -> None:
    """A path or YAML naming a generation no family trains (V1): say what it would need."""
    if hint is None or hint in {family.version for family in families()}:
        return
    missing = MISSING_COMPONENTS.get(hint, "its transformer and VAE classes")
    raise UnsupportedModelError(
        f"EasyAnimate {hint.upper()} (detected from {source or path}) cannot be trained here: it needs "
        f"{missing}. {SUPPORTED}"
    )


def _check_hint(checkpoint: Checkpoint, hint: str | None, source: str) -> None:
    """``--config_path`` describing another generation than the checkpoint's own config is a mistake to name."""
    family = checkpoint.family
    if hint is None or not source.startswith("--config_path") or hint in family.names_in_configs:
        return
    raise ModelConfigMismatch(
        f"{source} describes EasyAnimate {hint.upper()}, but {checkpoint.path} is {family.title} "
        f"({TRANSFORMER_CONFIG}: {family.describe_config(checkpoint.transformer_config)}). Pass the YAML of the "
        f"model you train (config/easyanimate_video_{family.version}_*.yaml of the original repo) or drop "
        "--config_path."
    )


def read_checkpoint(path: str, revision: str | None = None, cache_dir: str | None = None,
                    config_path: str | None = None) -> Checkpoint:
    """Read ``path``'s transformer config (once) and find its family; refuse what no family trains."""
    original = read_original_config(config_path)
    hint, hint_source = detect_original_version(path, config_path, original)
    try:
        config = read_json_file(path, "config.json", "transformer", revision, cache_dir)
    except Exception as error:  # missing folder or file, Hub errors
        _refuse_unknown_generation(hint, hint_source, path)
        raise ModelLoadError(f"{path}: cannot read {TRANSFORMER_CONFIG}: {error}") from error
    model_index = _model_index(path, revision, cache_dir)
    family = family_of(config, model_index)
    if family is None:
        raise UnsupportedModelError(
            f"{path}: {TRANSFORMER_CONFIG} names {config.get('_class_name')!r}, not an EasyAnimate transformer. "
            f"{SUPPORTED}"
        )
    source = os.path.join(path, TRANSFORMER_CONFIG) if os.path.isdir(path) else f"{path} ({TRANSFORMER_CONFIG})"
    checkpoint = Checkpoint(path, family, config, source, revision, cache_dir, config_path, original, model_index)
    _check_hint(checkpoint, hint, hint_source)
    return checkpoint


def _model_index(path: str, revision: str | None, cache_dir: str | None) -> dict | None:
    try:
        return read_json_file(path, "model_index.json", None, revision, cache_dir)
    except Exception:
        return None


class CheckpointConfigNotFound(ModelLoadError):
    """No transformer config for a model that is only planned: the message says everywhere it looked."""


def plan_checkpoint(path: str, revision: str | None = None, cache_dir: str | None = None) -> Checkpoint:
    """For tools that plan a run without its weights (``plan-memory``): the checkpoint's transformer config from its
    folder, the Hub cache, or the published configs shipped with hf_easyanimate, in that order."""
    import json

    from huggingface_hub import constants, try_to_load_from_cache

    from .published import find_published

    looked, local = [], os.path.join(path, TRANSFORMER_CONFIG)
    found: tuple[dict, str] | None = None
    if os.path.isfile(local):
        with open(local, encoding="utf-8") as handle:
            found = json.load(handle), local
    else:
        looked.append(local)
        if "/" in path and not os.path.exists(path):
            cached = try_to_load_from_cache(path, TRANSFORMER_CONFIG, cache_dir=cache_dir, revision=revision)
            if isinstance(cached, str):
                with open(cached, encoding="utf-8") as handle:
                    found = json.load(handle), f"Hub cache ({cached})"
            else:
                looked.append(f"the Hugging Face cache ({cache_dir or constants.HF_HUB_CACHE})")
    if found is None:
        published = find_published(path)
        if published is not None:
            found = dict(published.transformer), f"packaged config of {published.repo_id} ({published.source})"
        else:
            looked.append("the published configs shipped with hf_easyanimate (hf_easyanimate/models/published.json)")
            raise CheckpointConfigNotFound(
                f"no transformer config for {path!r}: looked in " + "; ".join(looked) + ". Download the "
                "checkpoint's configs once (`huggingface-cli download MODEL --include '*.json'`) or pass a local "
                "folder.")
    config, source = found
    model_index = _model_index(path, revision, cache_dir) if os.path.isdir(path) else None
    family = family_of(config, model_index)
    if family is None:
        raise UnsupportedModelError(f"{source}: {config.get('_class_name')!r} is not an EasyAnimate transformer")
    return Checkpoint(path, family, config, source, revision, cache_dir, model_index=model_index)
