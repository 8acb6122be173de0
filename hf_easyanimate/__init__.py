"""LoRA training for EasyAnimate video diffusion transformers, the Hugging Face way."""

__version__ = "0.1.0"
