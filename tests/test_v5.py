"""V5 (BERT + T5) repos: layout, original-key conversion on load, prompt encoding for both encoders."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import run_cli
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hf_easyanimate.models.easyanimate.loading import (
    convert_diffusers_transformer_keys,
    convert_original_transformer_keys,
)
from hf_easyanimate.models.loading import ModelLoadError, load_components
from hf_easyanimate.models.text import DualPromptEncoder, build_prompt_encoder
from hf_easyanimate.testing import BERT_MAX_LENGTH, T5_MAX_LENGTH, TinyModelConfig, build_tiny_components


def test_v5_repo_has_the_release_layout_with_original_transformer_names(tiny_v5_model_dir):
    index = json.load(open(os.path.join(tiny_v5_model_dir, "model_index.json")))
    assert index["text_encoder"] == ["transformers", "BertModel"]
    assert index["text_encoder_2"] == ["transformers", "T5EncoderModel"]
    assert index["tokenizer_2"] == ["transformers", "T5Tokenizer"]
    assert index["scheduler"] == ["diffusers", "DDIMScheduler"]
    weights = os.path.join(tiny_v5_model_dir, "transformer", "diffusion_pytorch_model.safetensors")
    with safe_open(weights, framework="pt") as handle:
        keys = list(handle.keys())
    assert any(".attn2.to_q." in key for key in keys)
    assert not any("add_q_proj" in key or "to_add_out" in key for key in keys)


def test_v5_load_converts_original_keys_to_the_diffusers_transformer(tiny_v5_model_dir):
    components = load_components(tiny_v5_model_dir)
    assert components.version == "v5" and components.text_attention_mask is False
    assert type(components.tokenizer).__name__ == "BertTokenizer"
    assert type(components.text_encoder_2).__name__ == "T5EncoderModel"
    reference = build_tiny_components(version="v5", seed=0)["transformer"].state_dict()
    loaded = components.transformer.state_dict()
    assert set(loaded) == set(reference)
    for key, value in reference.items():
        assert torch.equal(loaded[key], value), key
    assert not any(p.requires_grad for p in components.transformer.parameters())


def test_key_conversion_round_trips_and_only_touches_the_text_stream():
    state = build_tiny_components(version="v5", seed=0)["transformer"].state_dict()
    original = convert_diffusers_transformer_keys(state)
    renamed = {k for k in state if k not in original}
    assert renamed and all(any(p in k for p in ("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
                                                "norm_added_q", "norm_added_k")) for k in renamed)
    assert "transformer_blocks.0.attn2.to_out.0.weight" in original
    assert "transformer_blocks.0.attn2.norm_q.weight" in original
    assert convert_original_transformer_keys(original).keys() == state.keys()


def test_original_layout_with_unknown_keys_is_refused(tiny_v5_model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_v5_model_dir, broken)
    weights = broken / "transformer" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    state["transformer_blocks.0.attn2.extra.weight"] = torch.zeros(1)
    save_file(state, str(weights))
    with pytest.raises(ModelLoadError, match="1 unexpected"):
        load_components(str(broken))


def test_v5_prompts_reach_both_text_inputs_of_the_transformer(tiny_v5_model_dir):
    components = load_components(tiny_v5_model_dir)
    encoder = build_prompt_encoder(components, max_length=256)
    assert isinstance(encoder, DualPromptEncoder) and len(encoder.text_encoders) == 2
    out = encoder(["a red disc moving left", ""])
    config = TinyModelConfig()
    # Max length: min(tokenizer.model_max_length, --tokenizer_max_length) per encoder.
    assert out["encoder_hidden_states"].shape == (2, BERT_MAX_LENGTH, config.text_hidden_size)
    assert out["encoder_hidden_states_t5"].shape == (2, T5_MAX_LENGTH, config.t5_hidden_size)
    assert out["encoder_attention_mask"][1].sum() == 0 and out["encoder_attention_mask"][0].sum() == 5
    # No special tokens: the first BERT token is the word "a", not [CLS].
    ids = components.tokenizer(["a red disc"], add_special_tokens=False).input_ids[0]
    assert ids[0] == components.tokenizer.convert_tokens_to_ids("a")
    # Without attention masks (V5's config): identical to calling BERT with no mask.
    tokens = components.tokenizer(["a red disc moving left", ""], padding="max_length", max_length=BERT_MAX_LENGTH,
                                  truncation=True, add_special_tokens=False, return_tensors="pt")
    direct = components.text_encoder(input_ids=tokens.input_ids)[0]
    torch.testing.assert_close(out["encoder_hidden_states"], direct)
    short = DualPromptEncoder(components.tokenizer, components.text_encoder, components.tokenizer_2,
                              components.text_encoder_2, max_length=16, use_attention_mask=True)(["a red disc"])
    assert short["encoder_hidden_states"].shape[1] == 16 and short["encoder_hidden_states_t5"].shape[1] == 16
    x = torch.randn(2, 4, 2, 4, 4)
    pred = components.transformer(x, torch.tensor([10.0, 900.0]), encoder_hidden_states=out["encoder_hidden_states"],
                                  encoder_hidden_states_t5=out["encoder_hidden_states_t5"], return_dict=False)[0]
    assert pred.shape == x.shape


def test_original_yaml_turns_v5_text_masks_on(tiny_v5_model_dir, tmp_path):
    config = tmp_path / "easyanimate_video_v5_magvit_multi_text_encoder.yaml"
    config.write_text("transformer_additional_kwargs:\n  transformer_type: EasyAnimateTransformer3DModel\n"
                      "  enable_text_attention_mask: true\ntext_encoder_kwargs:\n  enable_multi_text_encoder: true\n")
    components = load_components(tiny_v5_model_dir, config_path=str(config))
    assert components.text_attention_mask is True
    assert build_prompt_encoder(components).use_attention_mask is True


def test_cli_makes_a_v5_inpaint_repo(tmp_path):
    result = run_cli("make-tiny-model", str(tmp_path / "m"), "--version", "v5", "--inpaint")
    assert result.returncode == 0, result.stderr
    components = load_components(str(tmp_path / "m"))
    assert components.version == "v5" and components.is_inpaint
