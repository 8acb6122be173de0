"""Watching a run: validation samples, TensorBoard events, the deterministic eval loss and the report."""

from __future__ import annotations

import glob
import json
import os
import sys
import types

import decord
import numpy as np
import pytest
import torch
from conftest import RECIPES, demo_overrides
from PIL import Image
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hf_easyanimate import cli
from hf_easyanimate.assembly import run
from hf_easyanimate.models.loading import load_components
from hf_easyanimate.models.lora import add_lora, build_lora_config
from hf_easyanimate.trainers.lora_config import parse_args
from hf_easyanimate.training.report import loss_curves, render
from hf_easyanimate.training.validation import ValidationCallback, ValidationSampler, ValidationSettings

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")
PROMPT = "a red square moving left on a blue background"


def demo_argv(model_dir: str, meta: str, out: str, *extra: str) -> list[str]:
    # 5-frame clips: the tiny MagVIT encodes them several times faster than the recipe's 9 on CPU.
    # --bucket_remainder drop: the original's 3 full batches per epoch, so epoch 1 ends at step 3
    return [DEMO, *demo_overrides(model_dir, meta, out), "--max_steps", "4", "--save_steps", "2",
            "--logging_steps", "1", "--video_sample_n_frames", "5", "--bucket_remainder", "drop", *extra]


WATCHED = ("--report_to", "tensorboard", "--validation_prompts", PROMPT, "--validation_steps", "2",
           "--validation_epochs", "100", "--validation_num_inference_steps", "3", "--validation_num_frames", "5",
           "--eval_strategy", "steps", "--eval_steps", "2", "--eval_timesteps", "2", "--max_eval_samples", "2")


@pytest.fixture(scope="module")
def watched_run(tiny_model_dir, demo_data, tiny_clip_dir, tmp_path_factory):
    """4 steps of the tiny demo with validation sampling (scored by a tiny CLIP), eval loss and TensorBoard every
    2 steps."""
    out = str(tmp_path_factory.mktemp("watched") / "run")
    trainer = run(*parse_args(demo_argv(tiny_model_dir, demo_data, out, *WATCHED, "--eval_data_meta", demo_data,
                                        "--validation_clip_model", tiny_clip_dir)))
    return out, trainer


def test_each_validation_step_writes_one_mp4_and_one_contact_sheet(watched_run):
    out, _ = watched_run
    steps = sorted(os.listdir(os.path.join(out, "validation")))
    # every 2 steps, plus the end of the first epoch (3 batches), as the original's epoch % N == 0 does
    assert steps == ["step-2", "step-3", "step-4"]
    for step in steps:
        folder = os.path.join(out, "validation", step)
        assert sorted(os.listdir(folder)) == ["contact_sheet.png", "metrics.json", "prompt-00.mp4", "samples.json"]
        video = decord.VideoReader(os.path.join(folder, "prompt-00.mp4"))
        assert (len(video), *video[0].shape) == (5, 64, 64, 3)  # --validation_num_frames 5 at the recipe's 64 px
        sheet = Image.open(os.path.join(folder, "contact_sheet.png"))
        assert sheet.height > 64 and sheet.width >= 5 * 64  # caption strip above the 5 frames
        index = json.load(open(os.path.join(folder, "samples.json")))
        assert index["prompts"] == [PROMPT] and index["step"] == int(step.split("-")[1])
        assert index["negative_prompt"] == "bad detailed"


def test_tensorboard_event_file_holds_contact_sheets_and_eval_loss(watched_run):
    out, _ = watched_run
    runs = glob.glob(os.path.join(out, "runs", "*"))
    assert len(runs) == 1  # the validation images went into Trainer's own event file
    events = EventAccumulator(runs[0], size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    sheets = events.Images("validation/contact_sheet")
    assert [event.step for event in sheets] == [2, 3, 4]
    png = np.asarray(Image.open(__import__("io").BytesIO(sheets[0].encoded_image_string)))
    assert png.shape[1] >= 5 * 64
    assert [event.step for event in events.Scalars("eval/loss")] == [2, 4]
    assert [event.step for event in events.Scalars("train/loss")] == [1, 2, 3, 4]


def test_validation_and_eval_leave_the_training_stream_unchanged(watched_run, tiny_model_dir, demo_data, tmp_path):
    out, trainer = watched_run
    plain = str(tmp_path / "plain")
    baseline = run(*parse_args(demo_argv(tiny_model_dir, demo_data, plain, "--report_to", "none")))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    baseline_losses = [entry["loss"] for entry in baseline.state.log_history if "loss" in entry]
    assert len(losses) == 4 and losses == baseline_losses  # exactly: same batches, noise and timesteps
    watched, unwatched = (load_file(os.path.join(d, "adapter_model.safetensors")) for d in (out, plain))
    for name, tensor in unwatched.items():
        torch.testing.assert_close(watched[name], tensor, rtol=0, atol=0)


def test_eval_loss_is_deterministic_and_tracks_the_weights(watched_run):
    _, trainer = watched_run
    state = torch.get_rng_state()
    first = trainer.evaluate()["eval_loss"]
    assert torch.equal(torch.get_rng_state(), state)  # evaluation does not move the training RNG
    assert trainer.evaluate()["eval_loss"] == first
    logged = [entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry]
    assert first in logged[-1:]  # same weights as the step-4 evaluation -> same number
    lora_b = [p for name, p in trainer.model.named_parameters() if "lora_B" in name]
    saved = [p.detach().clone() for p in lora_b]
    with torch.no_grad():
        for parameter in lora_b:
            parameter.add_(torch.randn_like(parameter) * 0.5)
    try:
        assert trainer.evaluate()["eval_loss"] != pytest.approx(first, rel=1e-4)
    finally:
        with torch.no_grad():
            for parameter, value in zip(lora_b, saved):
                parameter.copy_(value)


def test_report_plots_train_and_eval_loss_and_collects_the_latest_sheet(watched_run, capsys):
    out, _ = watched_run
    state = json.load(open(os.path.join(out, "trainer_state.json")))
    train, evals = loss_curves(state["log_history"])
    assert [s for s, _ in train] == [1, 2, 3, 4] and [s for s, _ in evals] == [2, 4]
    assert cli.main(["report", out]) == 0
    printed = capsys.readouterr().out
    paths = render(out)
    assert paths.loss_plot in printed and paths.validation_step == 4
    plot = np.asarray(Image.open(paths.loss_plot).convert("RGB"))
    assert plot.shape == (450, 1400, 3)  # the loss, and beside it the CLIP metrics of the tiny CLIP
    orange = ((plot[..., 0] > 200) & (plot[..., 1] > 100) & (plot[..., 1] < 160) & (plot[..., 2] < 60)).sum()
    blue = ((plot[..., 0] < 60) & (plot[..., 1] > 100) & (plot[..., 1] < 140) & (plot[..., 2] > 160)).sum()
    assert orange > 50 and blue > 50  # both curves (tab:orange eval, tab:blue train) are drawn
    latest = open(os.path.join(out, "validation", "step-4", "contact_sheet.png"), "rb").read()
    assert open(paths.validation_sheet, "rb").read() == latest


def test_report_says_what_is_missing(tmp_path, capsys, monkeypatch):
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "no trainer_state.json" in capsys.readouterr().err
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 1, "log_history": []}))
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if matplotlib were not installed
    assert cli.main(["report", str(tmp_path)]) == 2
    assert "not installed in this environment: pip install matplotlib" in capsys.readouterr().err


