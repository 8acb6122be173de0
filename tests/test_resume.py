"""Exact resume: a run SIGKILLed after step k and resumed from checkpoint-k ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import RECIPES, REPO_ROOT, demo_overrides
from safetensors.torch import load_file, save_file

from hf_easyanimate.assembly import run
from hf_easyanimate.trainers.lora_config import parse_args
from hf_easyanimate.training.resume import CheckpointNotFound, resolve_resume, rotate_checkpoints_keeping
from hf_easyanimate.training.run_lock import LOCK_NAME

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")
K = 4  # cpu_demo plans 3 batches per epoch: checkpoint-4 is inside epoch 1 and step 8 inside epoch 2

# The child dies by SIGKILL right after Trainer finished writing checkpoint-K (on_save), like a crash.
KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from transformers import TrainerCallback
    from hf_easyanimate.trainers.lora_config import parse_args
    from hf_easyanimate.assembly import run

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == int(os.environ["KILL_AT_STEP"]):
                os.kill(os.getpid(), signal.SIGKILL)

    run(*parse_args(sys.argv[1:]), callbacks=[Crash()])
    """
)


def recipe_args(model_dir: str, meta: str, out: str, *extra: str) -> list[str]:
    # Text drop at 0.5 so caption randomness is exercised; frame starts and noise are random anyway.
    return [DEMO, "--max_steps", str(2 * K), "--save_steps", str(K), "--logging_steps", "1", "--save_total_limit", "1",
            "--text_drop_ratio", "0.5", *demo_overrides(model_dir, meta, out), *extra]


def losses_after(output_dir: str, step: int) -> dict[int, float]:
    state = json.load(open(os.path.join(output_dir, f"checkpoint-{step}", "trainer_state.json")))
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


def test_killed_and_resumed_run_reaches_the_uninterrupted_weights(tiny_model_dir, demo_data, tmp_path):
    straight, crashed = str(tmp_path / "straight"), str(tmp_path / "crashed")
    run(*parse_args(recipe_args(tiny_model_dir, demo_data, straight)))

    env = {**os.environ, "KILL_AT_STEP": str(K), "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, *recipe_args(tiny_model_dir, demo_data, crashed)],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    # Died before finishing: no final adapter; the lock of the dead job stays, and the resume below takes it over.
    assert sorted(os.listdir(crashed)) == [LOCK_NAME, f"checkpoint-{K}"]

    trainer = run(*parse_args(recipe_args(tiny_model_dir, demo_data, crashed, "--resume_from_checkpoint", "latest")))
    assert trainer.state.global_step == 2 * K
    assert not os.path.exists(os.path.join(crashed, LOCK_NAME))

    expected, resumed = load_file(f"{straight}/adapter_model.safetensors"), load_file(f"{crashed}/adapter_model.safetensors")
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=1e-6, msg=name)
    # Same batches, crops, captions, timesteps and noise after the resume point: the same losses, step by step.
    straight_losses, resumed_losses = losses_after(straight, 2 * K), losses_after(crashed, 2 * K)
    for step in range(K + 1, 2 * K + 1):
        assert resumed_losses[step] == pytest.approx(straight_losses[step], rel=1e-6), step
    # save_total_limit=1 deleted checkpoint-K in the straight run, but never the checkpoint a run resumed from.
    assert sorted(n for n in os.listdir(straight) if n.startswith("checkpoint")) == [f"checkpoint-{2 * K}"]
    assert sorted(n for n in os.listdir(crashed) if n.startswith("checkpoint")) == [f"checkpoint-{K}",
                                                                                   f"checkpoint-{2 * K}"]


def make_checkpoint(output_dir, step: int, complete: bool = True, rank: int = 2) -> str:
    """A small checkpoint with every file resuming reads (the state file last, as Trainer writes it)."""
    path = os.path.join(output_dir, f"checkpoint-{step}")
    os.makedirs(path)
    module = "base_model.model.proj"
    save_file({f"{module}.lora_A.weight": torch.zeros(rank, 4), f"{module}.lora_B.weight": torch.zeros(4, rank)},
              os.path.join(path, "adapter_model.safetensors"))
    json.dump({"r": rank, "lora_alpha": rank}, open(os.path.join(path, "adapter_config.json"), "w"))
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        torch.save({"step": step}, os.path.join(path, name))
    if complete:
        json.dump({"global_step": step}, open(os.path.join(path, "trainer_state.json"), "w"))
    return path


def test_resolve_resume_latest_path_basename_and_incomplete(tmp_path):
    out = str(tmp_path)
    assert resolve_resume("latest", out) is None  # nothing yet: start fresh (with a warning)
    make_checkpoint(out, 5)
    ten = make_checkpoint(out, 10)
    make_checkpoint(out, 15, complete=False)  # being written when the run died
    assert resolve_resume("latest", out) == ten
    assert resolve_resume(ten, out) == ten
    # The original looked checkpoints up by base name inside output_dir.
    assert resolve_resume("elsewhere/checkpoint-10", out) == os.path.join(out, "checkpoint-10")
    with pytest.raises(CheckpointNotFound, match="incomplete"):
        resolve_resume(os.path.join(out, "checkpoint-15"), out)
    with pytest.raises(CheckpointNotFound, match="no such checkpoint"):
        resolve_resume("checkpoint-99", out)
    assert resolve_resume(None, out) is None


def test_rotation_keeps_the_resumed_checkpoint(tmp_path):
    out = str(tmp_path)
    paths = {step: make_checkpoint(out, step) for step in (2, 4, 6, 8)}
    deleted = rotate_checkpoints_keeping(out, 2, keep={paths[2]})
    # The protected one counts toward the limit (as Trainer counts its best checkpoint); the newest is always kept.
    assert sorted(deleted) == [paths[4], paths[6]]
    assert sorted(os.listdir(out)) == ["checkpoint-2", "checkpoint-8"]
    assert rotate_checkpoints_keeping(out, None, keep=set()) == []
