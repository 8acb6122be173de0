"""The frozen encoders (VAE + text encoder), kept outside the model that Trainer optimises."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .text import PromptEncoder
from .vae import encode_pixels, sample_posterior


def is_skeleton(module: torch.nn.Module) -> bool:
    """True for a module built on the meta device (config only, no weights)."""
    return any(parameter.is_meta for parameter in module.parameters())


class FrozenEncoders:
    """Encodes pixels and captions; with ``low_vram`` each encoder visits the accelerator only to encode.

    Keeping these out of the optimised model means DDP/DeepSpeed wrap only the transformer and the
    12B-scale encoders never enter checkpoints.
    """

    def __init__(
        self,
        vae: torch.nn.Module,
        prompt_encoder: PromptEncoder,
        device: torch.device | str,
        low_vram: bool = False,
        vae_mini_batch: int = 32,
        image_encoder=None,
    ) -> None:
        self.vae = vae
        self.prompt_encoder = prompt_encoder
        self.image_encoder = image_encoder  # V3/V4 InP: a ReferenceImageEncoder (models/image_encoder.py)
        self.device = torch.device(device)
        self.low_vram = low_vram
        self.vae_mini_batch = vae_mini_batch
        self.home = torch.device("cpu") if low_vram else self.device
        self.loaded = not any(is_skeleton(m) for m in (self.vae, *self.prompt_encoder.text_encoders,
                                                       *self._image_modules))
        if self.loaded:
            self.vae.to(self.home)
            for module in (*self.prompt_encoder.text_encoders, *self._image_modules):
                module.to(self.home)

    @property
    def _image_modules(self) -> list[torch.nn.Module]:
        return self.image_encoder.modules if self.image_encoder is not None else []

    def _require_weights(self) -> None:
        if not self.loaded:
            raise RuntimeError(
                "the VAE and text encoder were built without weights (training from --latent_cache_dir with no "
                "--eval_data_meta and no --validation_prompts needs neither); nothing may encode with them"
            )

    @contextlib.contextmanager
    def _on_device(self, *modules: torch.nn.Module) -> Iterator[None]:
        if not self.low_vram:
            yield
            return
        for module in modules:
            module.to(self.device)
        try:
            yield
        finally:
            for module in modules:
                module.to(self.home)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def encode_pixels(self, pixels: torch.Tensor, sample: bool = True) -> torch.Tensor:
        """Scaled latents; ``sample=False`` takes the posterior mode (inpaint conditioning)."""
        self._require_weights()
        with self._on_device(self.vae):
            return encode_pixels(self.vae, pixels, self.vae_mini_batch, sample=sample).to(self.device)

    def encode_prompts(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        self._require_weights()
        with self._on_device(*self.prompt_encoder.text_encoders):
            encoded = self.prompt_encoder(prompts, device=self.device if not self.low_vram else None)
        return {key: value.to(self.device) for key, value in encoded.items()}

    def encode_reference_images(self, clip_pixel_values: torch.Tensor) -> torch.Tensor:
        """CLIP features of each sample's reference frame (see :class:`ReferenceImageEncoder`)."""
        self._require_weights()
        if self.image_encoder is None:
            raise RuntimeError("this model has no CLIP image encoder (only V3/V4 inpaint models take reference frames)")
        with self._on_device(*self._image_modules):
            return self.image_encoder(clip_pixel_values, device=self.device).to(self.device)

    def sample_latents(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """Scaled latents from a cached posterior (no VAE pass: only its scaling factor is read)."""
        return sample_posterior(mean, std, self.vae_mini_batch, float(self.vae.config.scaling_factor))
