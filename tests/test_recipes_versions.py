"""Every seed command has a recipe with its exact values; impossible objectives and V1 fail early and clearly."""

from __future__ import annotations

import os

import pytest
from conftest import RECIPES, demo_overrides

from hf_easyanimate.assembly import run
from hf_easyanimate.models.loading import ModelLoadError, UnsupportedModelError, check_training_setup
from hf_easyanimate.models.original_config import detect_original_version
from hf_easyanimate.trainers.lora_config import parse_args

CPU: list[str] = []  # bf16 recipes need no --use_cpu on a CPU-only host any more (bf16 autocast on the CPU)

V5_COMMON = {
    "image_sample_size": 1024, "video_sample_size": 256, "token_sample_size": 512, "video_sample_stride": 3,
    "video_sample_n_frames": 49, "video_repeat": 1, "random_hw_adapt": True, "training_with_video_token_length": True,
    "enable_bucket": True, "per_device_train_batch_size": 1, "dataloader_num_workers": 8, "save_steps": 100,
    "weight_decay": 5e-3, "adam_epsilon": 1e-10, "vae_mini_batch": 1, "max_grad_norm": 0.05, "uniform_sampling": True,
}
OLD_COMMON = {
    "image_sample_size": 512, "video_sample_size": 512, "video_sample_stride": 1, "video_sample_n_frames": 144,
    "video_repeat": 1, "enable_bucket": True, "per_device_train_batch_size": 1, "dataloader_num_workers": 4,
    "save_steps": 100, "weight_decay": 3e-2, "adam_epsilon": 1e-10, "vae_mini_batch": 1,
    "enable_xformers_memory_efficient_attention": True,
}
RECIPE_VALUES = {
    "v5.1/inp_lora.yaml": {**V5_COMMON, "loss_type": "flow", "train_mode": "inpaint"},
    "v5.1/inp_lora_deepspeed.yaml": {**V5_COMMON, "loss_type": "flow", "train_mode": "inpaint"},
    "v5.1/t2v_lora.yaml": {**V5_COMMON, "loss_type": "flow", "train_mode": "normal"},
    "v5/inp_lora.yaml": {**V5_COMMON, "loss_type": "ddpm", "train_mode": "inpaint"},
    "v5/inp_lora_deepspeed.yaml": {**V5_COMMON, "loss_type": "ddpm", "train_mode": "inpaint"},
    "v4/inp_lora.yaml": {**OLD_COMMON, "loss_type": "ddpm", "train_mode": "inpaint", "motion_sub_loss": True,
                         "random_hw_adapt": True, "max_grad_norm": 0.05},
    "v4/inp_lora_deepspeed.yaml": {**OLD_COMMON, "loss_type": "ddpm", "train_mode": "inpaint",
                                   "motion_sub_loss": True, "random_hw_adapt": True, "max_grad_norm": 0.05},
    "v3/inp_lora.yaml": {**OLD_COMMON, "loss_type": "sigma", "train_mode": "inpaint", "max_grad_norm": 1.0},
    "v2/lora.yaml": {**OLD_COMMON, "loss_type": "sigma", "train_mode": "normal", "max_grad_norm": 1.0},
}
SHARED = {"learning_rate": 1e-4, "seed": 42, "num_train_epochs": 100, "gradient_accumulation_steps": 1,
          "low_vram": True, "bf16": True}


@pytest.mark.parametrize("recipe", sorted(RECIPE_VALUES))
def test_recipe_parses_with_the_seed_values(recipe):
    model_args, data_args, args = parse_args([os.path.join(RECIPES, recipe), *CPU])
    values = {**vars(model_args), **vars(data_args), **{k: getattr(args, k) for k in dir(args) if not k.startswith("_")}}
    for key, expected in {**SHARED, **RECIPE_VALUES[recipe]}.items():
        assert values[key] == pytest.approx(expected), (recipe, key, values[key])
    assert bool(args.deepspeed) == recipe.endswith("_deepspeed.yaml")
    assert model_args.config_path and model_args.config_path.startswith("config/easyanimate_video_")


