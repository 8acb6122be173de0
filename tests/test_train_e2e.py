"""The walking skeleton: recipe -> data -> Trainer -> LoRA files, on the tiny model, on CPU."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import RECIPES, demo_overrides, run_cli
from safetensors.torch import load_file

from hf_easyanimate.assembly import run
from hf_easyanimate.models.loading import load_components
from hf_easyanimate.trainers.lora_config import parse_args

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")


def logged_losses(output_dir: str) -> list[float]:
    checkpoints = sorted(
        (d for d in os.listdir(output_dir) if d.startswith("checkpoint-")), key=lambda d: int(d.split("-")[1])
    )
    state = json.load(open(os.path.join(output_dir, checkpoints[-1], "trainer_state.json")))
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def test_cli_demo_trains_and_loss_goes_down(tiny_model_dir, demo_data, tmp_path):
    out = str(tmp_path / "run")
    result = run_cli("train", DEMO, "--max_steps", "20", "--output_dir", out, "--save_steps", "20",
                     *demo_overrides(tiny_model_dir, demo_data, out)[:-2])
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.exists(os.path.join(out, "adapter_model.safetensors"))
    assert os.path.exists(os.path.join(out, "adapter_config.json"))
    losses = logged_losses(out)
    assert len(losses) == 4  # logging_steps 5 over 20 steps
    assert losses[-1] < losses[0], losses
    # Trainer's progress bar and loss lines reach the user.
    assert "20/20" in result.stderr and "'loss'" in (result.stdout + result.stderr)


def test_lora_weights_move_and_base_weights_do_not(tiny_model_dir, demo_data, tmp_path):
    out = str(tmp_path / "run")
    model_args, data_args, args = parse_args(
        [DEMO, "--max_steps", "6", "--save_steps", "100", *demo_overrides(tiny_model_dir, demo_data, out)]
    )
    trainer = run(model_args, data_args, args)

    adapter = load_file(os.path.join(out, "adapter_model.safetensors"))
    ups = [name for name in adapter if "lora_B" in name]
    untouched = {name for name in ups if adapter[name].abs().sum() == 0}
    # lora_B starts at zero; every adapter with a gradient path must have moved. The last block's text-stream
    # outputs are discarded by the transformer, so exactly those adapters get no gradient (as in the original).
    last = f"transformer_blocks.{trainer.model.get_base_model().config.num_layers - 1}."
    dead_path = {name for name in ups if last in name and any(
        part in name for part in ("add_q_proj", "to_add_out", "txt_ff."))}
    assert len(ups) > len(dead_path) > 0
    assert untouched == dead_path
    config = json.load(open(os.path.join(out, "adapter_config.json")))
    assert config["r"] == 8 and config["base_model_name_or_path"] == tiny_model_dir

    reference = load_components(tiny_model_dir).transformer.state_dict()
    trained = trainer.model.get_base_model().state_dict()
    base_keys = [k for k in trained if "lora_" not in k]
    assert len(base_keys) == len(reference)
    for key in base_keys:
        original_key = key.replace(".base_layer", "")
        torch.testing.assert_close(trained[key], reference[original_key], rtol=0, atol=0)
    # Frozen encoders are not part of the optimised model.
    assert not any("vae" in name or "text_encoder" in name for name, _ in trainer.model.named_parameters())
    trainable = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)


@pytest.mark.slow
def test_readme_demo_default_length_finishes_quickly(tiny_model_dir, demo_data, tmp_path):
    out = str(tmp_path / "run")
    result = run_cli("train", DEMO, *demo_overrides(tiny_model_dir, demo_data, out))
    assert result.returncode == 0, result.stderr[-3000:]
    losses = logged_losses(out)
    assert losses[-1] < losses[0]
