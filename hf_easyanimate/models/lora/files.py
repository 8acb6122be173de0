"""LoRA files on disk: write them atomically, find and read them in any layout, convert between formats.

Layouts we read (``read_lora``): a Hub repo id (only its LoRA files are downloaded), a peft adapter folder (``adapter_model.safetensors`` + ``adapter_config.json``),
a training ``output_dir`` or ``checkpoint-N/`` (which hold that adapter and/or ``easyanimate_lora.safetensors``),
a single EasyAnimate/kohya ``.safetensors`` file, or a peft ``adapter_model.safetensors`` given by file name.
Pickle files (``.bin``, ``.pt``, ``.ckpt``) are refused: loading them can run code.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ...utils.atomic import atomic_path, follow_umask
from .format import (
    KEY_STYLES,
    LoraFormatError,
    LoraWeights,
    from_easyanimate,
    from_peft,
    is_easyanimate_state_dict,
    to_easyanimate,
    to_peft,
)

logger = logging.getLogger(__name__)

PEFT_WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_CONFIG_NAME = "adapter_config.json"
EASYANIMATE_LORA_NAME = "easyanimate_lora.safetensors"
RECIPE_NAME = "training_recipe.yaml"  # beside every LoRA a run writes: the recipe that trained it
# The name the original trainer gives the LoRA inside checkpoint-N/ folders; read too.
ORIGINAL_CHECKPOINT_LORA_NAME = "lora_diffusion_pytorch_model.safetensors"
FORMATS = ("peft", "easyanimate")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def save_easyanimate_lora(
    weights: LoraWeights, path: str, dtype: torch.dtype | None = None, key_style: str = "original"
) -> str:
    """Write the EasyAnimate/ComfyUI file (atomically); returns its path."""
    tensors, metadata = to_easyanimate(weights, dtype=dtype, key_style=key_style)
    with atomic_path(path) as temporary:
        save_file(tensors, temporary, metadata=metadata)
    return path


def save_peft_adapter(weights: LoraWeights, directory: str) -> list[str]:
    """Write ``adapter_model.safetensors`` + ``adapter_config.json`` (each atomically); returns their paths."""
    state_dict, config = to_peft(weights)
    weights_path = os.path.join(directory, PEFT_WEIGHTS_NAME)
    config_path = os.path.join(directory, PEFT_CONFIG_NAME)
    with atomic_path(weights_path) as temporary:
        save_file(state_dict, temporary, metadata={"format": "pt"})
    with atomic_path(config_path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2, sort_keys=True)
    return [weights_path, config_path]


def save_peft_model(model, directory: str, state_dict: dict | None = None) -> list[str]:
    """Save a live ``PeftModel`` with peft's own writer, into a scratch folder, then rename each file into place.

    peft writes straight to the target names; going through the scratch folder keeps each file whole, and keeps
    peft's generated README.md out of ``directory`` (the model card there is ours).
    """
    os.makedirs(directory, exist_ok=True)
    scratch = tempfile.mkdtemp(dir=directory, prefix=".adapter-")
    try:
        model.save_pretrained(scratch, state_dict=state_dict, save_embedding_layers=False)
        written = []
        for name in (PEFT_WEIGHTS_NAME, PEFT_CONFIG_NAME):
            follow_umask(os.path.join(scratch, name))  # safetensors writes 0600
            os.replace(os.path.join(scratch, name), os.path.join(directory, name))
            written.append(os.path.join(directory, name))
        return written
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --- reading ---------------------------------------------------------------------------------------------------------

def _load_safetensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(path, framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
    except Exception as error:  # SafetensorError, OSError: say which file
        raise LoraFormatError(f"{path}: not a readable safetensors file ({error})") from error


def _looks_like_repo_id(path: str) -> bool:
    return path.count("/") == 1 and not path.startswith((".", "/", "~")) and not path.endswith(".safetensors")


def download_lora(repo_id: str) -> str:
    """Fetch only the LoRA files of a Hub repo (never anything else it may hold); returns the local folder."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(
            repo_id, allow_patterns=[PEFT_WEIGHTS_NAME, PEFT_CONFIG_NAME, EASYANIMATE_LORA_NAME]
        )
    except Exception as error:  # offline, missing repo, no access: say so, naming the repo
        raise LoraFormatError(
            f"{repo_id}: not a local file or folder, and not downloadable from the Hub ({error})"
        ) from error


