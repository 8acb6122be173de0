"""Non-finite losses skip their update and, in a row, stop the run; checkpoints survive a full disk."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch
from conftest import RECIPES, demo_overrides
from safetensors.torch import load_file
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

import hf_easyanimate.assembly.lora as train_module
from hf_easyanimate.train import main
from hf_easyanimate.trainers import EasyAnimateTrainer
from hf_easyanimate.trainers.lora_config import parse_args
from hf_easyanimate.training.guards import CheckpointSaveError

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")
CHECKPOINT_FILES = {"adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "scheduler.pt",
                    "rng_state.pth", "trainer_state.json", "training_args.bin"}


def argv(model_dir: str, meta: str, out: str, *extra: str) -> list[str]:
    # 5-frame clips: the tiny MagVIT encodes them several times faster than the recipe's 9 on CPU.
    return [DEMO, *demo_overrides(model_dir, meta, out), "--logging_steps", "1", "--report_to", "none",
            "--video_sample_n_frames", "5", *extra]


class NaNAtSteps:
    """Test-only objective wrapper: the loss of the given (1-based) training calls is NaN, as after an overflow."""

    def __init__(self, inner, bad_calls) -> None:
        self.inner, self.bad_calls, self.calls = inner, bad_calls, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def loss(self, pred, batch):
        self.calls += 1
        loss = self.inner.loss(pred, batch)
        return loss * float("nan") if self.bad_calls(self.calls) else loss


class LoraSnapshots(TrainerCallback):
    """LoRA weights after every optimizer step, to see which updates happened."""

    def __init__(self) -> None:
        self.after_step: dict[int, dict[str, torch.Tensor]] = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.after_step[state.global_step] = {
            name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad
        }


@pytest.fixture
def nan_at(monkeypatch):
    """Make the next run's objective return NaN on the chosen calls; returns the snapshot recorder."""
    snapshots = LoraSnapshots()

    def install(bad_calls):
        build = train_module.build_objective
        monkeypatch.setattr(train_module, "build_objective", lambda *a: NaNAtSteps(build(*a), bad_calls))

        class Recording(EasyAnimateTrainer):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.add_callback(snapshots)

        monkeypatch.setattr(train_module, "EasyAnimateTrainer", Recording)
        return snapshots

    return install


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[name], b[name]) for name in a)


def test_nonfinite_loss_skips_exactly_its_update_and_is_counted(nan_at, tiny_model_dir, demo_data, tmp_path):
    snapshots = nan_at(lambda call: call in (3, 4))
    out = str(tmp_path / "run")
    trainer = train_module.run(*parse_args(argv(tiny_model_dir, demo_data, out, "--max_steps", "6",
                                                "--save_steps", "100", "--max_consecutive_nonfinite", "3")))
    weights = snapshots.after_step
    assert not same(weights[2], weights[1])
    assert same(weights[3], weights[2]) and same(weights[4], weights[3])  # the NaN steps changed nothing
    assert not same(weights[5], weights[4])  # and training went on
    assert trainer.nonfinite_guard.total == 2 and trainer.nonfinite_guard.skipped_steps == [3, 4]
    # AdamW took 4 steps, not 6: a skipped update does not even advance the optimizer's moments.
    steps = {float(state["step"]) for state in trainer.optimizer.state_dict()["state"].values()}
    assert steps == {4.0}
    history = {entry["step"]: entry for entry in trainer.state.log_history if "loss" in entry}
    assert "nonfinite_skipped_steps" not in history[2] and history[4]["nonfinite_skipped_steps"] == 2
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in history.values())
    assert all(torch.isfinite(t).all() for t in load_file(os.path.join(out, "adapter_model.safetensors")).values())


