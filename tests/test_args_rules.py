"""Bad recipe values fail at parse time naming the rule; values the original adjusts are adjusted with one warning."""

from __future__ import annotations

import logging

import pytest

from hf_easyanimate.assembly.preflight import check_against_checkpoint
from hf_easyanimate.config import ArgumentValidationError
from hf_easyanimate.models.checkpoint import read_checkpoint
from hf_easyanimate.trainers.lora_config import parse_args


@pytest.fixture
def recipe(tmp_path) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(f"output_dir: {tmp_path}\nreport_to: none\n")
    return str(path)


BAD_VALUES = [
    # (flag, value, the rule the message must state)
    ("learning_rate", "-1e-4", "must be positive"),
    ("learning_rate", "0", "must be positive"),
    ("rank", "0", "must be a positive integer"),
    ("rank", "-8", "must be a positive integer"),
    ("network_alpha", "0", "must be positive"),
    ("lora_dropout", "1.0", r"must be in \[0, 1\)"),
    ("loss_type", "l2", "must be one of"),
    ("train_mode", "i2v", "must be one of"),
    ("weighting_scheme", "uniform", "must be one of"),
    ("prediction_type", "sample", "must be 'epsilon' or 'v_prediction'"),
    ("save_lora_format", "ckpt", "must be one of"),
    ("image_sample_size", "0", "must be at least 16 pixels"),
    ("video_sample_size", "-256", "must be at least 16 pixels"),
    ("video_sample_size", "8", "must be at least 16 pixels"),
    ("token_sample_size", "0", "must be a positive integer"),
    ("video_sample_n_frames", "0", "must be a positive number of frames"),
    ("video_sample_n_frames", "-49", "must be a positive number of frames"),
    ("validation_num_frames", "0", "must be a positive number of frames"),
    ("video_sample_stride", "0", "must be a positive integer"),
    ("video_sample_stride", "-3", "must be a positive integer"),
    ("video_repeat", "-1", "must be >= 0"),
    ("image_repeat_in_forward", "-1", "must be >= 0"),
    ("text_drop_ratio", "1.5", r"must be in \[0, 1\]"),
    ("video_length_drop_start", "0.95", "video_length_drop_start < video_length_drop_end"),
    ("max_train_samples", "0", "must be positive"),
    ("max_eval_samples", "-2", "must be positive"),
    ("tokenizer_max_length", "0", "must be positive"),
    ("per_device_train_batch_size", "0", "must be positive"),
    ("per_device_eval_batch_size", "0", "must be positive"),
    ("gradient_accumulation_steps", "0", "must be positive"),
    ("vae_mini_batch", "0", "must be positive"),
    ("train_sampling_steps", "0", "must be positive"),
    ("adam_epsilon", "0", "must be positive"),
    ("adam_beta1", "1.0", r"must be in \[0, 1\)"),
    ("weight_decay", "-0.01", "must be >= 0"),
    ("max_grad_norm", "-1", "must be >= 0"),
    ("warmup_steps", "-5", "must be >= 0"),
    ("noise_offset", "-0.1", "must be >= 0"),
    ("input_perturbation", "-0.1", "must be >= 0"),
    ("logit_std", "0", "must be positive"),
    ("motion_sub_loss_ratio", "2", r"must be in \[0, 1\]"),
    ("noise_share_in_frames_ratio", "-0.5", r"must be in \[0, 1\]"),
    ("max_steps", "0", "or -1 to train for --num_train_epochs"),
    ("num_train_epochs", "0", "must be positive"),
    ("validation_steps", "0", "must be positive"),
    ("validation_epochs", "0", "must be positive"),
    ("validation_num_inference_steps", "0", "must be positive"),
    ("validation_guidance_scale", "-1", "must be >= 0"),
    ("eval_timesteps", "0", "must be positive"),
    ("eval_timesteps", "5000", r"must be <= --train_sampling_steps \(1000\)"),
    ("max_consecutive_nonfinite", "0", "must be positive"),
    ("dataloader_num_workers", "-1", "must be >= 0"),
]


@pytest.mark.parametrize(("flag", "value", "rule"), BAD_VALUES, ids=[f"{f}={v}" for f, v, _ in BAD_VALUES])
def test_bad_value_fails_at_parse_time_naming_key_and_rule(recipe, flag, value, rule):
    with pytest.raises(ArgumentValidationError, match=rf"^--{flag}=.*: .*{rule}"):
        parse_args([recipe, f"--{flag}={value}"])


