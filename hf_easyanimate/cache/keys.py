"""Cache keys: a hash of everything that decides an entry's tensors, so a changed setting never reads a stale one.

A latent entry depends on the file (resolved path, size, mtime), the pixels it was cut to (kind, height, width,
frame-sampling settings) and the VAE that encoded them (model path, revision, variant, ``--vae_path``, the VAE
config and dtype). A prompt entry depends on the caption and the text encoder(s) (model path, revision,
variant, encoder and tokenizer configs, max length, dtype). Change any of them and the key changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import torch

from ..data.video import FrameSampling


def digest(payload: Any) -> str:
    """Hex digest of a JSON-serialisable payload (stable across processes and runs)."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _file_identity(path: str | None) -> list | None:
    """Resolved path, size and mtime: a replaced or edited file gets a new identity."""
    if not path:
        return None
    if not os.path.exists(path):
        return [path]  # a Hub id: the revision carries its identity
    resolved = os.path.realpath(path)
    stat = os.stat(resolved)
    return [resolved, stat.st_size, stat.st_mtime_ns] if os.path.isfile(resolved) else [resolved]


def _config(module: Any) -> dict:
    """A module's config, without where it was loaded from (``model_source`` carries that): a model built from
    its config alone (no weights, for cached training) must key like the loaded one, in every process."""
    config = getattr(module, "config", None)
    if config is None:
        return {}
    values = dict(config.to_dict() if hasattr(config, "to_dict") else config)
    values.pop("_name_or_path", None)
    # diffusers lists the keys a config.json left out in set order, which changes from process to process (string
    # hashing): the values themselves are in the config already.
    values.pop("_use_default_values", None)
    return values


def model_source(model_args: Any) -> dict:
    """Where the weights came from: changing the model path, revision or variant changes every key."""
    return {
        "model": _file_identity(model_args.pretrained_model_name_or_path),
        "revision": model_args.revision,
        "variant": model_args.variant,
    }


def vae_fingerprint(model_args: Any, vae: torch.nn.Module) -> str:
    """Identity of the VAE an entry was encoded with."""
    return digest({
        **model_source(model_args),
        "vae_path": _file_identity(model_args.vae_path),
        "config": _config(vae),
        "dtype": str(vae.dtype),
    })


def text_fingerprint(model_args: Any, prompt_encoder: Any) -> str:
    """Identity of the text encoder(s), tokenizer(s) and max length a prompt embedding came from."""
    tokenizers = [getattr(prompt_encoder, name, None) for name in ("tokenizer", "tokenizer_2")]
    return digest({
        **model_source(model_args),
        "encoders": [_config(module) for module in prompt_encoder.text_encoders],
        "dtypes": [str(module.dtype) for module in prompt_encoder.text_encoders],
        "tokenizers": [type(t).__name__ if t is not None else None for t in tokenizers],
        "class": type(prompt_encoder).__name__,
        "max_length": getattr(prompt_encoder, "max_length", None),
        "attention_mask": getattr(prompt_encoder, "use_attention_mask", None),
    })


def latent_key(
    path: str, kind: str, height: int, width: int, sampling: FrameSampling, limit: int, vae: str
) -> str:
    """Key of one clip (or image) cut to ``height`` x ``width`` with at most ``limit`` frames, encoded by ``vae``."""
    frames = None if kind == "image" else [sampling.n_frames, sampling.stride, sampling.drop_start,
                                            sampling.drop_end, sampling.fixed_start, int(limit)]
    return "l" + digest({"file": _file_identity(path), "kind": kind, "size": [int(height), int(width)],
                         "frames": frames, "vae": vae})


def prompt_key(text: str, text_encoder: str) -> str:
    """Key of one caption's embedding."""
    return "p" + digest({"text": text, "encoder": text_encoder})