def test_inpaint_validation_starts_from_the_reference_image(tiny_inpaint_model_dir, tmp_path):
    components = load_components(tiny_inpaint_model_dir)
    model = add_lora(components.transformer, build_lora_config(components.transformer, 4, 4)).train()
    paths = []
    for name, colour in (("red", (230, 40, 40)), ("blue", (40, 80, 230))):
        paths.append(str(tmp_path / f"{name}.png"))
        Image.new("RGB", (80, 48), colour).save(paths[-1])

    def sample(image: str) -> np.ndarray:
        settings = ValidationSettings(prompts=["a disc"], images=[image], num_frames=5, height=32, width=32,
                                      num_inference_steps=2)
        sampler = ValidationSampler(components.vae, components.text_encoder, components.tokenizer,
                                    components.scheduler, settings)
        return sampler.sample(model.get_base_model())[0]

    rng = torch.get_rng_state()
    red, red_again, blue = sample(paths[0]), sample(paths[0]), sample(paths[1])
    assert red.shape == (5, 32, 32, 3) and red.dtype == np.uint8
    assert np.array_equal(red, red_again)  # seeded generator: the same sample every time
    assert not np.array_equal(red, blue)  # the reference image conditions the sample
    assert torch.equal(torch.get_rng_state(), rng) and model.training


def test_epoch_schedule_follows_the_original(monkeypatch):
    callback = ValidationCallback(sampler=None, every_steps=10_000, every_epochs=5)
    sampled = []
    monkeypatch.setattr(callback, "validate", lambda args, state, model: sampled.append(state.epoch))
    for epoch in (1.0, 2.0, 5.0, 6.0, 6.5, 11.0):
        callback.on_epoch_end(None, types.SimpleNamespace(epoch=epoch, global_step=0), None)
    assert sampled == [1.0, 6.0, 11.0]  # epochs 0, 5, 10 (0-based) finished; a mid-epoch stop is not an epoch


def test_validation_is_logged_to_wandb_when_it_is_the_tracker(monkeypatch, tmp_path):
    logged = []
    fake = types.SimpleNamespace(run=object(), log=logged.append, Image=lambda p: ("image", p),
                                 Video=lambda p, format: ("video", p, format))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    callback = ValidationCallback(sampler=types.SimpleNamespace(settings=ValidationSettings(prompts=["x"])),
                                  every_steps=1, every_epochs=1)
    written = {"contact_sheet": "sheet.png", "videos": ["a.mp4"], "sheet": np.zeros((4, 4, 3), np.uint8)}
    callback._log(types.SimpleNamespace(report_to=["wandb"]), types.SimpleNamespace(global_step=7), written, [])
    assert logged == [{"validation/contact_sheet": ("image", "sheet.png"),
                       "validation/videos": [("video", "a.mp4", "mp4")], "train/global_step": 7}]
    logged.clear()
    callback._log(types.SimpleNamespace(report_to=["tensorboard"]), types.SimpleNamespace(global_step=7), written, [])
    assert logged == []


def test_a_failing_sample_is_logged_and_training_goes_on(tmp_path, caplog):
    class Broken:
        settings = ValidationSettings(prompts=["x"])

        def sample(self, transformer):
            raise RuntimeError("CUDA out of memory (simulated)")

    callback = ValidationCallback(sampler=Broken(), every_steps=1, every_epochs=1)
    state = types.SimpleNamespace(global_step=3, is_world_process_zero=True, epoch=0.5)
    assert callback.validate(types.SimpleNamespace(output_dir=str(tmp_path)), state, torch.nn.Linear(2, 2)) is None
    assert callback.failures == 1 and "validation at step 3 failed; training continues" in caplog.text
    assert not os.path.exists(tmp_path / "validation")
