"""LoRA targets, the EasyAnimate/kohya spelling, hashes, peft configs and atomic files, on tiny modules (fast)."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch
from diffusers import EasyAnimateTransformer3DModel
from peft import get_peft_model, set_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import save_file

from hf_easyanimate.inference import merge_lora
from hf_easyanimate.models.lora import (
    LoraTargetError,
    add_lora,
    build_lora_config,
    linear_module_paths,
    require_linear_targets,
)
from hf_easyanimate.models.lora import files as lora_files
from hf_easyanimate.models.lora.files import read_lora, save_easyanimate_lora, save_peft_adapter
from hf_easyanimate.models.lora.format import (
    LoraFormatError,
    LoraModule,
    LoraWeights,
    from_easyanimate,
    kohya_name,
    template_resolver,
    to_easyanimate,
    to_peft,
)


def tiny_transformer(add_norm: bool = False, num_layers: int = 2, mmdit_layers: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    return EasyAnimateTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, patch_size=2,
        num_layers=num_layers, mmdit_layers=mmdit_layers, time_embed_dim=8, text_embed_dim=16,
        add_norm_text_encoder=add_norm, sample_height=16, sample_width=16,
    ).eval()


def random_weights(model: torch.nn.Module, rank: int = 4, alpha: float = 8.0, seed: int = 0) -> LoraWeights:
    generator = torch.Generator().manual_seed(seed)
    modules = {}
    for path in linear_module_paths(model):
        layer = model.get_submodule(path)
        modules[path] = LoraModule(
            down=torch.randn(rank, layer.in_features, generator=generator) * 0.1,
            up=torch.randn(layer.out_features, rank, generator=generator) * 0.1,
            alpha=alpha,
        )
    return LoraWeights(modules, base_model="tiny/base")


@pytest.mark.parametrize("add_norm", [False, True])
def test_default_targets_are_every_linear_like_the_original_network(add_norm):
    model = tiny_transformer(add_norm=add_norm)
    linears = set(linear_module_paths(model))
    peft_model = add_lora(model, build_lora_config(model, rank=4, alpha=8))
    adapted = {name.removesuffix(".lora_A") for name, _ in peft_model.get_base_model().named_modules()
               if name.endswith(".lora_A")}
    assert adapted == linears
    # adaLN modulation, time embedding, text projection and output head are adapted, as in the original;
    # the 2x2 patch-embedding convolution is not.
    text_proj = "text_proj.1" if add_norm else "text_proj"
    for path in ("time_embedding.linear_1", text_proj, "transformer_blocks.0.norm1.linear", "norm_out.linear",
                 "proj_out", "transformer_blocks.0.attn1.add_q_proj", "transformer_blocks.1.ff.net.2"):
        assert path in adapted
    assert "proj" not in adapted
    config = peft_model.peft_config["default"]
    assert config.r == 4 and config.lora_alpha == 8 and config.lora_dropout == 0.0


def test_target_override_names_a_regex_or_fails_clearly():
    model = tiny_transformer()
    peft_model = add_lora(model, build_lora_config(model, 4, 4, target_modules=["to_q", "to_v"]))
    adapted = {n for n, _ in peft_model.get_base_model().named_modules() if n.endswith(".lora_A")}
    assert adapted == {"transformer_blocks.0.attn1.to_q.lora_A", "transformer_blocks.0.attn1.to_v.lora_A",
                       "transformer_blocks.1.attn1.to_q.lora_A", "transformer_blocks.1.attn1.to_v.lora_A"}
    model = tiny_transformer()
    regex = add_lora(model, build_lora_config(model, 4, 4, target_modules=[r".*\.ff\.net\.2"]))
    assert {n for n, _ in regex.get_base_model().named_modules() if n.endswith(".lora_A")} == {
        "transformer_blocks.0.ff.net.2.lora_A", "transformer_blocks.1.ff.net.2.lora_A"}
    with pytest.raises(LoraTargetError, match="lora_target_modules"):
        add_lora(tiny_transformer(), build_lora_config(model, 4, 4, target_modules=["no_such_layer"]))
    conv = add_lora(tiny_transformer(), build_lora_config(model, 4, 4, target_modules=["proj", "to_q"]))
    with pytest.raises(LoraTargetError, match="proj.*--save_lora_format peft"):
        require_linear_targets(conv)


def test_kohya_names_are_the_original_networks_names():
    # The original walks the transformer root (name ""), so names are "lora_unet" + "." + "" + "." + path.
    assert kohya_name("transformer_blocks.0.attn1.to_q") == "lora_unet__transformer_blocks_0_attn1_to_q"
    assert kohya_name("transformer_blocks.3.attn1.to_out.0") == "lora_unet__transformer_blocks_3_attn1_to_out_0"
    # diffusers folds the original's text-stream attention `attn2` into attn1's added projections.
    assert kohya_name("transformer_blocks.0.attn1.add_q_proj") == "lora_unet__transformer_blocks_0_attn2_to_q"
    assert kohya_name("transformer_blocks.7.attn1.to_add_out") == "lora_unet__transformer_blocks_7_attn2_to_out_0"
    assert kohya_name("transformer_blocks.0.attn1.add_q_proj", "diffusers") == (
        "lora_unet__transformer_blocks_0_attn1_add_q_proj")
    assert kohya_name("text_proj.1") == "lora_unet__text_proj_1"
    resolver = template_resolver()
    for path in linear_module_paths(tiny_transformer(add_norm=True, num_layers=12, mmdit_layers=11)):
        for style in ("original", "diffusers"):
            name = kohya_name(path, style)
            assert resolver.resolve(name) == path
            assert resolver.resolve(name.replace("lora_unet__", "lora_unet_")) == path  # single underscore too
    assert resolver.resolve("lora_unet__transformer_blocks_0_attn3_to_q") is None


def test_model_hash_is_the_tensor_data_hash_and_legacy_hash_follows_the_original_rule(tmp_path):
    model = tiny_transformer()
    small = random_weights(model)
    path = save_easyanimate_lora(small, str(tmp_path / "small.safetensors"))
    with safe_open(path, "pt") as handle:
        metadata = handle.metadata()
    raw = open(path, "rb").read()
    header = int.from_bytes(raw[:8], "little")
    assert metadata["sshs_model_hash"] == hashlib.sha256(raw[8 + header:]).hexdigest()
    assert metadata["sshs_legacy_hash"] == hashlib.sha256(b"").hexdigest()[:8]  # file under 1 MiB: empty read

    # A LoRA over 1 MiB: the legacy hash reads 64 KiB at 1 MiB of the file written with only ss_* metadata.
    big = LoraWeights({"proj_out": LoraModule(torch.randn(64, 8192), torch.randn(16, 64), 32.0)}, base_model="m")
    tensors, metadata = to_easyanimate(big)
    ss_only = str(tmp_path / "ss_only.safetensors")
    save_file(tensors, ss_only, metadata={k: v for k, v in metadata.items() if k.startswith("ss_")})
    chunk = open(ss_only, "rb").read()[0x100000:0x110000]
    assert len(chunk) == 0x10000
    assert metadata["sshs_legacy_hash"] == hashlib.sha256(chunk).hexdigest()[:8]
    assert metadata["ss_network_dim"] == "64" and metadata["ss_network_alpha"] == "32"


def test_easyanimate_file_holds_down_up_alpha_in_the_chosen_dtype(tmp_path):
    weights = random_weights(tiny_transformer(), rank=4, alpha=64)
    path = save_easyanimate_lora(weights, str(tmp_path / "lora.safetensors"), dtype=torch.bfloat16)
    with safe_open(path, "pt") as handle:
        keys = set(handle.keys())
        alpha = handle.get_tensor("lora_unet__proj_out.alpha")
        down = handle.get_tensor("lora_unet__transformer_blocks_0_attn2_to_k.lora_down.weight")
    assert len(keys) == 3 * len(weights.modules)
    assert all(k.startswith("lora_unet__") and k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha"))
               for k in keys)
    assert alpha.dim() == 0 and alpha.dtype == torch.bfloat16 and alpha.item() == 64
    assert down.dtype == torch.bfloat16 and down.shape == (4, 32)


def test_peft_reads_our_rank_and_alpha_patterns_as_we_do():
    """A LoRA with mixed ranks/alphas (e.g. from another tool) keeps every layer's scale in the peft config."""
    model = tiny_transformer()
    weights = random_weights(model, rank=4, alpha=8.0)
    generator = torch.Generator().manual_seed(1)
    weights.modules["proj_out"] = LoraModule(torch.randn(2, 32, generator=generator),
                                             torch.randn(16, 2, generator=generator), alpha=1.0)
    weights.modules["transformer_blocks.1.attn1.to_q"].alpha = 3.0
    weights.peft_config = None
    state_dict, config = to_peft(weights)
    assert config["r"] == 4 and config["lora_alpha"] == 8
    from peft import LoraConfig

    peft_model = get_peft_model(model, LoraConfig(**{k: v for k, v in config.items() if k in (
        "r", "lora_alpha", "target_modules", "rank_pattern", "alpha_pattern")}))
    result = set_peft_model_state_dict(peft_model, state_dict)
    assert not result.unexpected_keys
    base = peft_model.get_base_model()
    for path, module in weights.modules.items():
        layer = base.get_submodule(path)
        assert layer.r["default"] == module.rank, path
        assert layer.scaling["default"] == pytest.approx(module.scale), path
        torch.testing.assert_close(layer.lora_B["default"].weight, module.up, rtol=0, atol=0)


