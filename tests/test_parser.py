"""Recipe + command-line parsing: precedence, the original dialect, and errors that name the key."""

from __future__ import annotations

import os
import time

import pytest
from conftest import RECIPES, run_cli

from hf_easyanimate.config import ArgumentValidationError, LegacyFlagConflict, RecipeError
from hf_easyanimate.trainers.lora_config import parse_args


def write_recipe(tmp_path, text: str) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


def test_cli_overrides_recipe_and_yaml_scientific_notation_is_a_float(tmp_path):
    recipe = write_recipe(tmp_path, "learning_rate: 1e-4\nvideo_sample_n_frames: 49\nreport_to: none\n"
                                    f"output_dir: {tmp_path}\n")
    _, data_args, args = parse_args([recipe, "--learning_rate", "3e-4"])
    assert args.learning_rate == pytest.approx(3e-4)
    assert data_args.video_sample_n_frames == 49
    _, _, args = parse_args(["--config", recipe])
    assert isinstance(args.learning_rate, float) and args.learning_rate == pytest.approx(1e-4)


def test_original_flag_names_map_to_trainer_twins(tmp_path):
    recipe = write_recipe(tmp_path, f"output_dir: {tmp_path}\nreport_to: none\ntrain_batch_size: 3\n")
    _, _, args = parse_args([recipe, "--checkpointing_steps=7", "--adam_weight_decay", "5e-3",
                             "--lr_scheduler", "cosine", "--max_train_steps", "11", "--checkpoints_total_limit", "2"])
    assert args.per_device_train_batch_size == 3
    assert args.save_steps == 7
    assert args.weight_decay == pytest.approx(5e-3)
    assert args.lr_scheduler_type == "cosine"
    assert args.max_steps == 11
    assert args.save_total_limit == 2


def test_original_defaults_are_kept(tmp_path):
    recipe = write_recipe(tmp_path, f"output_dir: {tmp_path}\nreport_to: none\n")
    model_args, data_args, args = parse_args([recipe])
    assert (model_args.rank, model_args.network_alpha, model_args.train_mode) == (128, 64, "normal")
    assert (data_args.video_sample_n_frames, data_args.video_sample_stride) == (17, 4)
    assert (args.learning_rate, args.weight_decay, args.per_device_train_batch_size) == (1e-4, 1e-2, 16)
    assert (args.vae_mini_batch, args.lr_scheduler_type) == (32, "constant")
    assert args.loss_type is None  # follows the checkpoint's scheduler at build time (test_first_contact.py)
    assert (args.validation_steps, args.validation_epochs) == (2000, 5)  # neither given: both of the original's


def test_dialect_flag_and_twin_that_disagree_fail(tmp_path):
    recipe = write_recipe(tmp_path, f"output_dir: {tmp_path}\nreport_to: none\n")
    with pytest.raises(LegacyFlagConflict, match="train_batch_size.*per_device_train_batch_size"):
        parse_args([recipe, "--train_batch_size", "3", "--per_device_train_batch_size", "4"])


@pytest.mark.parametrize(
    ("where", "key", "suggestion"),
    [("recipe", "learnig_rate", "learning_rate"), ("cli", "video_sample_n_frame", "video_sample_n_frames")],
)
def test_unknown_key_names_key_and_closest_valid_one(tmp_path, where, key, suggestion):
    text = f"output_dir: {tmp_path}\n" + (f"{key}: 1\n" if where == "recipe" else "")
    argv = [write_recipe(tmp_path, text)] + ([f"--{key}", "1"] if where == "cli" else [])
    with pytest.raises(RecipeError) as error:
        parse_args(argv)
    assert f"`{key}`" in str(error.value) and f"`{suggestion}`" in str(error.value)


@pytest.mark.parametrize(
    ("flag", "value", "rule"),
    [("loss_type", "l2", "must be one of"), ("rank", "0", "positive"), ("learning_rate", "-1", "positive"),
     ("video_sample_stride", "0", "positive"), ("train_mode", "i2v", "must be one of")],
)
def test_bad_values_fail_at_parse_time_with_the_rule(tmp_path, flag, value, rule):
    recipe = write_recipe(tmp_path, f"output_dir: {tmp_path}\nreport_to: none\n")
    with pytest.raises(ArgumentValidationError, match=f"--{flag}=.*{rule}"):
        parse_args([recipe, f"--{flag}", value])


def test_misspelt_recipe_key_exits_nonzero_before_loading_any_model(tmp_path):
    recipe = write_recipe(tmp_path, "pretrained_model_name_or_path: /does/not/exist\nlearnig_rate: 1e-4\n")
    started = time.monotonic()
    result = run_cli("train", recipe)
    assert result.returncode != 0
    assert "learnig_rate" in result.stderr and "learning_rate" in result.stderr
    # Nothing was loaded: the bogus model path was never opened.
    assert "/does/not/exist" not in result.stderr
    assert time.monotonic() - started < 60


def test_every_recipe_in_the_repo_parses():
    recipes = [os.path.join(root, name) for root, _, files in os.walk(RECIPES) for name in files
               if name.endswith(".yaml") and "accelerate" not in root]
    assert recipes
    import importlib.util

    from hf_easyanimate.config import ArgumentValidationError

    for recipe in recipes:
        argv = [recipe, "--output_dir", "/tmp/unused", "--report_to", "none", "--use_cpu", "true"]
        if "adamw_bnb_8bit" in open(recipe).read() and importlib.util.find_spec("bitsandbytes") is None:
            # the 24 GB recipes' 8-bit AdamW: without bitsandbytes the parse names the fix
            with pytest.raises(ArgumentValidationError, match="pip install bitsandbytes"):
                parse_args(argv)
            argv += ["--optim", "adamw_torch"]
        parse_args(argv)


def test_the_clip_model_has_one_name_in_train_and_compare(tmp_path, capsys):
    from hf_easyanimate.cli import main

    recipe = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")
    for spelling in ("--clip_model", "--validation_clip_model"):
        assert parse_args([recipe, spelling, "my-clip"])[2].validation_clip_model == "my-clip"
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text("clip_model: recipe-clip\n")
    assert parse_args([str(recipe_file)])[2].validation_clip_model == "recipe-clip"
    # compare takes train's spelling too: the only error left is the missing run folder.
    missing = str(tmp_path / "no-run")
    code = main(["compare", missing, "--prompts", "a cat", "--validation_clip_model", "my-clip"])
    error = capsys.readouterr().err
    assert code != 0 and "unrecognized arguments" not in error and missing in error, error
