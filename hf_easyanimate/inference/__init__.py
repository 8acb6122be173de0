"""Using a trained LoRA: merge it into diffusers' EasyAnimate pipelines, render clips at the size it was trained
at, and compare a run's checkpoints on the same prompts and seeds."""

from ..models.pipelines import load_pipeline
from .lora_merge import load_lora_into_pipeline, merge_lora, unmerge_lora
from .render import first_frame_conditioning, render_video, trained_size

__all__ = [
    "first_frame_conditioning",
    "load_lora_into_pipeline",
    "load_pipeline",
    "merge_lora",
    "render_video",
    "trained_size",
    "unmerge_lora",
]
