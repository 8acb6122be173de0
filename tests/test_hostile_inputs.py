"""Hostile inputs that do not depend on the data pipeline: captions, pickle weights, interrupted file writes.

(Hostile metadata files and clips are covered with the data pipeline's own tests.)
"""

from __future__ import annotations

import os
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file

import hf_easyanimate
from hf_easyanimate.models.loading import ModelLoadError, load_components
from hf_easyanimate.models.text import PromptEncoder
from hf_easyanimate.utils.atomic import atomic_path
from hf_easyanimate.utils.media import contact_sheet, write_mp4

MAX_LENGTH = 32
CAPTIONS = {
    "empty": "",
    "whitespace": " \n\t  \r\n",
    "huge_200k_chars": "a red square moving left " * 8000,
    "one_200k_char_word": "x" * 200_000,
    "emoji_cjk_rtl": "😀👩‍👩‍👧 一只红色的猫 قطة حمراء חתול אדום Кошка",
    "control_and_nul": "a\x00b\x1b[31mred\x7f\u200b\u200e\ufeffcat",
    "combining_marks": "Z\u0336\u0351\u0307a\u0336\u0301l\u0336g\u0337o" * 200,
    "lone_surrogate": "a split emoji \ud83d here",
}


@pytest.fixture(scope="module")
def prompt_encoder(tiny_model_dir) -> PromptEncoder:
    components = load_components(tiny_model_dir)
    return PromptEncoder(components.tokenizer, components.text_encoder, max_length=MAX_LENGTH)


@pytest.mark.parametrize("caption", list(CAPTIONS.values()), ids=list(CAPTIONS))
def test_any_caption_encodes_to_a_fixed_size_finite_embedding(prompt_encoder, caption):
    encoded = prompt_encoder([caption, "a blue disc"])
    hidden, mask = encoded["encoder_hidden_states"], encoded["encoder_attention_mask"]
    assert hidden.shape == (2, MAX_LENGTH, prompt_encoder.text_encoder.config.text_config.hidden_size)
    assert torch.isfinite(hidden).all()
    assert 0 < int(mask[0].sum()) <= MAX_LENGTH
    if len(caption) > 1000:
        assert int(mask[0].sum()) == MAX_LENGTH  # truncated by the tokenizer, not rejected


def test_valid_unicode_is_encoded_unchanged_and_a_lone_surrogate_is_replaced(prompt_encoder):
    caption = CAPTIONS["emoji_cjk_rtl"]
    assert prompt_encoder._chat(caption) == prompt_encoder.tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": caption}]}], tokenize=False, add_generation_prompt=True
    )
    assert "a split emoji ? here" in prompt_encoder._chat(CAPTIONS["lone_surrogate"])


def test_contact_sheet_labels_survive_hostile_captions(tmp_path):
    frames = torch.randint(0, 255, (3, 16, 16, 3), dtype=torch.uint8).numpy()
    sheet = contact_sheet([frames, frames], [CAPTIONS["lone_surrogate"], CAPTIONS["huge_200k_chars"]])
    # 16 px frames are enlarged x16 to the sheet's 256 px minimum; 2 px gaps between the 3 frames
    assert sheet.shape[1] == 3 * 256 + 2 * 2 and sheet.dtype.name == "uint8"


def test_a_repo_with_only_pickle_weights_is_refused(tiny_model_dir, tmp_path):
    repo = str(tmp_path / "pickle-repo")
    shutil.copytree(tiny_model_dir, repo)
    weights = os.path.join(repo, "transformer", "diffusion_pytorch_model.safetensors")
    torch.save(load_file(weights), os.path.join(repo, "transformer", "diffusion_pytorch_model.bin"))
    os.remove(weights)
    with pytest.raises(ModelLoadError, match="safetensors files only; pickle .bin weights are refused"):
        load_components(repo)


def test_no_pickle_loading_or_remote_code_in_the_package():
    """Audit: weights and LoRA files load through safetensors; nothing enables trust_remote_code. The one pickle
    reader (the V2-V4 releases' .bin weights) is torch.load(weights_only=True), which refuses arbitrary objects."""
    root = os.path.dirname(hf_easyanimate.__file__)
    offending = []
    pattern = re.compile(
        r"torch\.load\(|import pickle|pickle\.loads?\(|import dill|allow_pickle\s*=\s*True"
        r"|trust_remote_code\s*=\s*True|use_safetensors\s*=\s*False"
    )
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                for number, line in enumerate(open(path, encoding="utf-8"), 1):
                    if pattern.search(line) and not ("torch.load(" in line and "weights_only=True" in line):
                        offending.append(f"{os.path.relpath(path, root)}:{number}: {line.strip()}")
    assert offending == []


def test_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "clip.mp4"
    target.write_bytes(b"previous")
    with pytest.raises(OSError, match="No space left"):
        with atomic_path(str(target)) as temporary:
            with open(temporary, "wb") as handle:
                handle.write(b"half a clip")
            raise OSError(28, "No space left on device")
    assert target.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["clip.mp4"]
    frames = torch.randint(0, 255, (3, 15, 17, 3), dtype=torch.uint8).numpy()  # odd sides are padded for H.264
    write_mp4(str(target), frames)
    assert target.read_bytes()[4:8] == b"ftyp" and os.listdir(tmp_path) == ["clip.mp4"]
