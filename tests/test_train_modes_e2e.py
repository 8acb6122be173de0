"""Inpaint training on the tiny V5.1-InP model (flow) and ddpm training on the tiny V5-InP model reduce the loss.

The loss is measured on fixed batches with fixed noise/timestep seeds, with the adapter switched off (= the
base model, since LoRA's up-projection starts at zero) and on, so the comparison is not at the mercy of
which timesteps the last logged steps happened to draw.
"""

from __future__ import annotations

import os

import pytest
import torch
from conftest import RECIPES, demo_overrides

from hf_easyanimate.assembly import run
from hf_easyanimate.trainers.lora_config import parse_args

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core host OpenMP spin-waiting makes
    them several times slower; run these with one thread and restore the setting after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fixed_seed_loss(trainer, batches, adapter: bool) -> float:
    model = trainer.model
    losses = []
    with torch.no_grad():
        for i, batch in enumerate(batches):
            for repeat in range(3):
                torch.manual_seed(1000 * i + repeat)
                if adapter:
                    losses.append(trainer.compute_loss(model, batch).item())
                else:
                    with model.disable_adapter():
                        losses.append(trainer.compute_loss(model, batch).item())
    return sum(losses) / len(losses)


def train_and_measure(model_dir, demo_data, out, *flags):
    model_args, data_args, args = parse_args(
        [DEMO, "--max_steps", "30", "--save_steps", "1000", *flags, *demo_overrides(model_dir, demo_data, out)]
    )
    trainer = run(model_args, data_args, args)
    torch.manual_seed(123)
    batches = []
    for batch in trainer.get_train_dataloader():
        batches.append(batch)
        if len(batches) == 6:
            break
    trainer.model.eval()
    return trainer, batches, fixed_seed_loss(trainer, batches, False), fixed_seed_loss(trainer, batches, True)


def test_inpaint_flow_training_on_v51_inp_reduces_the_loss(tiny_inpaint_model_dir, demo_data, tmp_path):
    trainer, batches, before, after = train_and_measure(
        tiny_inpaint_model_dir, demo_data, str(tmp_path / "run"), "--train_mode", "inpaint", "--uniform_sampling", "true"
    )
    assert all("mask" in batch for batch in batches)
    assert trainer.inpaint is not None and trainer.inpaint.add_noise_to_reference
    print(f"V5.1-InP flow inpaint: fixed-seed loss {before:.4f} -> {after:.4f}")
    assert after < 0.97 * before, (before, after)


def test_ddpm_training_on_v5_reduces_the_loss(tiny_v5_inpaint_model_dir, demo_data, tmp_path):
    trainer, batches, before, after = train_and_measure(
        tiny_v5_inpaint_model_dir, demo_data, str(tmp_path / "run"), "--loss_type", "ddpm", "--train_mode",
        "inpaint", "--motion_sub_loss", "true", "--noise_share_in_frames", "true",
    )
    assert type(trainer.objective).__name__ == "DDPMObjective"
    assert trainer.objective.prediction_type == "v_prediction"
    assert "encoder_hidden_states_t5" in trainer.encoders.encode_prompts(["a red disc"])
    print(f"V5-InP ddpm inpaint: fixed-seed loss {before:.4f} -> {after:.4f}")
    assert after < 0.97 * before, (before, after)


def test_each_rank_draws_its_own_noise_stream(tiny_model_dir, demo_data, tmp_path, monkeypatch):
    """Trainer seeds all ranks with --seed; the trainer re-seeds torch with seed + rank, as the original does."""
    from hf_easyanimate.models.loading import load_components
    from hf_easyanimate.models.lora import add_lora, build_lora_config
    from hf_easyanimate.trainers import EasyAnimateTrainer, EasyAnimateTrainingArguments

    _, _, args = parse_args([DEMO, *demo_overrides(tiny_model_dir, demo_data, str(tmp_path))])
    components = load_components(tiny_model_dir)
    model = add_lora(components.transformer, build_lora_config(components.transformer, 4, 4))
    draws = []
    for rank in (0, 1):
        monkeypatch.setattr(EasyAnimateTrainingArguments, "process_index", property(lambda self, r=rank: r))
        EasyAnimateTrainer(model=model, args=args, encoders=None, objective=None)
        assert torch.initial_seed() == args.seed + rank
        draws.append(torch.randn(4))
    assert not torch.equal(draws[0], draws[1])
