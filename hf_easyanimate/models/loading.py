"""Load the components of an EasyAnimate repo; the only module that knows repo layouts.

The same code loads ``alibaba-pai/EasyAnimateV5.1-12b-zh-InP`` and the tiny repos written by
:mod:`hf_easyanimate.testing`: for V5/V5.1 ``model_index.json`` names each component's library and class. The V4 /
V3 / V2 repos keep the ``model_index.json`` of the pipeline they started from, so their version is read from
``transformer/config.json`` and their classes come from :mod:`hf_easyanimate.models.legacy`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import torch
import transformers
from diffusers import AutoencoderKLMagvit, DDPMScheduler, DiffusionPipeline, EasyAnimateTransformer3DModel
from diffusers import schedulers as diffusers_schedulers
from safetensors import safe_open
from safetensors.torch import load_file

logger = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model repo cannot be used; the message names the repo and the component."""


class UnsupportedModelError(ModelLoadError):
    """The checkpoint's architecture (or the objective it needs) has no diffusers implementation."""


V5_FAMILY_SUPPORT = (
    "hf-easyanimate trains EasyAnimate V5.1 (--loss_type flow), V5 and V4 (--loss_type ddpm), V3 and V2 "
    "(--loss_type sigma), --train_mode normal or inpaint. Start from a recipe: recipes/v5.1/inp_lora.yaml, "
    "recipes/v5/inp_lora.yaml, recipes/v4/inp_lora.yaml, recipes/v3/inp_lora.yaml or recipes/v2/lora.yaml."
)

# What the generations we do not train need (V4/V3/V2 are ported in models/legacy).
MISSING_COMPONENTS = {
    "v1": "the Transformer3DModel transformer with motion modules over a 2D VAE (EasyAnimate V1), which is not ported",
}
# The objective each ported generation was trained with (the original's --loss_type for it).
LEGACY_OBJECTIVES = {"v4": "ddpm", "v3": "sigma", "v2": "sigma"}
LEGACY_VERSIONS = tuple(LEGACY_OBJECTIVES)

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


@dataclass
class EasyAnimateComponents:
    """Everything a training run needs from the base model."""

    transformer: torch.nn.Module  # diffusers' EasyAnimateTransformer3DModel, or a port from models/legacy
    vae: torch.nn.Module  # diffusers' AutoencoderKLMagvit, or the V2-V4 MagVIT port
    text_encoder: torch.nn.Module
    tokenizer: Any
    scheduler: Any
    version: str
    model_index: dict
    text_encoder_2: torch.nn.Module | None = None
    tokenizer_2: Any | None = None
    # V5: run BERT/T5 with attention masks (the original V5 config sets enable_text_attention_mask: false).
    text_attention_mask: bool = True
    # V3/V4 InP: the CLIP encoder of the reference frame (see models/image_encoder.py)
    image_encoder: Any | None = None

    @property
    def is_inpaint(self) -> bool:
        """InP checkpoints take mask + masked-video latents beside the noisy ones: more input channels than the
        VAE has latent channels (V5: 2C + 1, V2-V4: 3C)."""
        return int(self.transformer.config.in_channels) != int(self.vae.config.latent_channels)


# --- architecture support ---------------------------------------------------------------------------

def read_original_config(config_path: str | None) -> dict:
    """The original EasyAnimate YAML (``--config_path``) if the file exists, else {}."""
    if not config_path or not os.path.isfile(config_path):
        return {}
    import yaml

    with open(config_path, encoding="utf-8") as handle:
        loaded = yaml.safe_load(handle) or {}
    if not isinstance(loaded, dict):
        raise ModelLoadError(f"--config_path {config_path}: expected a YAML mapping, got {type(loaded).__name__}")
    return loaded


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


