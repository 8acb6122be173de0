"""The memory planner against measurement, and ``hf-easyanimate plan-memory`` as a user runs it.

Measured: one real training step on CPU (the second, when AdamW's state exists) of mid-size random transformers,
with every live tensor counted (the base weights, the LoRA and its optimizer state before the step, and the
activations, gradients and temporaries the step creates). Predicted: the planner, which never touches those
weights: it builds the same model on the meta device and traces a step there.
"""

from __future__ import annotations

import os

import pytest
import torch
from conftest import RECIPES

from hf_easyanimate.commands.plan_memory import main as plan_memory_main
from hf_easyanimate.data.buckets import FrameGrid
from hf_easyanimate.memory.accounting import LiveBytes
from hf_easyanimate.memory.planner import RunShape, build_context, fake_inputs, plan, traced_peak
from hf_easyanimate.models.loading import transformer_from_config

SIZES = [(4, 2), (6, 3), (8, 4)]  # (heads of 64, blocks): widths 256, 384, 512


def config(heads: int, layers: int) -> dict:
    return {"_class_name": "EasyAnimateTransformer3DModel", "num_attention_heads": heads, "attention_head_dim": 64,
            "in_channels": 4, "out_channels": 4, "patch_size": 2, "num_layers": layers, "mmdit_layers": layers,
            "time_embed_dim": 64, "text_embed_dim": 64, "add_norm_text_encoder": True, "sample_width": 32,
            "sample_height": 32}


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def measured_step(cfg: dict, shape: RunShape) -> int:
    """Peak live bytes of a real CPU step (weights, LoRA, AdamW state, and what the step allocates)."""
    from diffusers import EasyAnimateTransformer3DModel
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    transformer = EasyAnimateTransformer3DModel.from_config({k: v for k, v in cfg.items() if not k.startswith("_")})
    transformer = torch.nn.Module.to(transformer, shape.weight_dtype).requires_grad_(False)
    from hf_easyanimate.models.lora import linear_module_paths

    model = get_peft_model(transformer, LoraConfig(r=shape.rank, lora_alpha=shape.rank,
                                                   target_modules=linear_module_paths(transformer)))
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    transformer.enable_gradient_checkpointing()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    inputs = fake_inputs(transformer, shape, 4, FrameGrid(4), device="cpu")

    def step():
        loss = model(**inputs)[0].float().square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # the optimizer state now exists, as in every later step
    state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    with LiveBytes(baseline=tensor_bytes(model.parameters()) + tensor_bytes(state)) as counter:
        step()
    return counter.peak_total


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize(("heads", "layers"), SIZES)
def test_the_planner_predicts_a_measured_cpu_step_within_15_percent(heads, layers, dtype):
    cfg = config(heads, layers)
    shape = RunShape(batch_size=1, frames=9, height=256, width=256, text_tokens=32, weight_dtype=dtype, rank=4,
                     optimizer="adamw", gradient_checkpointing=True, train_mode="normal")
    predicted = plan(build_context(cfg, "test", shape, 4, FrameGrid(4)), shape)
    parts = predicted.parts
    prediction = sum(v for k, v in parts.items() if k not in ("encoders (resident)", "CUDA workspace"))
    measured = measured_step(cfg, shape)
    assert abs(prediction - measured) <= 0.15 * measured, (prediction, measured, parts)
    assert parts["activations"] > 0.1 * prediction  # the activations are a real part of what is compared


@pytest.mark.parametrize("checkpointing", [True, False], ids=["checkpointing", "no-checkpointing"])
def test_two_shallow_traces_extend_to_the_full_depth(checkpointing):
    """The planner traces a V5 transformer at 3 and 4 blocks and extends linearly: the same peak as tracing all 7."""
    cfg = config(4, 7)
    shape = RunShape(batch_size=1, frames=9, height=128, width=128, text_tokens=16, weight_dtype=torch.bfloat16,
                     rank=4, gradient_checkpointing=checkpointing, train_mode="normal")
    context = build_context(cfg, "test", shape, 4, FrameGrid(4))
    full, extended = traced_peak(context, shape, extrapolate=False), traced_peak(context, shape)
    assert abs(extended - full) <= 0.005 * full, (extended, full)
    assert len(context.model.base_model.model.transformer_blocks) == 7  # the blocks are put back


