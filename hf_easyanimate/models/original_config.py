"""The original EasyAnimate model YAML (``--config_path config/easyanimate_video_*.yaml``), read against a checkpoint.

A diffusers-layout checkpoint carries its architecture in ``transformer/config.json``; the YAML the original trainer
takes says the same things again, plus switches that diffusers' classes build in. Each family reads it its own way
(:meth:`~hf_easyanimate.models.family.ModelFamily.read_original_config`); this module holds what they share: the
YAML itself, the generation it (or a path) names, and the report of what applied.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any


class ModelConfigMismatch(ValueError):
    """``--config_path`` describes another architecture than the checkpoint being trained."""


@dataclass
class ModelConfigReading:
    """What ``--config_path`` contributed: keys that were checked against the checkpoint, and the rest."""

    path: str
    found: bool
    checked: dict[str, Any]
    mismatched: dict[str, tuple[Any, Any]]
    not_applicable: list[str]
    applied: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # V2-V4: YAML value over the checkpoint's

    def report(self) -> str | None:
        """One warning naming what was not used (None when everything applied)."""
        if not self.found:
            return (
                f"--config_path {self.path}: file not found; the checkpoint's own configs are used "
                "(diffusers-layout repos carry their architecture in transformer/config.json and vae/config.json)."
            )
        parts = []
        if self.not_applicable:
            parts.append(
                "does not apply to a diffusers-layout checkpoint and is ignored: " + ", ".join(self.not_applicable)
            )
        if self.mismatched:
            parts.append(
                "disagrees with the checkpoint, which wins: "
                + ", ".join(f"{key}={yaml!r} (checkpoint {ckpt!r})" for key, (yaml, ckpt) in self.mismatched.items())
            )
        if self.applied:
            parts.append(
                "overrides the checkpoint's transformer config, as the original trainer applies it: "
                + ", ".join(f"{key}={yaml!r} (config.json {ckpt!r})" for key, (yaml, ckpt) in self.applied.items())
            )
        return f"--config_path {self.path}: " + "; ".join(parts) if parts else None


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: the YAML's keys as the reports name them."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def read_yaml_mapping(config_path: str) -> dict:
    """The YAML at ``config_path``, which must be a mapping (the message names the file otherwise)."""
    import yaml

    try:
        with open(config_path, encoding="utf-8") as handle:
            tree = yaml.safe_load(handle) or {}
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise ModelConfigMismatch(f"--config_path {config_path}: not valid YAML{at} "
                                  f"({getattr(error, 'problem', None) or error})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelConfigMismatch(f"--config_path {config_path}: cannot be read ({error})") from None
    if not isinstance(tree, dict):
        raise ModelConfigMismatch(f"--config_path {config_path}: expected a YAML mapping, got {type(tree).__name__}")
    return tree


def read_original_config(config_path: str | None) -> dict:
    """The original YAML (``--config_path``) if the file exists, else {}."""
    if not config_path or not os.path.isfile(config_path):
        return {}
    return read_yaml_mapping(config_path)


def _version_from_transformer_type(kwargs: dict) -> str | None:
    transformer_type = kwargs.get("transformer_type")
    if transformer_type == "HunyuanTransformer3DModel":
        return "v4"
    if transformer_type == "Transformer3DModel":
        block = kwargs.get("basic_block_type", "")
        return "v3" if block == "global_motionmodule" else "v2"
    if transformer_type == "EasyAnimateTransformer3DModel":
        return "v5"
    return None


def detect_original_version(model_path: str | None, config_path: str | None = None,
                            original: dict | None = None) -> tuple[str | None, str]:
    """The generation ('v5.1', 'v5', 'v4', ...) the original YAML or a path *names*, and what it was read from.

    Looked at in order, the first answer wins: the YAML's transformer type, the YAML's file name
    (``easyanimate_video_v5.1_*``), the model path (``EasyAnimateV4-...``). It is a hint: a readable checkpoint
    config decides (:mod:`.checkpoint`). ``original``: the YAML already read.
    """
    config = read_original_config(config_path) if original is None else original
    version = _version_from_transformer_type(config.get("transformer_additional_kwargs") or {})
    if version is not None:
        if version == "v5" and (config.get("text_encoder_kwargs") or {}).get("replace_t5_to_llm"):
            version = "v5.1"
        return version, f"--config_path {config_path}"
    if config_path:
        match = re.search(r"_v(\d+(?:\.\d+)?)_", os.path.basename(config_path))
        if match:
            return f"v{match.group(1)}", f"--config_path {config_path}"
    if model_path:
        match = re.search(r"EasyAnimateV(\d+(?:\.\d+)?)", model_path)
        if match:
            return f"v{match.group(1)}", f"model {model_path}"
    return None, ""
