"""Loading V5 / V5.1 checkpoints: diffusers' classes, named by ``model_index.json``; the transformer from the
config the run already read.

``from_pretrained`` would read ``transformer/config.json`` again, so the transformer is built from the
:class:`~hf_easyanimate.models.checkpoint.Checkpoint`'s config on the meta device and its safetensors are assigned
shard by shard (peak memory: one shard), renaming the original release's module names to diffusers' on the way.
Weights load from safetensors only (a repo with only pickle ``.bin`` weights is refused, never unpickled), and
classes come from the diffusers/transformers libraries by the names in ``model_index.json``: no code from the
repo runs (``trust_remote_code`` is never passed).
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING

import torch
import transformers
from diffusers import AutoencoderKLMagvit, EasyAnimateTransformer3DModel
from diffusers import schedulers as diffusers_schedulers
from safetensors import safe_open
from safetensors.torch import load_file

from ..components import EasyAnimateComponents, finish_loading, skeleton
from ..errors import ModelLoadError

if TYPE_CHECKING:
    from ..family import CheckpointInfo, LoadOptions, ModelFamily

logger = logging.getLogger(__name__)

# Original (EasyAnimate repo) transformer module names -> diffusers' EasyAnimateTransformer3DModel names.
# The original MMDiT block keeps the text stream in a separate ``attn2``; diffusers folds it into ``attn1``.
ORIGINAL_TO_DIFFUSERS_KEYS = (
    (".attn2.to_q.", ".attn1.add_q_proj."),
    (".attn2.to_k.", ".attn1.add_k_proj."),
    (".attn2.to_v.", ".attn1.add_v_proj."),
    (".attn2.to_out.0.", ".attn1.to_add_out."),
    (".attn2.norm_q.", ".attn1.norm_added_q."),
    (".attn2.norm_k.", ".attn1.norm_added_k."),
)
SAFETENSORS_HINT = (" (weights are loaded from .safetensors files only; pickle .bin weights are refused: convert them "
                    "with safetensors or use a repo that ships safetensors)")


def _rename_keys(state_dict: dict[str, torch.Tensor], pairs) -> dict[str, torch.Tensor]:
    """Apply each (old, new) substring rename in order to every key (matched with a leading dot)."""
    converted = {}
    for key, value in state_dict.items():
        new_key = f".{key}"
        for old, new in pairs:
            new_key = new_key.replace(old, new)
        converted[new_key[1:]] = value
    return converted


def convert_original_transformer_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an original EasyAnimate V5/V5.1 transformer state dict to diffusers' module names."""
    return _rename_keys(state_dict, ORIGINAL_TO_DIFFUSERS_KEYS)


def convert_diffusers_transformer_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse rename: diffusers names -> the original EasyAnimate layout (tests, tiny V5 repos)."""
    return _rename_keys(state_dict, [(new, old) for old, new in ORIGINAL_TO_DIFFUSERS_KEYS])


def transformer_folder(path: str, revision: str | None, cache_dir: str | None) -> str:
    local = os.path.join(path, "transformer")
    if os.path.isdir(local):
        return local
    from huggingface_hub import snapshot_download

    root = snapshot_download(path, revision=revision, cache_dir=cache_dir, allow_patterns=["transformer/*"])
    return os.path.join(root, "transformer")


def safetensors_files(folder: str, variant: str | None) -> list[str]:
    stem = "diffusion_pytorch_model" + (f".{variant}" if variant else "")
    index = os.path.join(folder, f"{stem}.safetensors.index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as handle:
            shards = sorted(set(json.load(handle)["weight_map"].values()))
        return [os.path.join(folder, shard) for shard in shards]
    single = os.path.join(folder, f"{stem}.safetensors")
    return [single] if os.path.isfile(single) else []


def has_original_layout(files: list[str]) -> bool:
    """True if the weights use the original EasyAnimate names (a separate ``attn2`` text stream)."""
    for file in files:
        with safe_open(file, framework="pt") as handle:
            if any(".attn2." in key for key in handle.keys()):
                return True
    return False


def transformer_skeleton(config: dict) -> EasyAnimateTransformer3DModel:
    """The transformer ``config`` describes, on the meta device."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        return EasyAnimateTransformer3DModel.from_config(config)


def _assign_shards(transformer: torch.nn.Module, files: list[str], original: bool, dtype: torch.dtype,
                   folder: str) -> None:
    """Load each shard into the meta-device transformer (renamed if original), then check every key was there."""
    expected, seen = set(transformer.state_dict()), set()
    for file in files:
        state_dict = load_file(file)
        if original:
            state_dict = convert_original_transformer_keys(state_dict)
        unknown = sorted(set(state_dict) - expected)
        if unknown:
            raise ModelLoadError(f"{folder}: transformer weights do not match EasyAnimateTransformer3DModel "
                                 f"({len(unknown)} unexpected, e.g. {unknown[:3]}; file {file})")
        transformer.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()},
                                    strict=False, assign=True)
        seen.update(state_dict)
    missing = sorted(expected - seen)
    if missing:
        raise ModelLoadError(f"{folder}: transformer weights do not match EasyAnimateTransformer3DModel "
                             f"({len(missing)} missing, e.g. {missing[:3]})")


