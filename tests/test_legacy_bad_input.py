"""Broken or mismatched V4 / V3 / V2 inputs stop before training with one message: the file, the keys or the
flags, and the fix (no traceback)."""

from __future__ import annotations

import json
import os
import shutil

import torch
from conftest import RECIPES, demo_overrides
from safetensors.torch import load_file, save_file

from hf_easyanimate.train import main

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")


class Payload:
    """An arbitrary object: unpickling it would run code of this module."""


def copy_of(model_dir: str, tmp_path) -> str:
    target = str(tmp_path / "model")
    shutil.copytree(model_dir, target)
    return target


def run_main(model_dir: str, demo_data: str, tmp_path, capsys, *extra: str) -> tuple[int, str]:
    code = main([DEMO, *demo_overrides(model_dir, demo_data, str(tmp_path / "out")), "--max_steps", "1", *extra])
    return code, capsys.readouterr().err


def test_missing_transformer_keys_are_named_with_a_count(tiny_legacy_dirs, demo_data, tmp_path, capsys):
    model = copy_of(tiny_legacy_dirs("v2"), tmp_path)
    weights = os.path.join(model, "transformer", "diffusion_pytorch_model.safetensors")
    tensors = load_file(weights)
    dropped = sorted(key for key in tensors if ".attn_temporal." in key)[:5]
    save_file({k: v for k, v in tensors.items() if k not in dropped}, weights)
    code, error = run_main(model, demo_data, tmp_path, capsys, "--loss_type", "sigma")
    assert code == 1 and "Traceback" not in error
    assert weights in error and "missing keys 5 (" in error and dropped[0] in error
    assert "re-download" in error  # the fix
    assert not os.path.exists(tmp_path / "out" / "adapter_model.safetensors")


def test_weights_of_another_shape_than_the_config_are_named(tiny_legacy_dirs, demo_data, tmp_path, capsys):
    model = copy_of(tiny_legacy_dirs("v2"), tmp_path)
    config_file = os.path.join(model, "transformer", "config.json")
    config = json.load(open(config_file))
    config["caption_channels"] = 40  # the weights were made for 24
    json.dump(config, open(config_file, "w"))
    code, error = run_main(model, demo_data, tmp_path, capsys, "--loss_type", "sigma")
    assert code == 1 and "other shapes (checkpoint vs config)" in error and "caption_projection.linear_1.weight" in error


def test_a_v3_yaml_on_a_v4_folder_is_refused(tiny_legacy_dirs, demo_data, tmp_path, capsys):
    yaml = tmp_path / "easyanimate_video_v3_slicevae_motion_module.yaml"
    yaml.write_text("transformer_additional_kwargs:\n  transformer_type: Transformer3DModel\n"
                    "  basic_block_type: global_motionmodule\n")
    code, error = run_main(tiny_legacy_dirs("v4"), demo_data, tmp_path, capsys, "--config_path", str(yaml),
                           "--loss_type", "ddpm")
    assert code == 2 and "Traceback" not in error
    assert str(yaml) in error and "describes EasyAnimate V3" in error and "is EasyAnimate V4" in error
    assert "HunyuanTransformer3DModel" in error and "drop --config_path" in error


def test_inpaint_without_the_image_encoder_is_refused(tiny_legacy_dirs, demo_data, tmp_path, capsys):
    model = copy_of(tiny_legacy_dirs("v4-inp"), tmp_path)
    shutil.rmtree(os.path.join(model, "image_encoder"))
    code, error = run_main(model, demo_data, tmp_path, capsys, "--train_mode", "inpaint", "--loss_type", "ddpm")
    assert code == 1 and "needs the CLIP image encoder" in error and "image_encoder/" in error
    assert "--train_mode normal" in error


def test_flow_matching_on_a_legacy_model_is_refused(tiny_legacy_dirs, demo_data, tmp_path, capsys):
    code, error = run_main(tiny_legacy_dirs("v4"), demo_data, tmp_path, capsys)  # the demo recipe says flow
    assert code == 1 and "--loss_type flow" in error and "--loss_type ddpm" in error and "V4" in error


def test_validation_sampling_is_refused_at_parse_time(tiny_legacy_dirs, demo_data, tmp_path, capsys):
    code, error = run_main(tiny_legacy_dirs("v2"), demo_data, tmp_path, capsys, "--loss_type", "sigma",
                           "--validation_prompts", "a red square", "--validation_steps", "1")
    assert code == 2 and "--validation_prompts" in error and "VAE decoder" in error and "eval_data_meta" in error


def test_a_short_tokenizer_length_is_refused_for_v4(tiny_legacy_dirs, demo_data, tmp_path, capsys):
    code, error = run_main(tiny_legacy_dirs("v4"), demo_data, tmp_path, capsys, "--loss_type", "ddpm",
                           "--tokenizer_max_length", "120")
    assert code == 2 and "--tokenizer_max_length 120" in error and "256 T5 tokens" in error


def test_pickled_weights_load_with_tensors_only(tiny_legacy_dirs, demo_data, tmp_path, capsys):
    """A .bin transformer (the original's first choice) loads; one holding an arbitrary object is refused."""
    import torch

    model = copy_of(tiny_legacy_dirs("v2"), tmp_path)
    folder = os.path.join(model, "transformer")
    tensors = load_file(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
    os.remove(os.path.join(folder, "diffusion_pytorch_model.safetensors"))
    torch.save(tensors, os.path.join(folder, "diffusion_pytorch_model.bin"))
    code, error = run_main(model, demo_data, tmp_path, capsys, "--loss_type", "sigma")
    assert code == 0, error[-2000:]

    torch.save({**tensors, "hook": Payload()}, os.path.join(folder, "diffusion_pytorch_model.bin"))
    code, error = run_main(model, demo_data, tmp_path, capsys, "--loss_type", "sigma", "--overwrite_output_dir", "true")
    assert code == 1 and "cannot be read as plain tensors" in error and "never code" in error


def test_cache_keys_do_not_depend_on_the_process(tiny_legacy_dirs):
    """A config.json that leaves keys out (the V2-V4 VAE's do) gets ``_use_default_values`` listed in set order,
    which differs between processes: the cache key must not see it, or every precompute re-encodes everything."""
    from types import SimpleNamespace

    from hf_easyanimate.cache.keys import vae_fingerprint
    from hf_easyanimate.models.loading import load_components

    vae = load_components(tiny_legacy_dirs("v4-inp"), transformer_weights=False).vae
    left_out = list(vae.config["_use_default_values"])
    assert len(left_out) > 1
    model_args = SimpleNamespace(pretrained_model_name_or_path=tiny_legacy_dirs("v4-inp"), revision=None,
                                 variant=None, vae_path=None)

    def with_order(order):
        return SimpleNamespace(config={**vae.config, "_use_default_values": order}, dtype=vae.dtype)

    assert vae_fingerprint(model_args, with_order(left_out)) == vae_fingerprint(model_args, with_order(left_out[::-1]))
    assert vae_fingerprint(model_args, with_order(left_out)) != vae_fingerprint(
        model_args, SimpleNamespace(config={**vae.config, "scaling_factor": 1.0}, dtype=vae.dtype))
    # precompute loads the VAE; a cached run builds it from its config only: both key alike in bf16 too
    loaded, skeleton = (load_components(tiny_legacy_dirs("v4-inp"), weight_dtype=torch.bfloat16, encoder_weights=weights,
                                        transformer_weights=False).vae for weights in (True, False))
    assert skeleton.dtype == loaded.dtype == torch.bfloat16
    assert vae_fingerprint(model_args, loaded) == vae_fingerprint(model_args, skeleton)
