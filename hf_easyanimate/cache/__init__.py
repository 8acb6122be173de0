"""Latent and prompt-embedding cache: encode once with ``hf-easyanimate precompute``, train many epochs."""

from .data import CachedCollator, CachedDataset, CachedInpaintMasks, CacheMissError, CacheSpec, check_complete
from .keys import latent_key, prompt_key, text_fingerprint, vae_fingerprint
from .store import LatentCache, ShardWriter

__all__ = [
    "CacheMissError",
    "CacheSpec",
    "CachedCollator",
    "CachedDataset",
    "CachedInpaintMasks",
    "LatentCache",
    "ShardWriter",
    "check_complete",
    "latent_key",
    "prompt_key",
    "text_fingerprint",
    "vae_fingerprint",
]
