"""Where a model is: a local folder or a Hub id (downloaded, or the cache when offline), checked before anything
loads so that a typo costs a second, not a download."""

from __future__ import annotations

import os

from .errors import ModelLoadError

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


def has_component(path: str, subfolder: str, filename: str, revision: str | None, cache_dir: str | None) -> bool:
    """Whether ``subfolder/filename`` exists locally, or (a Hub id) can be fetched or is in the cache."""
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, subfolder, filename))
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(path, filename, subfolder=subfolder, revision=revision, cache_dir=cache_dir)
        return True
    except Exception:
        return False


def local_snapshot(path: str, revision: str | None, cache_dir: str | None) -> str:
    """A folder holding the repo: ``path`` itself, or its Hub snapshot (downloaded, or the cache when offline)."""
    if os.path.isdir(path):
        return path
    from huggingface_hub import snapshot_download

    return snapshot_download(path, revision=revision, cache_dir=cache_dir)


def read_json_file(path: str, filename: str, subfolder: str | None = None, revision: str | None = None,
                   cache_dir: str | None = None) -> dict:
    """``[subfolder/]filename`` of a model folder or Hub repo (downloaded, or the cache when offline), as a dict.

    One reader for every config a run looks at, so that each is read exactly once (``hf_hub_download`` serves a
    cached copy without network when the file is in the cache, and honours ``HF_HUB_OFFLINE``).
    """
    import json

    if os.path.isdir(path):
        local = os.path.join(path, subfolder or "", filename)
    else:
        from huggingface_hub import hf_hub_download

        local = hf_hub_download(path, filename, subfolder=subfolder, revision=revision, cache_dir=cache_dir)
    with open(local, encoding="utf-8") as handle:
        loaded = json.load(handle)
    if not isinstance(loaded, dict):
        raise ValueError(f"{local}: expected a JSON object, got {type(loaded).__name__}")
    return loaded
