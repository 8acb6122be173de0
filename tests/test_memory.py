"""The memory flags on CPU: fp8 storage, block swap, activation offload, and their parse-time rules."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import RECIPES, demo_overrides
from safetensors import safe_open

from hf_easyanimate.assembly import run
from hf_easyanimate.memory.block_swap import BlockSwapper, transformer_blocks
from hf_easyanimate.memory.offload import activation_offload
from hf_easyanimate.memory.storage import parameter_bytes, store_weights, stored_bytes
from hf_easyanimate.models.loading import load_components
from hf_easyanimate.models.lora import add_lora, build_lora_config
from hf_easyanimate.train import main
from hf_easyanimate.trainers.lora_config import parse_args

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")


def v51_width_block():
    """Four transformer blocks at the real V5.1 12B width (3072, text 3584), materialised without initialisation."""
    from diffusers import EasyAnimateTransformer3DModel

    with torch.device("meta"):
        model = EasyAnimateTransformer3DModel(
            num_attention_heads=48, attention_head_dim=64, in_channels=33, out_channels=16, patch_size=2,
            num_layers=4, mmdit_layers=4, time_embed_dim=512, text_embed_dim=3584, add_norm_text_encoder=True,
            sample_width=128, sample_height=128,
        )
    return torch.nn.Module.to(model, torch.bfloat16).to_empty(device="cpu").requires_grad_(False)


def test_fp8_storage_halves_the_frozen_weights_as_the_planner_counts():
    model = v51_width_block()
    bf16 = parameter_bytes(model)
    store_weights(model, torch.float8_e4m3fn, torch.bfloat16)
    fp8 = parameter_bytes(model)
    assert fp8 <= 0.55 * bf16, fp8 / bf16
    kept = {name for name, p in model.named_parameters() if p.dtype == torch.bfloat16}
    assert kept and all(any(part in name for part in ("norm", "proj", "time_embedding", "text_proj")) for name in kept)
    assert stored_bytes(model, torch.float8_e4m3fn, torch.bfloat16) == fp8  # the planner's count, module by module


def demo_run(model_dir, demo_data, out, *extra):
    model_args, data_args, args = parse_args([DEMO, *demo_overrides(model_dir, demo_data, out), *extra])
    return run(model_args, data_args, args)


def test_fp8_training_matches_bf16_storage_within_5_percent(tiny_model_dir, demo_data, tmp_path):
    evals, trainers = {}, {}
    for dtype in ("bfloat16", "float8_e4m3fn"):
        out = str(tmp_path / dtype)
        trainer = demo_run(tiny_model_dir, demo_data, out, "--max_steps", "40", "--save_steps", "40", "--bf16", "true",
                           "--gradient_checkpointing", "true", "--base_weight_dtype", dtype,
                           "--eval_data_meta", demo_data, "--eval_strategy", "steps", "--eval_steps", "40",
                           "--eval_timesteps", "4")
        evals[dtype] = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e][-1]
        trainers[dtype] = trainer
    assert abs(evals["float8_e4m3fn"] - evals["bfloat16"]) <= 0.05 * evals["bfloat16"], evals
    base = trainers["float8_e4m3fn"].model.get_base_model()
    stored = {p.dtype for n, p in base.named_parameters() if "transformer_blocks" in n and "lora_" not in n
              and n.endswith("weight") and p.ndim == 2 and "norm" not in n}
    assert stored == {torch.float8_e4m3fn}
    out = str(tmp_path / "float8_e4m3fn")
    with safe_open(os.path.join(out, "easyanimate_lora.safetensors"), framework="pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.bfloat16}  # as a bf16 run saves it
    from hf_easyanimate.inference import merge_lora

    merged = merge_lora(load_components(tiny_model_dir).transformer, out)  # and it loads as before
    assert len(merged.modules) > 0


def tiny_lora_model(model_dir: str):
    transformer = load_components(model_dir).transformer
    torch.manual_seed(0)
    model = add_lora(transformer, build_lora_config(transformer, 4, 4, init_lora_weights="gaussian"))
    model.get_base_model().enable_gradient_checkpointing(gradient_checkpointing_func=lambda f, *a: torch.utils
                                                         .checkpoint.checkpoint(f, *a, use_reentrant=False,
                                                                                early_stop=False))
    return model.train()


def one_step(model, offload: bool = False):
    generator = torch.Generator().manual_seed(1)
    base = model.get_base_model()
    inputs = {"hidden_states": torch.randn(2, 4, 3, 8, 8, generator=generator),
              "timestep": torch.tensor([100.0, 700.0]),
              "encoder_hidden_states": torch.randn(2, 12, base.config.text_embed_dim, generator=generator),
              "return_dict": False}
    with activation_offload(offload, "cpu"):
        loss = model(**inputs)[0].square().mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


def test_block_swap_and_offload_leave_losses_and_gradients_unchanged(tiny_model_dir):
    plain_loss, plain_grads = one_step(tiny_lora_model(tiny_model_dir))
    swapped_model = tiny_lora_model(tiny_model_dir)
    swapper = BlockSwapper(list(transformer_blocks(swapped_model.get_base_model())), "cpu")
    swap_loss, swap_grads = one_step(swapped_model)
    offload_loss, offload_grads = one_step(tiny_lora_model(tiny_model_dir), offload=True)
    for loss, grads in ((swap_loss, swap_grads), (offload_loss, offload_grads)):
        torch.testing.assert_close(loss, plain_loss, rtol=0, atol=1e-6)
        assert grads.keys() == plain_grads.keys() and len(grads) > 10
        for name, grad in grads.items():
            torch.testing.assert_close(grad, plain_grads[name], rtol=0, atol=1e-6)
    # each swapped block fetched once in the forward and once in the recompute before its backward, released after
    assert swapper.fetches == [2] * len(swapper.blocks) and swapper.releases == [2] * len(swapper.blocks)
    for home in swapper._home:
        assert all(parameter.data.data_ptr() == cpu.data_ptr() for parameter, cpu in home)  # back in CPU memory
    # LoRA weights never move: only frozen parameters are swapped
    assert all(not p.requires_grad for p in swapper.swapped_parameters)


def test_swapped_weights_ignore_model_to_and_the_step_counts_fetches(tiny_model_dir):
    model = tiny_lora_model(tiny_model_dir)
    swapper = BlockSwapper(list(transformer_blocks(model.get_base_model()))[-1:], "cpu")
    homes = [cpu for _, cpu in swapper._home[0]]
    model.to(torch.float64)  # Trainer/accelerate's .to(device) reach every other weight, never these
    assert [p.data.data_ptr() for p in swapper.swapped_parameters] == [h.data_ptr() for h in homes]
    assert all(p.dtype == torch.float64 for n, p in model.named_parameters() if "transformer_blocks.0." in n)


def test_training_with_swap_offload_and_fp8_text_encoder(tiny_v5_model_dir, demo_data, tmp_path):
    trainer = demo_run(tiny_v5_model_dir, demo_data, str(tmp_path / "run"), "--loss_type", "ddpm", "--max_steps", "2",
                       "--save_steps", "100", "--gradient_checkpointing", "true", "--blocks_to_swap", "1",
                       "--activation_offload", "true", "--text_encoder_dtype", "float8_e4m3fn")
    assert trainer.state.global_step == 2
    assert trainer.block_swapper.fetches == [4] and trainer.block_swapper.releases == [4]  # 2 steps x (fwd + recompute)
    text = trainer.encoders.prompt_encoder.text_encoder
    assert any(p.dtype == torch.float8_e4m3fn for p in text.parameters())


@pytest.mark.parametrize(("flags", "message"), [
    (["--blocks_to_swap", "-1"], "--blocks_to_swap=-1: must be >= 0"),
    (["--blocks_to_swap", "1"], "needs --gradient_checkpointing"),
    (["--blocks_to_swap", "3", "--gradient_checkpointing", "true"], "this transformer has 2 blocks; swap at most 2"),
    (["--base_weight_dtype", "float4"], "--base_weight_dtype='float4'"),
])
def test_bad_memory_flags_fail_at_parse_time(flags, message, tiny_model_dir, demo_data, tmp_path, capsys):
    assert main([DEMO, *demo_overrides(tiny_model_dir, demo_data, str(tmp_path / "o")), *flags]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_fp8_needs_a_torch_with_float8(monkeypatch, tiny_model_dir, demo_data, tmp_path, capsys):
    monkeypatch.delattr(torch, "float8_e4m3fn")
    assert main([DEMO, *demo_overrides(tiny_model_dir, demo_data, str(tmp_path / "o")),
                 "--base_weight_dtype", "float8_e4m3fn"]) == 2
    assert "has no float8_e4m3fn" in capsys.readouterr().err


def test_block_swap_is_refused_with_deepspeed(tmp_path):
    from hf_easyanimate.config import ArgumentValidationError
    from hf_easyanimate.trainers import EasyAnimateTrainingArguments

    config = tmp_path / "ds.json"
    config.write_text('{"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto"}')
    with pytest.raises(ArgumentValidationError, match="not supported with DeepSpeed"):
        EasyAnimateTrainingArguments(output_dir=str(tmp_path), blocks_to_swap=2, activation_checkpointing=True,
                                     deepspeed=str(config), use_cpu=True)
