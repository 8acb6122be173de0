"""Loading EasyAnimate V4 / V3 / V2 from their Hub layouts (``alibaba-pai/EasyAnimateV4-XL-2-InP``,
``EasyAnimateV3-XL-2-InP-512x512``, ``EasyAnimateV2-XL-2-512x512``).

Those repos keep the ``model_index.json`` of the pipeline they started from (PixArt-alpha for V2/V3, HunyuanDiT
for V4), which names classes that are *not* the ones inside, so the version is read from
``transformer/config.json`` (``_class_name`` and ``basic_block_type``) and every class is chosen here, as the
original trainer chooses it: T5 for V2/V3, BERT + T5 for V4, ``CLIPVisionModelWithProjection`` for the InP
reference image, our ports for the transformer and the VAE.

Weights: safetensors, or the original's ``diffusion_pytorch_model.bin`` / ``pytorch_model.bin`` read with
``torch.load(weights_only=True)``, which unpickles tensors and plain containers only (never arbitrary objects).
Every key is checked: a checkpoint whose weights miss keys or have other shapes than its config says stops
before training with the file, the first keys and their count. Two kinds of difference are expected and
allowed: the VAE decoder (not ported, training only encodes) and the fixed sin-cos tables that older diffusers
releases saved and newer ones recompute. The original's one deliberate mismatch is kept: a text-to-video
checkpoint trained with ``--train_mode inpaint`` gets the inpaint input channels, zero-initialised (it then
computes exactly what the T2V model did until training moves them).
"""

from __future__ import annotations

import glob
import inspect
import json
import logging
import os
from typing import Any

import torch
from safetensors.torch import load_file

from .hunyuan import HunyuanTransformer3DModel
from .pixart import Transformer3DModel
from .vae import LegacyMagvitVAE

logger = logging.getLogger(__name__)

TRANSFORMER_CLASSES = {"HunyuanTransformer3DModel": HunyuanTransformer3DModel, "Transformer3DModel": Transformer3DModel}
# Written by diffusers' EMAModel into the config of an EMA checkpoint; not constructor arguments.
EMA_CONFIG_KEYS = ("decay", "inv_gamma", "min_decay", "optimization_step", "power", "update_after_step",
                   "use_ema_warmup")
# Deterministic tables that some diffusers releases store and others recompute: never a real mismatch.
FIXED_TABLE_SUFFIXES = (".pe", "pos_embed.pos_embed")
VAE_DECODER_PREFIXES = ("decoder.", "post_quant_conv.", "loss.")
SHOW_KEYS = 3


class LegacyLoadError(RuntimeError):
    """A V2-V4 checkpoint cannot be used as it is; the message names the file, the keys and the fix."""


def version_of_config(config: dict) -> str | None:
    """'v4', 'v3', 'v2' for a V2-V4 transformer config, None for anything else."""
    name = config.get("_class_name")
    if name == "HunyuanTransformer3DModel":
        return "v4"
    if name == "Transformer3DModel":
        return "v3" if config.get("basic_block_type") == "global_motionmodule" else "v2"
    return None


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def constructor_config(cls: type, config: dict, source: str) -> dict:
    """``config`` reduced to ``cls``'s constructor arguments: EMA leftovers and ``_`` keys dropped silently, other
    unknown keys dropped with one debug line (diffusers would warn about each)."""
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(k for k in config if k not in accepted and not k.startswith("_") and k not in EMA_CONFIG_KEYS)
    if unknown:
        logger.debug("%s: config keys not used by %s: %s", source, cls.__name__, ", ".join(unknown))
    return {key: value for key, value in config.items() if key in accepted}


def _weight_files(folder: str, stems: tuple[str, ...]) -> list[str]:
    """The checkpoint files of a component folder, safetensors first: an index's shards, one file, or any."""
    for stem in stems:
        index = os.path.join(folder, f"{stem}.safetensors.index.json")
        if os.path.isfile(index):
            shards = sorted(set(read_json(index)["weight_map"].values()))
            return [os.path.join(folder, shard) for shard in shards]
        for extension in (".safetensors", ".bin"):
            single = os.path.join(folder, stem + extension)
            if os.path.isfile(single):
                return [single]
    return sorted(glob.glob(os.path.join(folder, "*.safetensors")))


