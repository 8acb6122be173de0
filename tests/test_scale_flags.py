"""The original dialect's scale and memory flags: each parses, acts, or fails at parse time with a clear message."""

from __future__ import annotations

import importlib.util
import json
import logging
import os

import pytest
import torch
import yaml
from conftest import RECIPES, demo_overrides
from transformers import TrainerCallback

from hf_easyanimate.assembly import run
from hf_easyanimate.config import ArgumentValidationError, LegacyFlagConflict
from hf_easyanimate.models.encoders import FrozenEncoders
from hf_easyanimate.models.loading import read_model_config, report_model_config
from hf_easyanimate.models.original_config import ModelConfigMismatch
from hf_easyanimate.models.vae import encode_pixels
from hf_easyanimate.trainers.lora_config import parse_args
from hf_easyanimate.training.attention import attention_context_factory, memory_efficient_sdpa_backends
from hf_easyanimate.training.clipping import linear_decay, original_clip_norm
from hf_easyanimate.training.distributed import ZERO2_CONFIG

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")

# Key/values of the original config/easyanimate_video_v5.1_magvit_qwen.yaml (what --config_path points at).
V51_YAML = {
    "transformer_additional_kwargs": {
        "transformer_type": "EasyAnimateTransformer3DModel", "after_norm": False,
        "time_position_encoding_type": "3d_rope", "resize_inpaint_mask_directly": True,
        "enable_text_attention_mask": True, "enable_clip_in_inpaint": False, "add_ref_latent_in_control_model": True,
    },
    "vae_kwargs": {
        "vae_type": "AutoencoderKLMagvit", "mini_batch_encoder": 4, "mini_batch_decoder": 1, "slice_mag_vae": False,
        "slice_compression_vae": False, "cache_compression_vae": False, "cache_mag_vae": True,
    },
    "text_encoder_kwargs": {"enable_multi_text_encoder": False, "replace_t5_to_llm": True},
}


def args_for(tmp_path, *extra: str):
    return parse_args([DEMO, "--output_dir", str(tmp_path), "--report_to", "none", *extra])


# --- DeepSpeed flags -------------------------------------------------------------------------------

