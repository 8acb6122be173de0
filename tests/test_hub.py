"""Hub push at the huggingface_hub client boundary: exactly the LoRA files, configs and model card go up.

``HfApi.create_repo`` / ``HfApi.create_commit`` are the network calls; they are replaced by recorders, so the
test sees precisely the files (and their sizes) an upload would send.
"""

from __future__ import annotations

import json
import logging
import os

import yaml
from conftest import RECIPES, demo_overrides
from huggingface_hub import ModelCard

from hf_easyanimate.assembly import run
from hf_easyanimate.trainers.lora_config import parse_args
from hf_easyanimate.training.hub import CardFacts, format_size, loss_curve_points, model_card_text

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")
REPO_FILES = {"adapter_model.safetensors", "adapter_config.json", "easyanimate_lora.safetensors",
              "training_recipe.yaml", "README.md"}
RESUME_STATE = {"trainer_state.json", "optimizer.pt", "scheduler.pt", "rng_state.pth"}


def train_and_push(model_dir, demo_data, out, strategy, *extra):
    model_args, data_args, args = parse_args([
        DEMO, *demo_overrides(model_dir, demo_data, out), "--max_steps", "2", "--save_steps", "2",
        "--logging_steps", "1", "--push_to_hub", "true", "--hub_model_id", "someone/tiny-lora",
        "--hub_private_repo", "true", "--hub_strategy", strategy, *extra,
    ])
    return run(model_args, data_args, args)


def assert_only_lora_tensors(files: dict) -> None:
    for name, entry in files.items():
        if name.endswith(".safetensors"):
            from safetensors.torch import load

            keys = load(entry["content"]).keys()
            assert keys and all("lora_" in key for key in keys), name  # no base weight can hide in a file


def test_checkpoint_strategy_pushes_lora_files_configs_card_and_resume_state_only(
    tiny_model_dir, demo_data, tmp_path, hub_recorder, caplog
):
    out = str(tmp_path / "run")
    with caplog.at_level(logging.WARNING, logger="hf_easyanimate.training.hub"):
        trainer = train_and_push(tiny_model_dir, demo_data, out, "checkpoint")
    assert hub_recorder["repos"] == [{"repo_id": "someone/tiny-lora", "private": True, "exist_ok": True}]
    commits = hub_recorder["commits"]
    messages = [commit["message"] for commit in commits]
    assert messages == ["Training in progress, step 2", "Training in progress, step 2, checkpoint", "Model save"]
    top_level = [commit for commit in commits if "checkpoint" not in commit["message"]]
    for commit in top_level:
        assert set(commit["files"]) == REPO_FILES
        assert_only_lora_tensors(commit["files"])
    checkpoint = commits[1]["files"]
    assert {name.split("/", 1)[0] for name in checkpoint} == {"last-checkpoint"}
    assert {name.split("/", 1)[1] for name in checkpoint} == (REPO_FILES - {"README.md"}) | RESUME_STATE
    assert_only_lora_tensors(checkpoint)

    # Sizes are reported before each upload, file by file.
    for commit in commits:
        for name, entry in commit["files"].items():
            assert f"{name}: {format_size(entry['size'])}" in caplog.text
    sizes = {name: entry["size"] for name, entry in commits[-1]["files"].items()}
    print("pushed (bytes):", json.dumps(sizes))
    base_weights = os.path.getsize(os.path.join(tiny_model_dir, "transformer", "diffusion_pytorch_model.safetensors"))
    assert sum(sizes.values()) < base_weights

    # The model card pushed last describes this run.
    card = ModelCard(commits[-1]["files"]["README.md"]["content"].decode())
    assert set(card.data.tags) >= {"lora", "easyanimate", "text-to-video"}
    assert card.data.pipeline_tag == "text-to-video"
    text = card.text
    assert "load_lora_into_pipeline" in text and "ComfyUI" in text and "easyanimate_lora.safetensors" in text
    assert "2 optimisation steps" in text and f"on {len(trainer.train_dataset)} training samples" in text
    logged = [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e]
    for step, loss in logged:
        assert f"| {step} | {loss:.4f} |" in text
    recipe = yaml.safe_load(text.split("```yaml", 1)[1].split("```", 1)[0])
    assert recipe["rank"] == 8 and recipe["max_steps"] == 2 and recipe["hub_strategy"] == "checkpoint"
    assert not any(key.endswith("_token") for key in recipe)  # never a secret


def test_end_strategy_pushes_once_at_the_end_and_only_the_chosen_format(
    tiny_model_dir, demo_data, tmp_path, hub_recorder
):
    out = tmp_path / "run"
    out.mkdir()
    (out / "adapter_model.safetensors").write_bytes(b"stale file from an earlier run")
    train_and_push(tiny_model_dir, demo_data, str(out), "end", "--save_lora_format", "easyanimate",
                   "--overwrite_output_dir", "true")  # without it the earlier run's folder is refused
    assert not (out / "adapter_model.safetensors").exists()
    assert [commit["message"] for commit in hub_recorder["commits"]] == ["Model save"]
    files = hub_recorder["commits"][0]["files"]
    assert set(files) == {"easyanimate_lora.safetensors", "training_recipe.yaml", "README.md"}
    assert_only_lora_tensors(files)


def test_model_card_for_an_image_to_video_hub_base_model():
    facts = CardFacts(
        base_model="alibaba-pai/EasyAnimateV5.1-12b-zh-InP", image_to_video=True, dataset_size=120, steps=3000,
        epochs=25.0, losses=loss_curve_points([{"step": s, "loss": 1.0 / s} for s in range(1, 101)], points=5),
        recipe={"rank": 128, "network_alpha": 64}, rank=128, alpha=64, repo_id="me/my-lora",
    )
    card = ModelCard(model_card_text(facts))
    assert card.data.base_model == "alibaba-pai/EasyAnimateV5.1-12b-zh-InP"
    assert set(card.data.tags) >= {"lora", "easyanimate", "image-to-video"}
    assert "EasyAnimateInpaintPipeline" in card.text and "--image first_frame.png" in card.text
    assert "rank 128, alpha 64" in card.text and "3000 optimisation steps (25 epochs) on 120" in card.text
    assert [line for line in card.text.splitlines() if line.startswith("| ") and "loss" not in line][-5:] == [
        "| 1 | 1.0000 |", "| 26 | 0.0385 |", "| 51 | 0.0196 |", "| 75 | 0.0133 |", "| 100 | 0.0100 |"]
