"""A LoRA trained on the tiny model, end to end: both files, the same function through every loader, the CLI."""

from __future__ import annotations

import json
import os

import decord
import numpy as np
import pytest
import torch
from conftest import RECIPES, demo_overrides, run_cli
from diffusers import EasyAnimatePipeline, EasyAnimateTransformer3DModel
from peft import PeftModel
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from hf_easyanimate import export_lora, load_lora_into_pipeline, read_lora, unmerge_lora
from hf_easyanimate.assembly import run
from hf_easyanimate.trainers import EasyAnimateTrainer
from hf_easyanimate.trainers.lora_config import parse_args

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")


@pytest.fixture(scope="module")
def trained(tiny_model_dir, demo_data, tmp_path_factory):
    """(output_dir, trainer): 3 steps from a non-zero LoRA init, so every layer's up/down is non-zero."""
    out = str(tmp_path_factory.mktemp("lora-run"))
    model_args, data_args, args = parse_args([
        DEMO, *demo_overrides(tiny_model_dir, demo_data, out), "--max_steps", "3", "--save_steps", "2",
        "--logging_steps", "1", "--init_lora_weights", "false",
    ])
    return out, run(model_args, data_args, args)


def transformer_inputs(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "hidden_states": torch.randn(1, 4, 3, 8, 8, generator=generator),
        "timestep": torch.tensor([700.0]),
        "encoder_hidden_states": torch.randn(1, 7, 32, generator=generator),
        "return_dict": False,
    }


@torch.no_grad()
def forward(transformer) -> torch.Tensor:
    return transformer.eval()(**transformer_inputs())[0]


def base_transformer(model_dir: str):
    return EasyAnimateTransformer3DModel.from_pretrained(model_dir, subfolder="transformer")


# --- the original EasyAnimate merge, written from its documented rule, on the original model's layout -------------

def with_original_layout(transformer):
    """Give every MMDiT block the original's text-stream attention ``attn2`` (sharing diffusers' Linear layers)."""
    for block in transformer.transformer_blocks:
        if getattr(block.attn1, "add_q_proj", None) is not None:
            attn2 = torch.nn.Module()
            attn2.to_q, attn2.to_k, attn2.to_v = block.attn1.add_q_proj, block.attn1.add_k_proj, block.attn1.add_v_proj
            attn2.to_out = torch.nn.ModuleList([block.attn1.to_add_out])
            block.attn2 = attn2
    return transformer


def resolve_like_original_merge(root: torch.nn.Module, layer: str) -> torch.nn.Module:
    """EasyAnimate's merge_lora walk: try the whole rest as one attribute, else grow names across '_' greedily."""
    infos = layer.split("lora_unet_")[-1].split("_")
    try:
        return root.__getattr__("_".join(infos[1:]))
    except AttributeError:
        pass
    current, name = root, infos.pop(0)
    while True:
        try:
            current = current.__getattr__(name)
            if not infos:
                return current
            name = infos.pop(0)
        except AttributeError:
            name = f"{name}_{infos.pop(0)}" if name else infos.pop(0)


@torch.no_grad()
def merge_like_original(transformer, path: str, multiplier: float = 1.0) -> int:
    state = load_file(path)
    layers: dict[str, dict] = {}
    for key, value in state.items():
        layer, element = key.split(".", 1)
        layers.setdefault(layer, {})[element] = value
    for layer, elements in layers.items():
        module = resolve_like_original_merge(transformer, layer)
        up, down = elements["lora_up.weight"].float(), elements["lora_down.weight"].float()
        scale = elements["alpha"].item() / up.shape[1]
        module.weight += multiplier * scale * (up @ down)
    return len(layers)


# --- tests ------------------------------------------------------------------------------------------------------------