def test_a_streak_of_nonfinite_losses_stops_with_the_checkpoints_intact(nan_at, tiny_model_dir, demo_data,
                                                                       tmp_path, capsys):
    nan_at(lambda call: call >= 4)
    out = str(tmp_path / "run")
    code = main(argv(tiny_model_dir, demo_data, out, "--max_steps", "12", "--save_steps", "2",
                                  "--max_consecutive_nonfinite", "3"))
    error = capsys.readouterr().err
    assert code == 1
    assert "training stopped at step 6: the loss was NaN or inf for 3 optimizer steps in a row (steps 4-6" in error
    assert f"the last checkpoint is {os.path.join(out, 'checkpoint-4')}" in error
    assert sorted(d for d in os.listdir(out) if d.startswith("checkpoint-")) == ["checkpoint-2", "checkpoint-4"]
    for name in ("checkpoint-2", "checkpoint-4"):
        assert CHECKPOINT_FILES <= set(os.listdir(os.path.join(out, name)))
    # checkpoint-4 holds the step-3 weights (step 4 was skipped): finite, and not checkpoint-2's.
    four, two = (load_file(os.path.join(out, name, "adapter_model.safetensors")) for name in ("checkpoint-4",
                                                                                            "checkpoint-2"))
    assert all(torch.isfinite(t).all() for t in four.values())
    assert not all(torch.equal(four[k], two[k]) for k in four)
    assert not os.path.exists(os.path.join(out, "adapter_model.safetensors"))  # no final save of a diverged run
    state = json.load(open(os.path.join(out, "trainer_state.json")))  # the history is kept for the report
    assert state["global_step"] == 6


def fail_when_writing(monkeypatch, fragment: str) -> None:
    """Simulate a full disk: torch.save into a path containing ``fragment`` writes a few bytes and fails."""
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and fragment in str(f):
            with open(f, "wb") as handle:
                handle.write(b"PK\x03\x04 torn")
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(monkeypatch, tiny_model_dir, demo_data,
                                                                     tmp_path):
    out = str(tmp_path / "run")
    fail_when_writing(monkeypatch, f"checkpoint-4{os.sep}")
    args = argv(tiny_model_dir, demo_data, out, "--max_steps", "6", "--save_steps", "2", "--save_total_limit", "1")
    with pytest.raises(CheckpointSaveError) as raised:
        train_module.run(*parse_args(args))
    message = str(raised.value)
    assert "No space left on device" in message and "partial folder was removed" in message
    assert f"last complete checkpoint is {os.path.join(out, 'checkpoint-2')}" in message
    # Rotation (save_total_limit 1) must not have removed checkpoint-2 for a checkpoint that never completed.
    entries = sorted(os.listdir(out))
    assert [e for e in entries if e.startswith("checkpoint")] == ["checkpoint-2"]
    assert not [f for _, _, files in os.walk(out) for f in files if "partial" in f or "torn" in f]
    assert get_last_checkpoint(out) == os.path.join(out, "checkpoint-2")
    assert CHECKPOINT_FILES <= set(os.listdir(os.path.join(out, "checkpoint-2")))
    load_file(os.path.join(out, "checkpoint-2", "adapter_model.safetensors"))
    torch.load(os.path.join(out, "checkpoint-2", "optimizer.pt"), weights_only=True)

    monkeypatch.undo()  # space freed: the run resumes from the surviving checkpoint and finishes
    trainer = train_module.run(*parse_args(args + ["--resume_from_checkpoint", "latest"]))
    assert trainer.state.global_step == 6
    assert get_last_checkpoint(out) == os.path.join(out, "checkpoint-6")


def test_full_disk_during_the_final_save_leaves_the_previous_files(monkeypatch, tiny_model_dir, demo_data, tmp_path):
    out = str(tmp_path / "run")
    trainer = train_module.run(*parse_args(argv(tiny_model_dir, demo_data, out, "--max_steps", "2",
                                                "--save_steps", "100")))
    adapter = os.path.join(out, "adapter_model.safetensors")
    before = open(adapter, "rb").read()
    with torch.no_grad():
        for name, parameter in trainer.model.named_parameters():
            if "lora_B" in name:
                parameter.add_(1.0)
    fail_when_writing(monkeypatch, ".partial-save")
    with pytest.raises(OSError, match="No space left"):
        trainer.save_model(out)
    assert open(adapter, "rb").read() == before  # the earlier adapter is untouched, not half-replaced
    assert not os.path.exists(os.path.join(out, ".partial-save"))