def test_use_deepspeed_without_a_deepspeed_config_fails_at_parse_time(tmp_path, monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    with pytest.raises(ArgumentValidationError, match="--use_deepspeed.*DeepSpeed is not configured.*zero2.json"):
        args_for(tmp_path, "--use_deepspeed")


def test_launcher_and_command_line_deepspeed_configs_that_differ_fail(tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(tmp_path / "other.json"))
    with pytest.raises(ArgumentValidationError, match="--deepspeed=.*zero2.json.*--deepspeed_config_file=.*other.json"):
        args_for(tmp_path, "--deepspeed_config_file", os.path.join(RECIPES, "deepspeed", "zero2.json"))


def test_zero2_recipe_is_the_seed_config_with_trainer_autos():
    with open(os.path.join(RECIPES, "deepspeed", "zero2.json")) as handle:
        recipe = json.load(handle)
    assert recipe == ZERO2_CONFIG
    zero = recipe["zero_optimization"]
    # The seed's settings ...
    assert (zero["stage"], zero["overlap_comm"], zero["contiguous_gradients"]) == (2, True, True)
    assert (zero["sub_group_size"], zero["reduce_bucket_size"], recipe["dump_state"]) == (1e9, 5e8, True)
    # ... and "auto" wherever Trainer knows the value (the seed hard-coded bf16 and micro-batch 1).
    for key in ("train_micro_batch_size_per_gpu", "train_batch_size", "gradient_accumulation_steps", "gradient_clipping"):
        assert recipe[key] == "auto"
    assert recipe["bf16"]["enabled"] == "auto"


def test_launcher_mixed_precision_is_adopted_and_a_contradiction_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch --mixed_precision bf16` sets
    _, _, args = args_for(tmp_path, "--use_cpu", "true")
    assert args.bf16 and not args.fp16
    with pytest.raises(ArgumentValidationError, match="--fp16=True: contradicts `accelerate launch --mixed_precision bf16`"):
        args_for(tmp_path, "--use_cpu", "true", "--fp16", "true")


@pytest.mark.parametrize("name", ["multi_gpu.yaml", "multi_node.yaml", "deepspeed_zero2.yaml"])
def test_accelerate_configs_load_and_point_at_our_recipes(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(os.path.join(RECIPES, "accelerate", name))
    assert config.num_processes == 8 * config.num_machines and config.main_training_function == "main"
    if name == "deepspeed_zero2.yaml":
        assert str(config.distributed_type).endswith("DEEPSPEED")
        # Relative to the repo root, where the README's commands run; the same file the *_deepspeed recipes name.
        assert config.deepspeed_config["deepspeed_config_file"] == "recipes/deepspeed/zero2.json"
        assert os.path.isfile(os.path.join(RECIPES, "..", config.deepspeed_config["deepspeed_config_file"]))
    else:
        assert str(config.distributed_type).endswith("MULTI_GPU") and config.mixed_precision == "bf16"


def test_v5_era_flags_parse(tmp_path):
    _, _, args = args_for(tmp_path, "--not_sigma_loss", "--non_ema_revision", "main")
    assert args.loss_type == "ddpm"
    with pytest.raises(LegacyFlagConflict, match="--not_sigma_loss and --loss_type"):
        args_for(tmp_path, "--not_sigma_loss", "--loss_type", "flow")


# --- optimizer flags -------------------------------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed here")
def test_8bit_adam_without_bitsandbytes_fails_at_parse_time(tmp_path):
    with pytest.raises(ArgumentValidationError, match="8-bit Adam.*pip install bitsandbytes"):
        args_for(tmp_path, "--use_8bit_adam")


@pytest.mark.skipif(importlib.util.find_spec("came_pytorch") is not None, reason="came_pytorch is installed here")
def test_came_without_came_pytorch_fails_at_parse_time(tmp_path):
    with pytest.raises(ArgumentValidationError, match="--use_came.*came-pytorch"):
        args_for(tmp_path, "--use_came")


def test_scale_lr_multiplies_by_accumulation_batch_and_processes(tmp_path):
    _, _, args = args_for(tmp_path, "--scale_lr", "--learning_rate", "1e-4", "--gradient_accumulation_steps", "2",
                          "--train_batch_size", "3")
    assert args.world_size == 1
    assert args.learning_rate == pytest.approx(1e-4 * 2 * 3 * 1)
    _, _, plain = args_for(tmp_path, "--learning_rate", "1e-4", "--train_batch_size", "3")
    assert plain.learning_rate == pytest.approx(1e-4)


def test_original_clip_norm_schedule_numbers():
    assert linear_decay(0.25, 0.05, 1000, 0) == pytest.approx(0.25)
    assert linear_decay(0.25, 0.05, 1000, 500) == pytest.approx(0.15)
    assert linear_decay(0.25, 0.05, 1000, 1000) == pytest.approx(0.05)
    # Seed settings: max_grad_norm 0.05, ratio 5, start 1000.
    assert original_clip_norm(0.1, 0, 0.05, 1000, 5) == pytest.approx(0.25)
    assert original_clip_norm(0.1, 500, 0.05, 1000, 5) == pytest.approx(0.15)
    assert original_clip_norm(10.0, 500, 0.05, 1000, 5) == pytest.approx(0.15)  # never "abnormal" before the start
    assert original_clip_norm(0.2, 2000, 0.05, 1000, 5) == pytest.approx(0.05)  # 4x: normal
    assert original_clip_norm(0.35, 2000, 0.05, 1000, 5) == pytest.approx(0.05 / 7)  # 7x: abnormal
    assert original_clip_norm(5.0, 2000, 0.05, 1000, 5) == pytest.approx(0.05 / 10)  # capped at /10
    assert original_clip_norm(5.0, 2000, 0.05, -1, 5) == pytest.approx(0.05)  # disabled: Trainer's clipping


# --- --config_path -----------------------------------------------------------------------------------

def tiny_configs(model_dir: str) -> tuple[dict, dict, dict]:
    load = lambda *parts: json.load(open(os.path.join(model_dir, *parts)))  # noqa: E731
    return load("transformer", "config.json"), load("vae", "config.json"), load("model_index.json")


def write_yaml(tmp_path, tree: dict) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def test_config_path_checks_what_applies_and_lists_the_rest(tiny_model_dir, tmp_path):
    reading = read_model_config(write_yaml(tmp_path, V51_YAML), *tiny_configs(tiny_model_dir))
    assert reading.found and reading.mismatched == {}
    assert set(reading.checked) == {
        "transformer_additional_kwargs.transformer_type", "transformer_additional_kwargs.after_norm",
        "transformer_additional_kwargs.time_position_encoding_type",
        "transformer_additional_kwargs.resize_inpaint_mask_directly",
        "transformer_additional_kwargs.enable_text_attention_mask",
        "transformer_additional_kwargs.enable_clip_in_inpaint", "vae_kwargs.vae_type",
        "text_encoder_kwargs.enable_multi_text_encoder", "text_encoder_kwargs.replace_t5_to_llm",
    }
    assert reading.not_applicable == [
        "transformer_additional_kwargs.add_ref_latent_in_control_model", "vae_kwargs.cache_compression_vae",
        "vae_kwargs.cache_mag_vae", "vae_kwargs.mini_batch_decoder", "vae_kwargs.mini_batch_encoder",
        "vae_kwargs.slice_compression_vae", "vae_kwargs.slice_mag_vae",
    ]
    message = reading.report()
    assert "does not apply to a diffusers-layout checkpoint" in message and "vae_kwargs.mini_batch_encoder" in message

    disagreeing = {**V51_YAML, "transformer_additional_kwargs": {
        **V51_YAML["transformer_additional_kwargs"], "after_norm": True}}
    reading = read_model_config(write_yaml(tmp_path, disagreeing), *tiny_configs(tiny_model_dir))
    assert reading.mismatched == {"transformer_additional_kwargs.after_norm": (True, False)}
    assert "checkpoint, which wins: transformer_additional_kwargs.after_norm=True" in reading.report()


@pytest.mark.parametrize(
    ("section", "change", "message"),
    [("transformer_additional_kwargs", {"transformer_type": "HunyuanTransformer3DModel"}, "HunyuanTransformer3DModel"),
     ("text_encoder_kwargs", {"enable_multi_text_encoder": True}, "enable_multi_text_encoder=True"),
     ("vae_kwargs", {"vae_type": "AutoencoderKL"}, "AutoencoderKL VAE")],
)
def test_config_path_for_another_architecture_is_refused(tiny_model_dir, tmp_path, section, change, message):
    tree = {**V51_YAML, section: {**V51_YAML[section], **change}}
    with pytest.raises(ModelConfigMismatch, match=message):
        read_model_config(write_yaml(tmp_path, tree), *tiny_configs(tiny_model_dir))


def test_config_path_warns_once(tiny_model_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hf_easyanimate.models.loading"):
        report_model_config(write_yaml(tmp_path, V51_YAML), tiny_model_dir)
        report_model_config(str(tmp_path / "config" / "missing.yaml"), tiny_model_dir)
    messages = [record.getMessage() for record in caplog.records if record.name == "hf_easyanimate.models.loading"]
    assert len(messages) == 2
    assert "ignored: transformer_additional_kwargs.add_ref_latent_in_control_model" in messages[0]
    assert "missing.yaml: file not found" in messages[1]


# --- memory features ---------------------------------------------------------------------------------

def test_memory_efficient_attention_choice(caplog):
    from torch.nn.attention import SDPBackend

    backends = memory_efficient_sdpa_backends(torch.device("cuda"))
    assert SDPBackend.MATH not in backends and SDPBackend.EFFICIENT_ATTENTION in backends
    assert memory_efficient_sdpa_backends(torch.device("cpu")) is None
    with caplog.at_level(logging.WARNING, logger="hf_easyanimate.training.attention"):
        factory = attention_context_factory(True, "cpu")
    assert "no memory-efficient attention kernel on cpu" in caplog.text
    with factory():
        pass
    assert attention_context_factory(False, "cuda")().__class__.__name__ == "nullcontext"


class RecordingModule(torch.nn.Module):
    """Stands in for an encoder: records the devices it is moved to."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.moves: list[str] = []
        self.calls = 0

    def to(self, *args, **kwargs):
        self.moves.append(str(args[0] if args else kwargs.get("device")))
        return self


def test_low_vram_moves_encoders_to_the_device_only_while_encoding(monkeypatch):
    vae, text = RecordingModule(), RecordingModule()

    class Prompt:
        text_encoder = text
        text_encoders = [text]

        def __call__(self, prompts, device=None):
            assert text.moves[-1] == "meta"  # on the accelerator while encoding
            return {"encoder_hidden_states": torch.zeros(len(prompts), 2, 4)}

    def fake_encode(module, pixels, mini_batch, **kwargs):
        assert module.moves[-1] == "meta"
        return pixels.new_zeros(1)

    monkeypatch.setattr("hf_easyanimate.models.encoders.encode_pixels", fake_encode)
    encoders = FrozenEncoders(vae, Prompt(), device="cpu", low_vram=True, vae_mini_batch=1)
    assert vae.moves == ["cpu"] and text.moves == ["cpu"]  # they live on the CPU
    encoders.device = torch.device("meta")  # stands in for the accelerator: only the moves are under test
    encoders.encode_prompts(["a"])
    encoders.encode_pixels(torch.zeros(1, 1, 3, 8, 8))
    assert text.moves == ["cpu", "meta", "cpu"] and vae.moves == ["cpu", "meta", "cpu"]


def test_vae_mini_batch_encodes_in_chunks():
    calls = []

    class Posterior:
        def __init__(self, x):
            self.x = x

        def sample(self):
            return self.x[:, :1]

        def mode(self):
            return self.x[:, :1]

    class StubVAE(torch.nn.Module):
        device, dtype = torch.device("cpu"), torch.float32
        config = type("Config", (), {"scaling_factor": 2.0})()

        def encode(self, video):
            calls.append(video.shape[0])
            return type("Out", (), {"latent_dist": Posterior(video)})()

    latents = encode_pixels(StubVAE(), torch.ones(5, 3, 3, 4, 4), 2)
    assert calls == [2, 2, 1]
    assert latents.shape == (5, 1, 3, 4, 4) and float(latents.max()) == 2.0


class CheckpointingProbe(TrainerCallback):
    """Counts gradient-checkpointed block calls and measures the gradient norm the optimizer receives."""

    def __init__(self):
        self.checkpointed_calls = 0
        self.clipped_norms: list[tuple[int, float]] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        base = model.get_base_model()
        inner = base._gradient_checkpointing_func

        def counting(*a, **k):
            self.checkpointed_calls += 1
            return inner(*a, **k)

        base._gradient_checkpointing_func = counting

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad.detach().flatten() for p in model.parameters() if p.grad is not None]
        self.clipped_norms.append((state.global_step, torch.cat(grads).norm().item()))


def test_gradient_checkpointing_is_active_and_clipping_follows_the_original(tiny_model_dir, demo_data, tmp_path):
    probe = CheckpointingProbe()
    parsed = parse_args([DEMO, "--max_steps", "2", "--save_steps", "100", "--gradient_checkpointing", "--low_vram",
                         "--vae_mini_batch", "1", "--enable_xformers_memory_efficient_attention",
                         "--max_grad_norm", "0.001", *demo_overrides(tiny_model_dir, demo_data, str(tmp_path))])
    trainer = run(*parsed, callbacks=[probe])
    num_layers = trainer.model.get_base_model().config.num_layers
    assert probe.checkpointed_calls == 2 * num_layers  # every block of both steps ran under checkpointing
    # The original's warm-up: the clip norm starts at 5 x max_grad_norm and decays towards max_grad_norm.
    assert [step for step, _ in probe.clipped_norms] == [0, 1]
    for step, norm in probe.clipped_norms:
        assert norm == pytest.approx(original_clip_norm(1.0, step, 0.001, 1000, 5), rel=1e-3)