def test_both_formats_are_written_to_output_dir_and_every_checkpoint(trained):
    out, trainer = trained
    for folder in (out, os.path.join(out, "checkpoint-2"), os.path.join(out, "checkpoint-3")):
        for name in ("adapter_model.safetensors", "adapter_config.json", "easyanimate_lora.safetensors",
                     "training_recipe.yaml"):
            assert os.path.isfile(os.path.join(folder, name)), (folder, name)
        assert not [n for n in os.listdir(folder) if n.startswith(".")], "temporary files left behind"
    peft_keys = load_file(os.path.join(out, "adapter_model.safetensors"))
    with safe_open(os.path.join(out, "easyanimate_lora.safetensors"), "pt") as handle:
        keys, metadata = list(handle.keys()), handle.metadata()
    assert len(keys) == 3 * (len(peft_keys) // 2) == 3 * 33  # every Linear of the tiny transformer
    assert all(key.startswith("lora_unet__") for key in keys)
    assert "lora_unet__transformer_blocks_0_attn2_to_q.lora_down.weight" in keys
    assert {"sshs_model_hash", "sshs_legacy_hash"} <= set(metadata)
    # The recipe reproduces the run.
    model_args, _, args = parse_args([os.path.join(out, "training_recipe.yaml")])
    assert (model_args.rank, args.max_steps, args.learning_rate) == (8, 3, 2e-3)
    assert model_args.init_lora_weights == "false"


def test_peft_adapter_easyanimate_merge_and_pipeline_loader_agree(trained, tiny_model_dir):
    out, _ = trained
    reference = forward(base_transformer(tiny_model_dir))
    peft_output = forward(PeftModel.from_pretrained(base_transformer(tiny_model_dir), out))
    lora_effect = (peft_output - reference).abs().max().item()
    assert lora_effect > 1e-2  # the LoRA changes the output, so agreement below means something

    original = with_original_layout(base_transformer(tiny_model_dir))
    merged_layers = merge_like_original(original, os.path.join(out, "easyanimate_lora.safetensors"))
    assert merged_layers == 33
    merged_output = forward(original)

    pipelines = {}
    for source in (out, os.path.join(out, "easyanimate_lora.safetensors"), os.path.join(out, "checkpoint-3")):
        pipe = EasyAnimatePipeline.from_pretrained(tiny_model_dir)
        load_lora_into_pipeline(pipe, source, scale=1.0)
        pipelines[source] = forward(pipe.transformer)
    print(f"LoRA effect {lora_effect:.3g}; |peft - easyanimate merge| "
          f"{(peft_output - merged_output).abs().max().item():.3g}; |peft - load_lora_into_pipeline| "
          + ", ".join(f"{(peft_output - o).abs().max().item():.3g}" for o in pipelines.values()))
    torch.testing.assert_close(merged_output, peft_output, rtol=0, atol=1e-5)
    for output in pipelines.values():
        torch.testing.assert_close(output, peft_output, rtol=0, atol=1e-5)


def test_scale_and_unmerge(trained, tiny_model_dir):
    out, _ = trained
    pipe = EasyAnimatePipeline.from_pretrained(tiny_model_dir)
    reference = forward(pipe.transformer)
    weights = load_lora_into_pipeline(pipe, out, scale=0.5)
    half = forward(pipe.transformer)
    unmerge_lora(pipe, weights, scale=0.5)
    torch.testing.assert_close(forward(pipe.transformer), reference, rtol=0, atol=1e-5)
    peft_model = PeftModel.from_pretrained(base_transformer(tiny_model_dir), out)
    for module in peft_model.modules():
        if hasattr(module, "scaling") and isinstance(module.scaling, dict) and "default" in module.scaling:
            module.scaling["default"] *= 0.5
    torch.testing.assert_close(half, forward(peft_model), rtol=0, atol=1e-5)


def test_export_lora_peft_to_easyanimate_to_peft_is_lossless(trained, tiny_model_dir, tmp_path):
    out, _ = trained
    easyanimate = str(tmp_path / "my_lora.safetensors")
    result = run_cli("export-lora", out, "--to", "easyanimate", easyanimate)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "33 adapted layers; rank 8" in result.stdout
    written = export_lora(easyanimate, "peft", str(tmp_path / "back"))
    assert sorted(os.path.basename(p) for p in written) == ["adapter_config.json", "adapter_model.safetensors"]
    before = load_file(os.path.join(out, "adapter_model.safetensors"))
    after = load_file(os.path.join(tmp_path, "back", "adapter_model.safetensors"))
    assert before.keys() == after.keys()
    assert all(torch.equal(before[key], after[key]) and before[key].dtype == after[key].dtype for key in before)
    config_before = json.load(open(os.path.join(out, "adapter_config.json")))
    config_after = json.load(open(os.path.join(tmp_path, "back", "adapter_config.json")))
    for key in ("r", "lora_alpha", "target_modules", "base_model_name_or_path", "init_lora_weights"):
        assert config_before[key] == config_after[key], key
    # diffusers module names resolve through the original's merge walk on a diffusers transformer too.
    diffusers_style = export_lora(out, "easyanimate", str(tmp_path / "d.safetensors"), key_style="diffusers")[0]
    assert merge_like_original(base_transformer(tiny_model_dir), diffusers_style) == 33
    assert read_lora(diffusers_style).modules.keys() == read_lora(out).modules.keys()


def test_sample_renders_an_image_to_video_clip_with_the_lora(trained, tiny_inpaint_model_dir, tmp_path):
    out, _ = trained
    image = str(tmp_path / "first.png")
    Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)).save(image)
    clip = str(tmp_path / "clips" / "clip.mp4")
    result = run_cli("sample", "--model", tiny_inpaint_model_dir, "--lora", out, "--prompt", "a red disc",
                     "--image", image, "--out", clip, "--num_frames", "9", "--height", "32", "--width", "32",
                     "--steps", "2", "--seed", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "merged at scale 1" in result.stdout
    reader = decord.VideoReader(clip)
    frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    assert frames.shape == (9, 32, 32, 3)


def test_sample_refuses_bad_frame_counts_before_loading_anything(tmp_path, capsys):
    from hf_easyanimate.cli import main

    code = main(["sample", "--model", str(tmp_path / "no-model"), "--prompt", "x", "--out", str(tmp_path / "x.mp4"),
                 "--num_frames", "8"])
    assert code == 2 and "4n+1" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x.mp4")


def test_text_to_video_sample_differs_with_and_without_the_lora(trained, tiny_model_dir):
    from hf_easyanimate.inference import load_pipeline, render_video

    out, _ = trained
    pipe = load_pipeline(tiny_model_dir)
    kwargs = dict(num_frames=5, height=32, width=32, num_inference_steps=2, seed=0)
    plain = render_video(pipe, "a blue square", **kwargs)
    load_lora_into_pipeline(pipe, out)
    with_lora = render_video(pipe, "a blue square", **kwargs)
    assert plain.shape == with_lora.shape == (5, 32, 32, 3) and plain.dtype == np.uint8
    assert np.abs(plain.astype(int) - with_lora.astype(int)).max() > 0


def test_easyanimate_only_output_still_resumes_from_checkpoints(tiny_model_dir, demo_data, tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    common = [DEMO, *demo_overrides(tiny_model_dir, demo_data, out), "--save_steps", "2", "--logging_steps", "1",
              "--save_lora_format", "easyanimate"]
    run(*parse_args([*common, "--max_steps", "2"]))
    assert os.listdir(out).count("adapter_model.safetensors") == 0  # output_dir honours the flag
    assert os.path.isfile(os.path.join(out, "easyanimate_lora.safetensors"))
    assert os.path.isfile(os.path.join(out, "checkpoint-2", "adapter_model.safetensors"))  # Trainer resumes from it
    steps_run = []
    original_compute_loss = EasyAnimateTrainer.compute_loss

    def counting_compute_loss(self, *args, **kwargs):
        steps_run.append(self.state.global_step)
        return original_compute_loss(self, *args, **kwargs)

    monkeypatch.setattr(EasyAnimateTrainer, "compute_loss", counting_compute_loss)
    trainer = run(*parse_args([*common, "--max_steps", "3", "--resume_from_checkpoint",
                               os.path.join(out, "checkpoint-2")]))
    assert trainer.state.global_step == 3 and steps_run == [2]  # one new step, after the restored two


def test_easyanimate_file_follows_the_training_dtype_and_the_format_flag(trained, tmp_path, monkeypatch):
    _, trainer = trained
    monkeypatch.setattr(trainer.args, "bf16", True)
    trainer.save_model(str(tmp_path / "bf16"))
    with safe_open(str(tmp_path / "bf16" / "easyanimate_lora.safetensors"), "pt") as handle:
        dtypes = {handle.get_tensor(key).dtype for key in handle.keys()}
    assert dtypes == {torch.bfloat16}  # alpha included, as the original's save_weights(file, weight_dtype)
    assert load_file(str(tmp_path / "bf16" / "adapter_model.safetensors"))[
        "base_model.model.proj_out.lora_A.weight"].dtype == torch.float32
    monkeypatch.setattr(trainer.args, "save_lora_format", "peft")
    trainer.save_model(str(tmp_path / "peft_only"))
    assert sorted(os.listdir(tmp_path / "peft_only")) == [
        "adapter_config.json", "adapter_model.safetensors", "training_args.bin", "training_recipe.yaml"]


@pytest.mark.gpu
def test_merge_and_sample_on_cuda_in_bfloat16(trained, tiny_model_dir):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from hf_easyanimate.inference import load_pipeline, render_video

    out, _ = trained
    pipe = load_pipeline(tiny_model_dir, torch_dtype=torch.bfloat16, device="cuda")
    before = pipe.transformer.proj_out.weight.detach().clone()
    load_lora_into_pipeline(pipe, out)
    weight = pipe.transformer.proj_out.weight
    assert weight.device.type == "cuda" and weight.dtype == torch.bfloat16 and not torch.equal(weight, before)
    frames = render_video(pipe, "a red disc", num_frames=5, height=32, width=32, num_inference_steps=2)
    assert frames.shape == (5, 32, 32, 3)