def test_round_trip_through_both_files_is_exact(tmp_path):
    weights = random_weights(tiny_transformer(), rank=4, alpha=8.0)
    save_peft_adapter(weights, str(tmp_path / "peft"))
    from_peft_dir = read_lora(str(tmp_path / "peft"))
    save_easyanimate_lora(from_peft_dir, str(tmp_path / "ea.safetensors"))
    again = read_lora(str(tmp_path / "ea.safetensors"))
    assert again.base_model == "tiny/base" and set(again.modules) == set(weights.modules)
    for path, module in weights.modules.items():
        assert torch.equal(again.modules[path].down, module.down) and torch.equal(again.modules[path].up, module.up)
        assert again.modules[path].alpha == module.alpha


def test_interrupted_write_keeps_the_previous_file_and_leaves_no_partial_file(tmp_path, monkeypatch):
    weights = random_weights(tiny_transformer())
    path = str(tmp_path / "lora.safetensors")
    save_easyanimate_lora(weights, path)
    before = open(path, "rb").read()

    def crash(tensors, filename, metadata=None):
        open(filename, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(lora_files, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_easyanimate_lora(random_weights(tiny_transformer(), seed=5), path)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["lora.safetensors"]


def test_unreadable_inputs_say_what_is_wrong(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"\x80pickle")
    with pytest.raises(LoraFormatError, match="pickle"):
        read_lora(str(tmp_path / "model.bin"))
    with pytest.raises(LoraFormatError, match="no LoRA found"):
        read_lora(str(tmp_path))
    save_file({"base_model.model.proj_out.lora_A.weight": torch.zeros(2, 4),
               "base_model.model.proj_out.lora_B.weight": torch.zeros(4, 2)}, str(tmp_path / "adapter.safetensors"))
    with pytest.raises(LoraFormatError, match="adapter_config.json"):
        read_lora(str(tmp_path / "adapter.safetensors"))
    with pytest.raises(LoraFormatError, match="text-encoder"):
        from_easyanimate({"lora_te_encoder_block_0_layer_0_SelfAttention_q.lora_down.weight": torch.zeros(2, 4)})
    with pytest.raises(LoraFormatError, match="lora_unet__no_such_layer"):
        from_easyanimate({"lora_unet__no_such_layer.lora_down.weight": torch.zeros(2, 4),
                          "lora_unet__no_such_layer.lora_up.weight": torch.zeros(4, 2)})


def test_a_lora_for_another_model_changes_nothing(tmp_path):
    small, wide = tiny_transformer(), EasyAnimateTransformer3DModel(
        num_attention_heads=4, attention_head_dim=16, in_channels=4, out_channels=4, patch_size=2, num_layers=2,
        mmdit_layers=1, time_embed_dim=8, text_embed_dim=16, sample_height=16, sample_width=16)
    before = {k: v.clone() for k, v in wide.state_dict().items()}
    with pytest.raises(LoraFormatError, match="does not fit"):
        merge_lora(wide, random_weights(small))
    assert all(torch.equal(before[k], v) for k, v in wide.state_dict().items())


def test_a_hub_repo_id_downloads_only_the_lora_files(tmp_path, monkeypatch):
    import huggingface_hub

    save_peft_adapter(random_weights(tiny_transformer()), str(tmp_path / "snapshot"))
    requests = []

    def fake_snapshot_download(repo_id, allow_patterns=None, **kwargs):
        requests.append((repo_id, sorted(allow_patterns)))
        return str(tmp_path / "snapshot")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    weights = read_lora("someone/tiny-lora")
    assert requests == [("someone/tiny-lora", ["adapter_config.json", "adapter_model.safetensors",
                                               "easyanimate_lora.safetensors"])]
    assert len(weights.modules) == 27 and weights.base_model == "tiny/base"


def test_lora_initialisation_depends_on_the_seed_only():
    from hf_easyanimate.assembly import build_lora_model
    from hf_easyanimate.config import ModelArguments
    from hf_easyanimate.trainers import EasyAnimateTrainingArguments

    def initial_lora(seed: int) -> dict:
        torch.randn(7)  # whatever ran before must not matter
        args = EasyAnimateTrainingArguments(output_dir="unused", seed=seed, report_to="none")
        model = build_lora_model(tiny_transformer(), ModelArguments(rank=4, network_alpha=4), args)
        return {k: v.clone() for k, v in model.state_dict().items() if "lora_A" in k}

    first, second, other = initial_lora(3), initial_lora(3), initial_lora(4)
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not torch.equal(first["base_model.model.proj_out.lora_A.default.weight"],
                           other["base_model.model.proj_out.lora_A.default.weight"])