def detect_original_version(model_path: str | None, config_path: str | None = None) -> tuple[str | None, str]:
    """EasyAnimate generation ('v5.1', 'v5', 'v4', ...) from the original YAML, its name, or the model path.

    Returns (version or None, what it was read from). Looked at in that order; the first answer wins.
    """
    config = read_original_config(config_path)
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
        transformer_config = os.path.join(model_path, "transformer", "config.json")
        if os.path.isfile(transformer_config):
            with open(transformer_config, encoding="utf-8") as handle:
                class_name = json.load(handle).get("_class_name")
            version = _version_from_transformer_type({"transformer_type": class_name})
            if version is not None and version != "v5":
                return version, transformer_config
    return None, ""


def read_transformer_config(path: str, revision: str | None = None, cache_dir: str | None = None) -> dict | None:
    """The checkpoint's ``transformer/config.json`` (local, or the Hub and its cache), None when unreadable."""
    try:
        return dict(EasyAnimateTransformer3DModel.load_config(path, subfolder="transformer", revision=revision,
                                                              cache_dir=cache_dir))
    except Exception:  # a missing folder or file is reported by the checks that need it
        return None


def checkpoint_version(path: str | None, revision: str | None = None, cache_dir: str | None = None) -> str | None:
    """'v4' / 'v3' / 'v2' from the checkpoint's transformer config, 'v5' for the diffusers class, None if unknown."""
    from .legacy import version_of_config

    config = read_transformer_config(path, revision, cache_dir) if path else None
    if config is None:
        return None
    legacy = version_of_config(config)
    if legacy is not None:
        return legacy
    return "v5" if config.get("_class_name") == "EasyAnimateTransformer3DModel" else None


def ensure_supported_architecture(
    model_path: str | None, config_path: str | None = None, revision: str | None = None, cache_dir: str | None = None
) -> None:
    """Fail before anything is loaded for a generation that is not trained here (V1), or when ``--config_path``
    describes another generation than the checkpoint's own ``transformer/config.json``."""
    from ..legacy import ModelConfigMismatch

    version, source = detect_original_version(model_path, config_path)
    actual = checkpoint_version(model_path, revision, cache_dir)
    same_family = {"v5.1": "v5"}  # V5 vs V5.1 is told apart by the text encoders (legacy.read_model_config)
    if (version is not None and actual is not None and source.startswith("--config_path")
            and same_family.get(version, version) != actual):
        config = read_transformer_config(model_path, revision, cache_dir) or {}
        blocks = f", {config.get('basic_block_type')!r} blocks" if actual in ("v2", "v3") else ""
        raise ModelConfigMismatch(
            f"{source} describes EasyAnimate {version.upper()}, but {model_path} is EasyAnimate {actual.upper()} "
            f"(transformer/config.json: {config.get('_class_name')}{blocks}). Pass the YAML of the model you train "
            f"(config/easyanimate_video_{actual}_*.yaml of the original repo) or drop --config_path."
        )
    version = actual or version
    if version is None or version in ("v5", "v5.1", *LEGACY_OBJECTIVES):
        return
    missing = MISSING_COMPONENTS.get(version, "its transformer and VAE classes")
    raise UnsupportedModelError(
        f"EasyAnimate {version.upper()} (detected from {source or model_path}) cannot be trained here: it needs "
        f"{missing}. {V5_FAMILY_SUPPORT}"
    )


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
        f"EasyAnimate transformer is not available in diffusers. {V5_FAMILY_SUPPORT}"
    )


# --- where the model is ---------------------------------------------------------------------------------------

DIFFUSERS_LAYOUT = "model_index.json, transformer/, vae/, text_encoder/, tokenizer/, scheduler/"


def looks_local(path: str) -> bool:
    """A path the user meant as a folder (absolute, ``./``, ``../``, ``~``, or not of the Hub's ``owner/name`` form)."""
    if path.startswith(("/", "./", "../", "~", ".\\")) or os.path.isabs(path):
        return True
    parts = path.replace("\\", "/").strip("/").split("/")
    return len(parts) != 2 or not all(parts)