def load_transformer(checkpoint: CheckpointInfo, torch_dtype: torch.dtype = torch.float32,
                     variant: str | None = None) -> EasyAnimateTransformer3DModel:
    """The transformer from the checkpoint's config and safetensors (either the diffusers or the original names)."""
    path, revision, cache_dir = checkpoint.path, checkpoint.revision, checkpoint.cache_dir
    folder = transformer_folder(path, revision, cache_dir)
    files = safetensors_files(folder, variant)
    if not files:  # no safetensors: let diffusers say what it found (a .bin-only repo is refused there)
        return EasyAnimateTransformer3DModel.from_pretrained(
            path, subfolder="transformer", torch_dtype=torch_dtype, variant=variant, revision=revision,
            cache_dir=cache_dir, use_safetensors=True,
        )
    original = has_original_layout(files)
    if original:
        logger.debug("%s: original EasyAnimate transformer layout; renaming attn2.* to diffusers' attn1.add_*", folder)
    transformer = transformer_skeleton(checkpoint.transformer_config)
    _assign_shards(transformer, files, original, torch_dtype, folder)
    transformer.register_to_config(_name_or_path=path)
    return transformer.eval()


def _component_class(model_index: dict, name: str) -> type:
    library, class_name = model_index[name]
    if library == "transformers":
        return getattr(transformers, class_name)
    if library == "diffusers":
        import diffusers

        return getattr(diffusers, class_name, None) or getattr(diffusers_schedulers, class_name)
    raise ModelLoadError(f"component {name}: unsupported library {library!r}")


def _text_parts(checkpoint: CheckpointInfo, model_index: dict, options: LoadOptions, common: dict) -> dict:
    """Text encoder(s) and tokenizer(s) by the classes ``model_index.json`` names (skeletons without weights)."""
    path, dtype = checkpoint.path, options.weight_dtype
    names = [("text_encoder", "tokenizer")]
    if (model_index.get("text_encoder_2") or [None, None])[1]:
        names.append(("text_encoder_2", "tokenizer_2"))
    parts = {}
    for encoder, tokenizer in names:
        cls = _component_class(model_index, encoder)
        parts[encoder] = (cls.from_pretrained(path, subfolder=encoder, dtype=dtype, use_safetensors=True, **common)
                          if options.encoder_weights else skeleton(cls, path, encoder, dtype, **common))
        parts[tokenizer] = _component_class(model_index, tokenizer).from_pretrained(path, subfolder=tokenizer,
                                                                                     **common)
    return parts


def load_diffusers_components(family: ModelFamily, checkpoint: CheckpointInfo,
                              options: LoadOptions) -> EasyAnimateComponents:
    """Transformer, VAE, text encoder(s), tokenizer(s) and scheduler of a V5 / V5.1 checkpoint."""
    path, model_index = checkpoint.path, checkpoint.model_index
    if model_index is None:
        raise ModelLoadError(f"{path} is not a diffusers-layout EasyAnimate repo (no readable model_index.json)")
    common = {"revision": checkpoint.revision, "cache_dir": checkpoint.cache_dir}
    dtype = options.weight_dtype
    try:
        transformer = (load_transformer(checkpoint, dtype, options.variant) if options.transformer_weights
                       else transformer_skeleton(checkpoint.transformer_config))
        vae = (AutoencoderKLMagvit.from_pretrained(path, subfolder="vae", torch_dtype=dtype, variant=options.variant,
                                                   use_safetensors=True, **common)
               if options.encoder_weights else skeleton(AutoencoderKLMagvit, path, "vae", dtype, **common))
        text = _text_parts(checkpoint, model_index, options, common)
        scheduler = _component_class(model_index, "scheduler").from_pretrained(path, subfolder="scheduler", **common)
    except ModelLoadError:
        raise
    except Exception as error:
        hint = SAFETENSORS_HINT if "safetensors" in str(error) else ""
        raise ModelLoadError(f"cannot load {path}: {error}{hint}") from error
    yaml_kwargs = checkpoint.original_config.get("transformer_additional_kwargs") or {}
    components = EasyAnimateComponents(
        transformer=transformer, vae=vae, scheduler=scheduler, family=family, model_index=model_index,
        text_attention_mask=bool(yaml_kwargs.get("enable_text_attention_mask", family.text_attention_mask)), **text,
    )
    return finish_loading(components, options.transformer_path, options.vae_path, options.encoder_weights)


def vae_skeleton(config: dict) -> torch.nn.Module:
    from accelerate import init_empty_weights

    with init_empty_weights():
        return AutoencoderKLMagvit.from_config({k: v for k, v in config.items() if not k.startswith("_")})