def test_the_planner_counts_the_real_12b_config_like_the_meta_device():
    from hf_easyanimate.models.published import published_configs

    cfg = published_configs()["EasyAnimateV5.1-12b-zh-InP"].transformer
    model = transformer_from_config(cfg)
    count = sum(p.numel() for p in model.parameters())
    assert round(count / 1e9, 2) == 11.80  # docs/benchmarks.md
    shape = RunShape(frames=1, height=64, width=64, rank=128)  # tiny bucket: the weights are what is checked
    context = build_context(cfg, "packaged", shape, 16, FrameGrid(4))
    assert plan(context, shape).parts["base weights"] == 2 * count  # bf16
    lora = sum(128 * (i + o) for _, i, o in context.lora)
    assert round(lora / 1e6, 1) == 915.0 and len(context.lora) == 677


def write_recipe(tmp_path, model: str, **values) -> str:
    import yaml

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"pretrained_model_name_or_path": model, "train_data_dir": str(tmp_path),
                                    "train_data_meta": str(tmp_path / "meta.json"), **values}))
    return str(path)


def test_plan_memory_says_fits_and_exits_0(tiny_model_dir, tmp_path, capsys):
    recipe = write_recipe(tmp_path, tiny_model_dir, video_sample_size=64, image_sample_size=64, token_sample_size=64,
                          video_sample_n_frames=9, rank=8)
    assert plan_memory_main([recipe, "--gpu_memory_gb", "24"]) == 0
    out = capsys.readouterr().out
    for part in ("base weights", "LoRA weights", "optimizer state", "gradients", "activations", "CUDA workspace"):
        assert f"| {part} |" in out
    assert "fits:" in out and "transformer config: " + os.path.join(tiny_model_dir, "transformer", "config.json") in out


def test_plan_memory_suggests_the_cheapest_flags_for_the_12b_on_24_gb(tmp_path, capsys):
    """The seed's V5.1 InP recipe on a 24 GB card, from the packaged config (nothing downloaded)."""
    recipe = os.path.join(RECIPES, "v5.1", "inp_lora.yaml")
    assert plan_memory_main([recipe, "--gpu_memory_gb", "24", "--video_sample_size", "256",
                             "--image_sample_size", "256", "--video_sample_n_frames", "9"]) == 1
    out = capsys.readouterr().out
    assert "packaged config of alibaba-pai/EasyAnimateV5.1-12b-zh-InP" in out and "does not fit" in out
    assert "suggestion (cheapest first" in out and "--base_weight_dtype float8_e4m3fn" in out
    assert out.index("--optim adamw_bnb_8bit") < out.index("--base_weight_dtype float8_e4m3fn")  # cheapest first


def test_plan_memory_without_a_config_names_where_it_looked(tmp_path, capsys):
    recipe = write_recipe(tmp_path, "someone/unknown-model")
    assert plan_memory_main([recipe]) == 2
    error = capsys.readouterr().err
    assert "someone/unknown-model" in error and "Hugging Face cache" in error and "published.json" in error


def test_the_recipe_for_24_gb_fits_by_the_planner(capsys):
    for recipe in ("v5.1/inp_lora_24gb.yaml", "v5/inp_lora_24gb.yaml"):
        assert plan_memory_main([os.path.join(RECIPES, recipe), "--gpu_memory_gb", "24"]) == 0, recipe
        assert "fits:" in capsys.readouterr().out


# V4 (HunyuanDiT blocks, CLIP resampler) in CI; V3/V2 (the PixArt class, same position tables) slow-marked to keep
# CI short: each legacy trace is ~60k meta ops, ~10 s
@pytest.mark.parametrize("recipe", ["v4/inp_lora.yaml", pytest.param("v3/inp_lora.yaml", marks=pytest.mark.slow),
                                    pytest.param("v2/lora.yaml", marks=pytest.mark.slow)])
def test_plan_memory_plans_the_legacy_recipes_offline(recipe, capsys):
    """V4/V3/V2 plan from their packaged configs (their position tables are buffers: they must go to meta too)."""
    code = plan_memory_main([os.path.join(RECIPES, recipe), "--gpu_memory_gb", "24", "--video_sample_size", "128",
                             "--image_sample_size", "128", "--video_sample_n_frames", "16"])
    out = capsys.readouterr().out
    assert code == 0 and "packaged config of alibaba-pai/EasyAnimateV" in out and "fits:" in out
    assert "| activations |" in out and "| **total** |" in out