def check_model_path(path: str, revision: str | None = None, cache_dir: str | None = None) -> None:
    """Fail with the real reason before any download or load: a missing folder, a folder of the wrong layout,
    or (``HF_HUB_OFFLINE=1``) a Hub id that is not in the cache."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ModelLoadError(f"{path} is a file; --pretrained_model_name_or_path takes a model folder or Hub id")
        if not os.path.isdir(os.path.join(path, "transformer")):
            raise ModelLoadError(
                f"{path} has no transformer/ folder, so it is not an EasyAnimate model in the diffusers layout "
                f"(expected {DIFFUSERS_LAYOUT}; `hf-easyanimate make-tiny-model DIR` writes one)"
            )
        return
    if looks_local(path):
        raise ModelLoadError(
            f"--pretrained_model_name_or_path {path} does not exist (no such folder"
            + ("" if "/" in path else "; Hub ids look like owner/name, e.g. alibaba-pai/EasyAnimateV5.1-12b-zh-InP")
            + ")"
        )
    from huggingface_hub import constants, try_to_load_from_cache

    if constants.HF_HUB_OFFLINE:
        cached = try_to_load_from_cache(path, "model_index.json", cache_dir=cache_dir, revision=revision)
        if not isinstance(cached, str):
            raise ModelLoadError(
                f"{path} is a Hub id, HF_HUB_OFFLINE=1 is set and it is not in the Hugging Face cache "
                f"({cache_dir or constants.HF_HUB_CACHE}): download it once with network access "
                f"(`huggingface-cli download {path}`), or pass a local folder"
            )


def checkpoint_loss_type(
    path: str, config_path: str | None = None, revision: str | None = None, cache_dir: str | None = None
) -> tuple[str, str]:
    """(loss type, why) the checkpoint was trained with: V3/V2 learned variance -> sigma, else by its scheduler."""
    version = checkpoint_version(path, revision, cache_dir)
    source = f"{path}/transformer/config.json"
    if version is None:
        version, source = detect_original_version(path, config_path)
    if version in ("v2", "v3"):
        return "sigma", f"EasyAnimate {version.upper()} ({source}) trains with the learned-variance objective"
    try:
        config = dict(DDPMScheduler.load_config(path, subfolder="scheduler", revision=revision, cache_dir=cache_dir))
    except Exception as error:  # no scheduler folder: diffusers' error names the file
        raise ModelLoadError(f"{path}: cannot read scheduler/scheduler_config.json: {error}") from error
    name = str(config.get("_class_name", ""))
    if name.startswith("FlowMatch"):
        return "flow", f"its scheduler is {name}"
    return "ddpm", f"its scheduler is {name or 'a DDPM-family scheduler'}"


def check_training_setup(
    path: str,
    *,
    loss_type: str,
    train_mode: str,
    config_path: str | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
) -> None:
    """Refuse, from configs alone (before any weights load), combinations that cannot train.

    Pre-V5 architectures, ``--loss_type sigma`` on diffusers' transformer, and ``--train_mode inpaint`` on a
    checkpoint without mask/masked-video input channels.
    """
    ensure_supported_architecture(path, config_path, revision, cache_dir)
    common = {"revision": revision, "cache_dir": cache_dir}
    try:
        transformer_config = dict(EasyAnimateTransformer3DModel.load_config(path, subfolder="transformer", **common))
        vae_config = dict(AutoencoderKLMagvit.load_config(path, subfolder="vae", **common))
    except Exception as error:  # missing folder/file, hub errors
        raise ModelLoadError(f"{path}: cannot read the transformer/vae configs: {error}") from error
    from .legacy import version_of_config

    version = version_of_config(transformer_config)
    if version is not None:
        check_legacy_training_setup(path, version, transformer_config, vae_config, loss_type, train_mode,
                                    read_original_config(config_path), revision, cache_dir)
        return
    latent_channels = int(vae_config.get("latent_channels", 16))
    if loss_type == "sigma":
        check_learned_sigma_support(transformer_config, latent_channels)
    in_channels = transformer_config.get("in_channels")
    if train_mode == "inpaint" and in_channels != 2 * latent_channels + 1:
        raise ModelLoadError(
            f"--train_mode inpaint needs an InP checkpoint (transformer in_channels = 2 x {latent_channels} + 1 for "
            f"noisy + mask + masked-video latents); {path} has in_channels={in_channels}. Use an -InP model or "
            "--train_mode normal."
        )


def _has_component(path: str, subfolder: str, filename: str, revision: str | None, cache_dir: str | None) -> bool:
    """Whether ``subfolder/filename`` exists locally, or (a Hub id) can be fetched or is in the cache."""
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, subfolder, filename))
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(path, filename, subfolder=subfolder, revision=revision, cache_dir=cache_dir)
        return True
    except Exception:
        return False


def check_legacy_training_setup(
    path: str, version: str, transformer_config: dict, vae_config: dict, loss_type: str, train_mode: str,
    yaml_config: dict, revision: str | None = None, cache_dir: str | None = None,
) -> None:
    """The objective and inpaint rules of V4 / V3 / V2, from their configs (before any weights are read)."""
    name = f"EasyAnimate {version.upper()}"
    latent = int(vae_config.get("latent_channels", 4))
    config = {**transformer_config, **(yaml_config.get("transformer_additional_kwargs") or {})}
    if loss_type == "flow":
        raise UnsupportedModelError(
            f"--loss_type flow: {name} was trained as a discrete diffusion model ({LEGACY_OBJECTIVES[version]}); flow "
            f"matching is the V5.1 objective and would not give a usable LoRA. Use --loss_type "
            f"{LEGACY_OBJECTIVES[version]} (or drop --loss_type: it follows the checkpoint)."
        )
    out_channels = config.get("out_channels")
    if out_channels is None and version == "v4" and config.get("learn_sigma", True):
        out_channels = 2 * int(config.get("in_channels") or latent)
    if loss_type == "sigma" and out_channels != 2 * latent:
        raise UnsupportedModelError(
            f"--loss_type sigma needs the learned-variance output (2 x {latent} channels); this {name} transformer "
            f"has out_channels={out_channels}. Use --loss_type ddpm."
        )
    if loss_type == "ddpm" and not _has_component(path, "scheduler", "scheduler_config.json", revision, cache_dir):
        raise ModelLoadError(f"--loss_type ddpm builds its noise schedule from {path}/scheduler/scheduler_config.json, "
                             f"which is missing; use --loss_type {LEGACY_OBJECTIVES[version]}.")
    if train_mode != "inpaint":
        return
    in_channels = int(config.get("in_channels") or latent)
    if in_channels not in (latent, 3 * latent):
        raise ModelLoadError(
            f"--train_mode inpaint: {name} inpaint models take noisy + mask + masked-video latents (in_channels "
            f"{3 * latent}); {path} has in_channels={in_channels}. Use --train_mode normal."
        )
    needs_clip = (version == "v4" and config.get("enable_clip_in_inpaint", True)) or version in ("v3", "v2")
    if needs_clip and not _has_component(path, "image_encoder", "config.json", revision, cache_dir):
        raise ModelLoadError(
            f"--train_mode inpaint on {name} needs the CLIP image encoder of the reference frame in "
            f"{path}/image_encoder/ (config.json, the weights and preprocessor_config.json, as the -InP repos ship "
            "it); it is missing. Use the complete -InP repo, or train with --train_mode normal."
        )


# --- original-layout transformer weights ------------------------------------------------------------

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


def _transformer_folder(path: str, revision: str | None, cache_dir: str | None) -> str:
    local = os.path.join(path, "transformer")
    if os.path.isdir(local):
        return local
    from huggingface_hub import snapshot_download

    root = snapshot_download(path, revision=revision, cache_dir=cache_dir, allow_patterns=["transformer/*"])
    return os.path.join(root, "transformer")


def _safetensors_files(folder: str, variant: str | None) -> list[str]:
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


def load_transformer(
    path: str,
    *,
    torch_dtype: torch.dtype = torch.float32,
    variant: str | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
) -> EasyAnimateTransformer3DModel:
    """Load the transformer, converting original-layout (V5 release) weights to diffusers names on the fly."""
    folder = _transformer_folder(path, revision, cache_dir)
    files = _safetensors_files(folder, variant)
    if not files or not has_original_layout(files):
        return EasyAnimateTransformer3DModel.from_pretrained(
            path, subfolder="transformer", torch_dtype=torch_dtype, variant=variant, revision=revision,
            cache_dir=cache_dir, use_safetensors=True,
        )
    from accelerate import init_empty_weights

    logger.debug("%s: original EasyAnimate transformer layout; renaming attn2.* to diffusers' attn1.add_*", folder)
    config = EasyAnimateTransformer3DModel.load_config(folder)
    with init_empty_weights():
        transformer = EasyAnimateTransformer3DModel.from_config(config)
    state_dict: dict[str, torch.Tensor] = {}
    for file in files:
        state_dict.update(load_file(file))
    state_dict = convert_original_transformer_keys(state_dict)
    expected = set(transformer.state_dict())
    missing, unexpected = sorted(expected - set(state_dict)), sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise ModelLoadError(
            f"{folder}: original-layout transformer weights do not match EasyAnimateTransformer3DModel after "
            f"conversion ({len(missing)} missing, e.g. {missing[:3]}; {len(unexpected)} unexpected, "
            f"e.g. {unexpected[:3]})"
        )
    transformer.load_state_dict({k: v.to(torch_dtype) for k, v in state_dict.items()}, strict=True, assign=True)
    return transformer.eval()


def transformer_skeleton(path: str, revision: str | None = None, cache_dir: str | None = None):
    """The transformer with its config and no weights (meta device): for jobs that only read its config."""
    return _skeleton(EasyAnimateTransformer3DModel, path, "transformer", revision=revision, cache_dir=cache_dir)


def transformer_from_config(config: dict) -> torch.nn.Module:
    """The transformer a ``transformer/config.json`` describes, on the meta device (no memory, no weights):
    diffusers' class for V5/V5.1, our ports for V4/V3/V2."""
    from accelerate import init_empty_weights

    from .legacy.loading import TRANSFORMER_CLASSES, constructor_config

    name = config.get("_class_name", "EasyAnimateTransformer3DModel")
    cls = TRANSFORMER_CLASSES.get(name, EasyAnimateTransformer3DModel)
    values = constructor_config(cls, config, name) if cls is not EasyAnimateTransformer3DModel else {
        k: v for k, v in config.items() if not k.startswith("_")}
    with init_empty_weights():
        return cls.from_config(values)