def read_state_dict(files: list[str]) -> dict[str, torch.Tensor]:
    """Tensors of safetensors or ``.bin`` files; ``.bin`` through ``torch.load(weights_only=True)``."""
    state_dict: dict[str, torch.Tensor] = {}
    for file in files:
        if file.endswith(".safetensors"):
            state_dict.update(load_file(file))
            continue
        try:
            loaded = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except Exception as error:  # UnpicklingError for anything that is not plain tensors
            raise LegacyLoadError(
                f"{file}: cannot be read as plain tensors ({error}); only weights are loaded from pickle files, never "
                "code. Convert it to safetensors with a trusted tool, or download the repo again."
            ) from error
        if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
            loaded = loaded["state_dict"]
        state_dict.update(loaded)
    return state_dict


def _keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOW_KEYS])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > SHOW_KEYS else ''})"


def check_state_dict(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor], source: str, fix: str, allow_missing: tuple = ()
) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors that ``model`` takes; raises when keys are missing, unexpected or of other shape.

    ``allow_missing``: key prefixes that may be absent (modules the original also leaves at their initialisation).
    """
    expected = model.state_dict()
    fixed = lambda key: key.endswith(FIXED_TABLE_SUFFIXES)  # noqa: E731
    missing = sorted(k for k in expected if k not in state_dict and not fixed(k) and not k.startswith(allow_missing))
    unexpected = sorted(k for k in state_dict if k not in expected and not fixed(k))
    shapes = sorted(f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                    if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape))
    problems = []
    if missing:
        problems.append(f"missing keys {_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_keys(unexpected)}")
    if shapes:
        problems.append(f"other shapes (checkpoint vs config) {_keys(shapes)}")
    if problems:
        raise LegacyLoadError(f"{source}: the weights do not match the config: {'; '.join(problems)}. {fix}")
    return {key: value for key, value in state_dict.items() if key in expected}


def _assign(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.nn.Module:
    """Put weights into a meta-device model; what the checkpoint lacks (fixed tables, new inpaint modules) is
    materialised from a regular construction of the same config."""
    present = set(state_dict)
    needs_init = [key for key in model.state_dict() if key not in present]
    if needs_init:
        fresh = type(model).from_config(model.config).state_dict()
        state_dict = {**{key: fresh[key] for key in needs_init}, **state_dict}
    model.load_state_dict({k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()},
                          strict=True, assign=True)
    return model


def load_legacy_transformer(
    folder: str,
    *,
    torch_dtype: torch.dtype = torch.float32,
    train_mode: str = "normal",
    latent_channels: int = 4,
    yaml_kwargs: dict[str, Any] | None = None,
    weights: bool = True,
    config: dict | None = None,
) -> torch.nn.Module:
    """The V2-V4 transformer of ``folder`` (a ``transformer/`` directory), checked key by key.

    ``yaml_kwargs`` are the original YAML's ``transformer_additional_kwargs``, applied over ``config.json`` as the
    original's ``from_pretrained_2d`` applies them. ``--train_mode inpaint`` on a text-to-video checkpoint widens
    the input to noisy + mask + masked-video latents; the extra input channels start at zero. ``config``: the
    folder's ``config.json`` when the caller read it already.
    """
    from accelerate import init_empty_weights

    config_file = os.path.join(folder, "config.json")
    raw = read_json(config_file) if config is None else config
    cls = TRANSFORMER_CLASSES[raw["_class_name"]]
    config = constructor_config(cls, {**raw, **(yaml_kwargs or {})}, config_file)
    widened = train_mode == "inpaint" and config.get("in_channels") == latent_channels
    if widened:
        config["in_channels"], config["out_channels"] = 3 * latent_channels, 2 * latent_channels
    try:
        with init_empty_weights():
            model = cls.from_config(config)
    except (TypeError, ValueError) as error:
        raise LegacyLoadError(f"{config_file}: {error}") from error
    if not weights:
        return model
    files = _weight_files(folder, ("diffusion_pytorch_model",))
    if not files:
        raise LegacyLoadError(f"{folder}: no transformer weights (diffusion_pytorch_model.safetensors or .bin)")
    state_dict = read_state_dict(files)
    allow: tuple[str, ...] = ()
    if widened:
        state_dict["pos_embed.proj.weight"] = _widen_input(state_dict.get("pos_embed.proj.weight"), model)
        # modules that exist only in inpaint models: the original leaves them at their initialisation too
        allow = ("clip_projection.", "clip_padding") + tuple(
            f"{name}." for name, _ in model.named_modules() if name.endswith(("norm_clip", "attn_clip", "gate_clip",
                                                                               "norm_clip_out")))
        logger.warning(
            "%s is a text-to-video checkpoint (in_channels %d); --train_mode inpaint widens its input to %d channels "
            "(the new ones start at zero), as the original trainer does.", folder, latent_channels,
            3 * latent_channels,
        )
    files_named = files[0] if len(files) == 1 else f"{folder} ({len(files)} files)"
    checked = check_state_dict(
        model, state_dict, files_named,
        "Use the transformer/ folder that belongs to this config (re-download the repo), and drop --config_path "
        "keys that change the architecture.", allow_missing=allow,
    )
    return _assign(model, checked, torch_dtype).eval()


def _widen_input(weight: torch.Tensor | None, model: torch.nn.Module) -> torch.Tensor:
    """The patch embedding's weight with zero columns for the added input channels (the original's padding)."""
    target = model.state_dict()["pos_embed.proj.weight"]
    if weight is None or weight.shape[1] >= target.shape[1]:
        return weight
    padded = torch.zeros(target.shape, dtype=weight.dtype)
    padded[:, : weight.shape[1]] = weight
    return padded


def load_legacy_vae(folder: str, *, torch_dtype: torch.dtype = torch.float32, weights: bool = True) -> LegacyMagvitVAE:
    """The V2-V4 MagVIT (encoder) of a ``vae/`` folder; decoder weights are expected and set aside."""
    from accelerate import init_empty_weights

    config_file = os.path.join(folder, "config.json")
    config = constructor_config(LegacyMagvitVAE, read_json(config_file), config_file)
    try:
        with init_empty_weights():
            vae = LegacyMagvitVAE.from_config(config)
    except (TypeError, ValueError) as error:
        raise LegacyLoadError(f"{config_file}: {error}") from error
    if not weights:  # a skeleton for cached training: its dtype still keys the latent cache
        return torch.nn.Module.to(vae, torch_dtype)
    files = _weight_files(folder, ("diffusion_pytorch_model",))
    if not files:
        raise LegacyLoadError(f"{folder}: no VAE weights (diffusion_pytorch_model.safetensors or .bin)")
    state_dict = {k: v for k, v in read_state_dict(files).items() if not k.startswith(VAE_DECODER_PREFIXES)}
    checked = check_state_dict(vae, state_dict, files[0] if len(files) == 1 else folder,
                               "Use the vae/ folder of the same EasyAnimate release as its config.json.")
    return _assign(vae, checked, torch_dtype).eval()


def load_image_encoder(path: str, torch_dtype: torch.dtype = torch.float32):
    """(``CLIPVisionModelWithProjection``, its image processor) of ``path/image_encoder``, as the original uses them.

    The Hub file is a pickled ``pytorch_model.bin`` (read with ``weights_only=True``) and its ``config.json`` may be
    a full ``CLIPConfig``: the vision tower and its projection are built from it and must be complete; the text
    tower's weights are expected and set aside.
    """
    import importlib.util

    from accelerate import init_empty_weights
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    if importlib.util.find_spec("torchvision") is not None:
        from transformers import CLIPImageProcessor as processor_class
    else:  # the same preprocessing on PIL; what transformers falls back to anyway, without its warning
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil as processor_class

    folder = os.path.join(path, "image_encoder")
    try:
        config = CLIPVisionConfig.from_pretrained(folder)
        processor = processor_class.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise LegacyLoadError(f"{folder}: cannot read the CLIP image encoder's configs: {error}") from error
    with init_empty_weights():
        encoder = CLIPVisionModelWithProjection(config)
    files = _weight_files(folder, ("model", "pytorch_model"))
    if not files:
        raise LegacyLoadError(f"{folder}: no CLIP weights (model.safetensors or pytorch_model.bin)")
    state_dict = {k: v for k, v in read_state_dict(files).items()
                  if not k.startswith(("text_model.", "text_projection.", "logit_scale"))}
    checked = check_state_dict(encoder, state_dict, files[0], "Use the image_encoder/ folder of the same -InP repo.")
    encoder.load_state_dict({k: v.to(torch_dtype) for k, v in checked.items()}, strict=True, assign=True)
    return encoder.eval().requires_grad_(False), processor
