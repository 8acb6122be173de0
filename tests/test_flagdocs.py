"""docs/flags.md is generated from the dataclasses; a stale copy fails here."""

from __future__ import annotations

import os

from conftest import REPO_ROOT

from hf_easyanimate.config import LEGACY_FLAGS
from hf_easyanimate.trainers.lora_config import flags_markdown as render


def test_flags_doc_is_up_to_date():
    with open(os.path.join(REPO_ROOT, "docs", "flags.md"), encoding="utf-8") as handle:
        on_disk = handle.read()
    assert on_disk == render(), "regenerate: python -m hf_easyanimate.trainers > docs/flags.md"


def test_every_original_flag_is_documented():
    text = render()
    spec_flags = [
        "train_data_dir", "train_data_meta", "image_sample_size", "video_sample_size", "token_sample_size",
        "video_sample_stride", "video_sample_n_frames", "video_repeat", "enable_bucket", "random_hw_adapt",
        "training_with_video_token_length", "random_frame_crop", "rank", "network_alpha", "train_mode",
        "loss_type", "uniform_sampling", "weighting_scheme", "motion_sub_loss", "vae_mini_batch", "low_vram",
        "enable_xformers_memory_efficient_attention", "validation_prompts", "abnormal_norm_clip_start",
    ]
    for flag in spec_flags + list(LEGACY_FLAGS):
        assert f"`--{flag}`" in text, flag