def _skeleton(cls, path: str, subfolder: str, dtype: torch.dtype | None = None, revision=None, cache_dir=None):
    """A diffusers or transformers model built from its config on the meta device: shapes and config, no weights."""
    from accelerate import init_empty_weights

    if hasattr(cls, "config_class") and cls.config_class is not None:  # transformers
        config = cls.config_class.from_pretrained(path, subfolder=subfolder, revision=revision, cache_dir=cache_dir)
        with init_empty_weights():
            return cls._from_config(config, dtype=dtype)
    config = cls.load_config(path, subfolder=subfolder, revision=revision, cache_dir=cache_dir)
    with init_empty_weights():
        model = cls.from_config(config)
    # torch's own .to, not diffusers' ModelMixin.to: that one warns about keeping float32 modules (an empty list
    # for these models), which means nothing for a skeleton without weights.
    return model if dtype is None else torch.nn.Module.to(model, dtype)


# --- the repo ---------------------------------------------------------------------------------------

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
    config_path: str | None = None,
    transformer_weights: bool = True,
    encoder_weights: bool = True,
    train_mode: str = "normal",
) -> EasyAnimateComponents:
    """Load transformer, VAE, text encoder(s), tokenizer(s) and scheduler of an EasyAnimate repo.

    ``transformer_weights=False`` builds the transformer on the meta device from its config only (``precompute``
    reads its config, not 22 GB of weights). ``encoder_weights=False`` does the same for the VAE and text
    encoder(s): training from a latent cache with nothing to encode then never reads the 15 GB Qwen2-VL.

    ``config_path`` is the original EasyAnimate YAML, if given: it identifies pre-V5 models (refused with
    :class:`UnsupportedModelError`) and supplies ``enable_text_attention_mask`` for V5's encoders.
    Weights load from safetensors only (``use_safetensors=True``: a repo with only pickle ``.bin`` weights is
    refused, never unpickled), and classes come from the diffusers/transformers libraries by the names in
    ``model_index.json``: no code from the repo runs (``trust_remote_code`` is never passed).
    """
    path = pretrained_model_name_or_path
    ensure_supported_architecture(path, config_path, revision, cache_dir)
    legacy_version = checkpoint_version(path, revision, cache_dir)
    if legacy_version in LEGACY_VERSIONS:
        components = load_legacy_components(
            path, legacy_version, revision=revision, cache_dir=cache_dir, weight_dtype=weight_dtype,
            config_path=config_path, transformer_weights=transformer_weights, encoder_weights=encoder_weights,
            train_mode=train_mode,
        )
        _finish(components, transformer_path, vae_path, encoder_weights)
        return components
    model_index = read_model_index(path, revision=revision, cache_dir=cache_dir)
    version = detect_version(model_index)
    common = {"revision": revision, "cache_dir": cache_dir}
    try:
        if transformer_weights:
            transformer = load_transformer(path, torch_dtype=weight_dtype, variant=variant, **common)
        else:
            transformer = transformer_skeleton(path, **common)
        if encoder_weights:
            vae = AutoencoderKLMagvit.from_pretrained(
                path, subfolder="vae", torch_dtype=weight_dtype, variant=variant, use_safetensors=True, **common
            )
        else:
            vae = _skeleton(AutoencoderKLMagvit, path, "vae", weight_dtype, **common)

        def text_model(name: str):
            cls = _component_class(model_index, name)
            if not encoder_weights:
                return _skeleton(cls, path, name, weight_dtype, **common)
            return cls.from_pretrained(path, subfolder=name, dtype=weight_dtype, use_safetensors=True, **common)

        text_encoder = text_model("text_encoder")
        tokenizer = _component_class(model_index, "tokenizer").from_pretrained(path, subfolder="tokenizer", **common)
        scheduler = _component_class(model_index, "scheduler").from_pretrained(path, subfolder="scheduler", **common)
        text_encoder_2 = tokenizer_2 = None
        if model_index.get("text_encoder_2") and model_index["text_encoder_2"][1]:
            text_encoder_2 = text_model("text_encoder_2")
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

    yaml_kwargs = read_original_config(config_path).get("transformer_additional_kwargs") or {}
    text_attention_mask = bool(yaml_kwargs.get("enable_text_attention_mask", version != "v5"))
    components = EasyAnimateComponents(
        transformer=transformer,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        version=version,
        model_index=model_index,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_attention_mask=text_attention_mask,
    )
    _finish(components, transformer_path, vae_path, encoder_weights)
    return components


