"""The tiny repos and demo data behave like the real thing: same layout, same loading path, real mp4s."""

from __future__ import annotations

import json
import os

import decord
import numpy as np
import pytest
import torch
from conftest import run_cli

from hf_easyanimate.models.loading import load_components

EXPECTED_LAYOUT = ("model_index.json", "transformer/config.json", "vae/config.json", "text_encoder/config.json",
                   "tokenizer/tokenizer_config.json", "scheduler/scheduler_config.json")


def test_tiny_repo_has_the_diffusers_layout_and_loads_through_the_real_path(tiny_model_dir):
    for relative in EXPECTED_LAYOUT:
        assert os.path.exists(os.path.join(tiny_model_dir, relative)), relative
    index = json.load(open(os.path.join(tiny_model_dir, "model_index.json")))
    assert index["_class_name"] == "EasyAnimatePipeline"
    assert index["text_encoder"] == ["transformers", "Qwen2VLForConditionalGeneration"]
    assert index["tokenizer"] == ["transformers", "Qwen2Tokenizer"]
    components = load_components(tiny_model_dir)
    assert components.version == "v5.1" and not components.is_inpaint
    assert type(components.tokenizer).__name__ == "Qwen2Tokenizer"
    # Weights are tiny: the whole repo is a few MB.
    size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(tiny_model_dir) for f in files)
    assert size < 8 * 2**20


def test_tiny_inpaint_repo_takes_mask_and_masked_video_channels(tiny_inpaint_model_dir):
    components = load_components(tiny_inpaint_model_dir)
    config = components.transformer.config
    assert components.is_inpaint
    assert config.in_channels == 2 * components.vae.config.latent_channels + 1
    index = json.load(open(os.path.join(tiny_inpaint_model_dir, "model_index.json")))
    assert index["_class_name"] == "EasyAnimateInpaintPipeline"


def test_diffusers_pipeline_loads_the_tiny_repo_and_samples(tiny_model_dir):
    from diffusers import EasyAnimatePipeline

    pipe = EasyAnimatePipeline.from_pretrained(tiny_model_dir)
    video = pipe("a red disc", negative_prompt="", num_frames=5, height=32, width=32, num_inference_steps=2,
                 generator=torch.Generator().manual_seed(0), output_type="pt").frames
    assert video.shape == (1, 5, 3, 32, 32)


def test_tokenizer_is_local_and_truncates_long_prompts(tiny_model_dir):
    from transformers import Qwen2Tokenizer

    tokenizer = Qwen2Tokenizer.from_pretrained(os.path.join(tiny_model_dir, "tokenizer"))
    text = tokenizer.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": "a red disc"}]}],
                                         tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>user\na red disc<|im_end|>")
    ids = tokenizer(text=["red " * 500], truncation=True, max_length=16, padding="max_length").input_ids
    assert len(ids[0]) == 16


def test_demo_data_is_real_video_with_varied_shapes_and_lengths(demo_data):
    rows = json.load(open(demo_data))
    root = os.path.dirname(demo_data)
    videos = [row for row in rows if row["type"] == "video"]
    images = [row for row in rows if row["type"] == "image"]
    assert (len(videos), len(images)) == (8, 4)
    shapes, lengths = set(), set()
    for row in videos:
        reader = decord.VideoReader(os.path.join(root, row["file_path"]))
        first, last = reader[0].asnumpy(), reader[len(reader) - 1].asnumpy()
        shapes.add(first.shape[:2])
        lengths.add(len(reader))
        assert not np.array_equal(first, last), "clips must move"
        assert row["text"].startswith("a ")
    assert len(shapes) >= 4 and len(lengths) >= 3
    assert any(h > w for h, w in shapes) and any(h < w for h, w in shapes)


def test_cli_writes_model_and_data(tmp_path):
    result = run_cli("make-tiny-model", str(tmp_path / "m"), "--inpaint")
    assert result.returncode == 0, result.stderr
    assert load_components(str(tmp_path / "m")).is_inpaint
    result = run_cli("make-demo-data", str(tmp_path / "d"), "--videos", "2", "--images", "1")
    assert result.returncode == 0, result.stderr
    assert len(json.load(open(tmp_path / "d" / "metadata.json"))) == 3


def test_unknown_tiny_version_is_refused(tmp_path):
    from hf_easyanimate.testing import make_tiny_model

    with pytest.raises(ValueError, match="v4"):  # the message lists what exists, V4 included
        make_tiny_model(str(tmp_path), version="v1")