def find_lora_file(path: str) -> str:
    """The LoRA file for a file or folder path; in a folder the peft adapter wins (it keeps float32 weights)."""
    if os.path.isdir(path):
        for name in (PEFT_WEIGHTS_NAME, EASYANIMATE_LORA_NAME, ORIGINAL_CHECKPOINT_LORA_NAME):
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise LoraFormatError(
            f"{path}: no LoRA found; expected {PEFT_WEIGHTS_NAME} (+ {PEFT_CONFIG_NAME}) or {EASYANIMATE_LORA_NAME}"
        )
    if not os.path.isfile(path):
        if _looks_like_repo_id(path):
            return find_lora_file(download_lora(path))
        raise LoraFormatError(f"{path}: no such file or folder")
    if os.path.basename(path) == PEFT_CONFIG_NAME:
        return find_lora_file(os.path.dirname(path) or ".")
    if not path.endswith(".safetensors"):
        raise LoraFormatError(f"{path}: only .safetensors LoRA files are read (pickle files can run code)")
    return path


def read_lora(path: str) -> LoraWeights:
    """Read a LoRA in either format from a file or a training output / checkpoint folder."""
    file = find_lora_file(path)
    tensors, metadata = _load_safetensors(file)
    if not any("lora" in key for key in tensors):
        examples = ", ".join(sorted(tensors)[:3])
        raise LoraFormatError(
            f"{file}: no LoRA keys in it ({len(tensors)} tensors, e.g. {examples}): this looks like model weights, "
            "not a LoRA (LoRA keys hold lora_A/lora_B or lora_down/lora_up)"
        )
    if is_easyanimate_state_dict(tensors):
        return from_easyanimate(tensors, metadata, source=file)
    config_path = os.path.join(os.path.dirname(file), PEFT_CONFIG_NAME)
    if not os.path.isfile(config_path):
        raise LoraFormatError(f"{file}: a peft adapter needs {PEFT_CONFIG_NAME} beside it (it holds alpha and rank)")
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    return from_peft(tensors, config, source=file)


def export_lora(
    source: str, to: str, output: str, dtype: str | None = None, key_style: str = "original", overwrite: bool = False
) -> list[str]:
    """Convert a LoRA to ``to`` ('peft' | 'easyanimate'); returns the written files.

    For 'easyanimate', ``output`` is a ``.safetensors`` file or a folder (the file is then
    ``easyanimate_lora.safetensors`` inside it); for 'peft' it is a folder. Existing files are never replaced
    unless ``overwrite``.
    """
    if to not in FORMATS:
        raise ValueError(f"--to must be one of {FORMATS}, got {to!r}")
    if key_style not in KEY_STYLES:
        raise ValueError(f"--key_style must be one of {KEY_STYLES}, got {key_style!r}")
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
    if to == "peft" and output.endswith(".safetensors"):
        raise ValueError(f"--to peft writes a folder (adapter_model.safetensors + adapter_config.json), not {output}")
    writes_folder = to == "peft" or not output.endswith(".safetensors")
    if writes_folder and os.path.exists(output) and not os.path.isdir(output):
        raise ValueError(f"{output} is an existing file, but --to {to} writes a folder there; choose a folder"
                         + ("" if to == "peft" else " or a .safetensors file name"))
    if to == "easyanimate":
        targets = [output if output.endswith(".safetensors") else os.path.join(output, EASYANIMATE_LORA_NAME)]
    else:
        targets = [os.path.join(output, name) for name in (PEFT_WEIGHTS_NAME, PEFT_CONFIG_NAME)]
    existing = [path for path in targets if os.path.exists(path)]
    if existing and not overwrite:
        raise ValueError(f"{', '.join(existing)} already exists; pass --overwrite to replace it, or choose another "
                         "output")
    weights = read_lora(source)
    target_dtype = DTYPES[dtype] if dtype else None
    if to == "easyanimate":
        return [save_easyanimate_lora(weights, targets[0], dtype=target_dtype, key_style=key_style)]
    if target_dtype is not None:
        for module in weights.modules.values():
            module.down, module.up = module.down.to(target_dtype), module.up.to(target_dtype)
    return save_peft_adapter(weights, output)