def _finish(components: EasyAnimateComponents, transformer_path: str | None, vae_path: str | None,
            encoder_weights: bool) -> None:
    """Extra weights (``--transformer_path`` / ``--vae_path``) over the loaded ones; everything frozen."""
    if transformer_path:
        _load_state_dict_over(components.transformer, transformer_path, "transformer")
    if vae_path and encoder_weights:
        _load_state_dict_over(components.vae, vae_path, "vae")
    for module in (components.vae, components.text_encoder, components.text_encoder_2,
                   getattr(components.image_encoder, "encoder", None)):
        if module is not None:
            module.requires_grad_(False).eval()
    components.transformer.requires_grad_(False)


def _local_snapshot(path: str, revision: str | None, cache_dir: str | None) -> str:
    """A folder holding the repo: ``path`` itself, or its Hub snapshot (downloaded, or the cache when offline)."""
    if os.path.isdir(path):
        return path
    from huggingface_hub import snapshot_download

    return snapshot_download(path, revision=revision, cache_dir=cache_dir)


def load_legacy_components(
    path: str,
    version: str,
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    weight_dtype: torch.dtype = torch.float32,
    config_path: str | None = None,
    transformer_weights: bool = True,
    encoder_weights: bool = True,
    train_mode: str = "normal",
) -> EasyAnimateComponents:
    """V4 / V3 / V2 from the original layout, with the classes the original trainer uses (see models/legacy)."""
    from .image_encoder import ReferenceImageEncoder
    from .legacy import LegacyLoadError, load_image_encoder, load_legacy_transformer, load_legacy_vae

    root = _local_snapshot(path, revision, cache_dir)
    yaml_kwargs = read_original_config(config_path).get("transformer_additional_kwargs") or {}
    try:
        vae = load_legacy_vae(os.path.join(root, "vae"), torch_dtype=weight_dtype, weights=encoder_weights)
        transformer = load_legacy_transformer(
            os.path.join(root, "transformer"), torch_dtype=weight_dtype, train_mode=train_mode,
            latent_channels=int(vae.config.latent_channels), yaml_kwargs=yaml_kwargs, weights=transformer_weights,
        )
        text_classes = [("text_encoder", transformers.BertModel if version == "v4" else transformers.T5EncoderModel,
                         "tokenizer", transformers.BertTokenizer if version == "v4" else transformers.T5Tokenizer)]
        if version == "v4":
            text_classes.append(("text_encoder_2", transformers.T5EncoderModel, "tokenizer_2", transformers.T5Tokenizer))
        loaded = {}
        for encoder_name, encoder_class, tokenizer_name, tokenizer_class in text_classes:
            if encoder_weights:
                loaded[encoder_name] = encoder_class.from_pretrained(root, subfolder=encoder_name, dtype=weight_dtype)
            else:
                loaded[encoder_name] = _skeleton(encoder_class, root, encoder_name, weight_dtype)
            loaded[tokenizer_name] = tokenizer_class.from_pretrained(root, subfolder=tokenizer_name)
        scheduler = None
        if os.path.isfile(os.path.join(root, "scheduler", "scheduler_config.json")):
            scheduler = DDPMScheduler.from_pretrained(root, subfolder="scheduler")
        image_encoder = None
        if train_mode == "inpaint" and transformer.clip_tokens is not None:
            if encoder_weights:
                encoder, processor = load_image_encoder(root, torch_dtype=weight_dtype)
            else:
                encoder = _skeleton(transformers.CLIPVisionModelWithProjection, root, "image_encoder", weight_dtype)
                processor = None
            image_encoder = ReferenceImageEncoder(encoder, processor, transformer.reference_image_features)
    except LegacyLoadError as error:
        raise ModelLoadError(str(error)) from error
    except ModelLoadError:
        raise
    except Exception as error:
        raise ModelLoadError(f"cannot load EasyAnimate {version.upper()} from {path}: {error}") from error
    model_index: dict = {}  # kept for reference only: it names the pipeline the release started from
    if os.path.isfile(os.path.join(root, "model_index.json")):
        with open(os.path.join(root, "model_index.json"), encoding="utf-8") as handle:
            model_index = json.load(handle)
    return EasyAnimateComponents(
        transformer=transformer,
        vae=vae,
        text_encoder=loaded["text_encoder"],
        tokenizer=loaded["tokenizer"],
        scheduler=scheduler,
        version=version,
        model_index=model_index,
        text_encoder_2=loaded.get("text_encoder_2"),
        tokenizer_2=loaded.get("tokenizer_2"),
        text_attention_mask=bool(transformer.config.get("enable_text_attention_mask", True)),
        image_encoder=image_encoder,
    )