@pytest.mark.parametrize(("recipe", "fixture"), [("v4/inp_lora.yaml", "v4-inp"), ("v3/inp_lora.yaml", "v3-inp"),
                                               ("v2/lora.yaml", "v2")])
def test_legacy_recipes_train(recipe, fixture, tiny_legacy_dirs, demo_data, tmp_path, monkeypatch):
    """The V4 / V3 / V2 recipes train (on the tiny repos of those layouts, 2 steps, at a demo size)."""
    monkeypatch.chdir(tmp_path)  # the recipes' config_path is relative to the original repo: absent here
    data = ["--train_data_dir", os.path.dirname(demo_data), "--train_data_meta", demo_data]
    small = ["--image_sample_size", "64", "--video_sample_size", "64", "--video_sample_n_frames", "18",
             "--max_steps", "2", "--rank", "4", "--network_alpha", "4", "--dataloader_num_workers", "0"]
    model_args, data_args, args = parse_args([os.path.join(RECIPES, recipe), *CPU, *data, *small,
                                              "--pretrained_model_name_or_path", tiny_legacy_dirs(fixture),
                                              "--output_dir", str(tmp_path / "out")])
    trainer = run(model_args, data_args, args)
    assert trainer.state.global_step == 2
    assert os.path.isfile(tmp_path / "out" / "easyanimate_lora.safetensors")


def test_v1_is_refused_with_what_it_needs(tmp_path):
    config = tmp_path / "easyanimate_video_v1_motion_module.yaml"
    config.write_text("transformer_additional_kwargs:\n  basic_block_type: motionmodule\n")
    with pytest.raises(UnsupportedModelError, match="V1") as error:
        check_training_setup("models/Diffusion_Transformer/EasyAnimateV1-XL-2", loss_type="sigma",
                             train_mode="normal", config_path=str(config))
    assert "2D VAE" in str(error.value) and "recipes/v5.1/inp_lora.yaml" in str(error.value)


def test_version_detection_sources():
    assert detect_original_version(None, "config/easyanimate_video_v5.1_magvit_qwen.yaml")[0] == "v5.1"
    assert detect_original_version("models/Diffusion_Transformer/EasyAnimateV4-XL-2-InP")[0] == "v4"
    assert detect_original_version(None, "config/easyanimate_video_v1_motion_module.yaml")[0] == "v1"
    assert detect_original_version("/tmp/some-tiny-model")[0] is None


def test_version_detection_reads_the_yaml_when_present(tmp_path):
    config = tmp_path / "my_config.yaml"
    config.write_text("transformer_additional_kwargs:\n  transformer_type: Transformer3DModel\n"
                      "  basic_block_type: global_motionmodule\n")
    version, source = detect_original_version("alibaba-pai/EasyAnimateV5.1-12b-zh", str(config))
    assert version == "v3" and str(config) in source


def test_sigma_on_the_diffusers_transformer_is_refused_before_loading(tiny_model_dir):
    with pytest.raises(UnsupportedModelError, match="not available in diffusers") as error:
        check_training_setup(tiny_model_dir, loss_type="sigma", train_mode="normal")
    assert "2 x 4 latent channels" in str(error.value) and "out_channels=4" in str(error.value)


def test_inpaint_mode_needs_an_inpaint_checkpoint(tiny_model_dir, tiny_inpaint_model_dir):
    with pytest.raises(ModelLoadError, match="in_channels=4"):
        check_training_setup(tiny_model_dir, loss_type="flow", train_mode="inpaint")
    check_training_setup(tiny_inpaint_model_dir, loss_type="flow", train_mode="inpaint")
    check_training_setup(tiny_inpaint_model_dir, loss_type="flow", train_mode="normal")  # zeros: T2V on InP


def test_run_refuses_sigma_on_the_tiny_diffusers_model(tiny_model_dir, demo_data, tmp_path):
    demo = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")
    model_args, data_args, args = parse_args(
        [demo, "--loss_type", "sigma", *demo_overrides(tiny_model_dir, demo_data, str(tmp_path))]
    )
    with pytest.raises(UnsupportedModelError, match="learned-range variance"):
        run(model_args, data_args, args)