@pytest.mark.parametrize(
    ("flag", "given", "used", "why"),
    [
        ("validation_num_frames", 20, 17, "temporal grid"),
        ("video_sample_size", 250, 240, "multiple of 16"),
        ("image_sample_size", 1000, 992, "multiple of 16"),
    ],
)
def test_off_grid_value_is_adjusted_with_one_warning(recipe, caplog, flag, given, used, why):
    with caplog.at_level(logging.WARNING, logger="hf_easyanimate.config.rules"):
        model_args, data_args, args = parse_args([recipe, f"--{flag}", str(given)])
    owner = args if flag.startswith("validation") else data_args
    assert getattr(owner, flag) == used
    messages = [record.getMessage() for record in caplog.records if f"--{flag}=" in record.getMessage()]
    assert len(messages) == 1, messages
    assert messages[0].startswith(f"--{flag}={given} ") and f"using {used}," in messages[0] and why in messages[0]


@pytest.mark.parametrize(("given", "kept"), [(50, 49), (48, 45), (144, 141), (3, 1)])
def test_off_grid_frame_count_is_sampled_as_given_and_cut_per_batch(recipe, caplog, given, kept, tiny_model_dir):
    # As the original: clips are sampled with `given` frames, the collate keeps the first `kept` (issue 17). The grid
    # is the checkpoint's, so the note comes once the preflight has read it (parsing reads no checkpoint).
    with caplog.at_level(logging.WARNING, logger="hf_easyanimate.config.rules"):
        _, data_args, args = parse_args([recipe, "--video_sample_n_frames", str(given)])
        check_against_checkpoint(read_checkpoint(tiny_model_dir), data_args, args)
    assert data_args.video_sample_n_frames == given
    messages = [r.getMessage() for r in caplog.records if "--video_sample_n_frames=" in r.getMessage()]
    assert messages == [f"--video_sample_n_frames={given} is not on the VAE's temporal grid (4n + 1 frames): clips "
                        f"are sampled with {given} frames and each batch keeps the first {kept}, as the original "
                        "trainer does."]


def test_on_grid_values_are_kept_silently(recipe, caplog, tiny_model_dir):
    with caplog.at_level(logging.WARNING, logger="hf_easyanimate.config.rules"):
        _, data_args, args = parse_args([recipe, "--video_sample_n_frames", "49", "--video_sample_size", "256"])
        check_against_checkpoint(read_checkpoint(tiny_model_dir), data_args, args)
    assert (data_args.video_sample_n_frames, data_args.video_sample_size) == (49, 256)
    assert not [r for r in caplog.records if "using" in r.getMessage()]


def test_validation_images_need_an_inpaint_model_and_existing_files(recipe, tmp_path):
    image = tmp_path / "first.png"
    image.write_bytes(b"not checked here")
    with pytest.raises(ArgumentValidationError, match="--validation_images=.*--train_mode inpaint"):
        parse_args([recipe, "--validation_prompts", "a", "--validation_images", str(image)])
    with pytest.raises(ArgumentValidationError, match="does not exist"):
        parse_args([recipe, "--train_mode", "inpaint", "--validation_prompts", "a",
                    "--validation_images", str(tmp_path / "missing.png")])
    with pytest.raises(ArgumentValidationError, match="one image for all prompts or one per prompt"):
        parse_args([recipe, "--train_mode", "inpaint", "--validation_prompts", "a", "b", "c",
                    "--validation_images", str(image), str(image)])
    _, _, args = parse_args([recipe, "--train_mode", "inpaint", "--validation_prompts", "a", "b",
                             "--validation_images", str(image)])
    assert args.validation_images == [str(image)]


def test_eval_strategy_without_eval_data_fails_at_parse_time(recipe):
    with pytest.raises(ArgumentValidationError, match="--eval_strategy=.*pass --eval_data_meta"):
        parse_args([recipe, "--eval_strategy", "steps", "--eval_steps", "10"])


def test_trust_remote_code_is_off_unless_asked(recipe):
    model_args, _, _ = parse_args([recipe])
    assert model_args.trust_remote_code is False


def test_negative_value_after_a_space_is_read_as_the_value(recipe):
    # `--noise_offset -0.1` used to reach argparse as two tokens, and `-0.1` looked like a flag.
    with pytest.raises(ArgumentValidationError, match="--noise_offset=-0.1: must be >= 0"):
        parse_args([recipe, "--noise_offset", "-0.1"])
    _, _, args = parse_args([recipe, "--learning_rate", "3e-4"])
    assert args.learning_rate == pytest.approx(3e-4)
