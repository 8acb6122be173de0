"""EasyAnimate V4 (HunyuanDiT video), V3 and V2 (PixArt-alpha with motion modules) and their MagVIT VAE.

diffusers ships only the V5.1 architecture; these ports keep the original checkpoints' module names, shapes and
persistent buffers (the Hub files load with a strict key check) and the original ``forward`` keywords.
"""

from .hunyuan import HunyuanTransformer3DModel
from .loading import (
    LegacyLoadError,
    load_image_encoder,
    load_legacy_transformer,
    load_legacy_vae,
    version_of_config,
)
from .pixart import Transformer3DModel
from .vae import LegacyMagvitVAE

__all__ = [
    "HunyuanTransformer3DModel",
    "LegacyLoadError",
    "LegacyMagvitVAE",
    "Transformer3DModel",
    "load_image_encoder",
    "load_legacy_transformer",
    "load_legacy_vae",
    "version_of_config",
]
