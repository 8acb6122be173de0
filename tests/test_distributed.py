"""Scale-out on CPU processes: torchrun DDP and DeepSpeed ZeRO-2 train the same LoRA as one process.

"Same global batch" with a bucket sampler: the sampler plans batches of ``per_device_train_batch_size``
from (seed, epoch); accelerate hands batch i to rank i % world_size. So 2 ranks x 1 micro-batch and
1 process x 2 accumulated micro-batches see *identical* micro-batches at every optimizer step, and since
every random draw is keyed by the samples (hf_easyanimate.training.reproducibility), identical noise and timesteps.
The gradients then differ only by summation order: DDP (gloo all-reduce of two fp32 gradients) matches
bit-for-bit here, DeepSpeed (flat fp32 partitions, its own Adam step) within 1e-4 on the weights.
The ZeRO-2 run is also resumed from its checkpoint-2 on 2 ranks and must end on the same weights.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import RECIPES, REPO_ROOT, demo_overrides
from safetensors.torch import load_file

from hf_easyanimate.assembly import run
from hf_easyanimate.trainers.lora_config import parse_args

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")
ZERO2 = os.path.join(RECIPES, "deepspeed", "zero2.json")
STEPS = 3
COMMON = [  # checkpoint-2 (resumed from below) and checkpoint-3, the end of training
    "--per_device_train_batch_size", "1", "--max_steps", str(STEPS), "--save_steps", "2",
    "--logging_steps", "1", "--gradient_checkpointing", "true", "--report_model_info", "true",
]
DDP_WEIGHT_ATOL = 1e-6
DEEPSPEED_WEIGHT_ATOL = 1e-4
LOSS_RTOL = 1e-4


def launch(nproc: int, *args: str, timeout: float = 420) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node N -m hf_easyanimate.train ARGS`` (a free port is picked)."""
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "hf_easyanimate.train", *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def step_losses(output_dir: str, step: int) -> list[float]:
    state = json.load(open(os.path.join(output_dir, f"checkpoint-{step}", "trainer_state.json")))
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def adapter(output_dir: str) -> dict[str, torch.Tensor]:
    """Every LoRA tensor the run wrote (peft adapter and, when configured, the EasyAnimate file)."""
    return {f"{name}:{key}": value for name in lora_files(output_dir)
            for key, value in load_file(os.path.join(output_dir, name)).items()}


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[key].float() - b[key].float()).abs().max().item() for key in a)


@pytest.fixture(scope="module")
def single_process_reference(tiny_model_dir, demo_data, tmp_path_factory) -> str:
    """1 process, 2 accumulated micro-batches of 1: the global batch of the 2-rank runs."""
    out = str(tmp_path_factory.mktemp("single"))
    run(*parse_args([DEMO, *COMMON, "--gradient_accumulation_steps", "2", *demo_overrides(tiny_model_dir, demo_data, out)]))
    return out


def lora_files(output_dir: str) -> list[str]:
    return sorted(name for name in os.listdir(output_dir) if name.endswith(".safetensors"))


def check_two_rank_run(result: subprocess.CompletedProcess, out: str, wrapper: str, reference: str) -> None:
    assert result.returncode == 0, result.stderr[-4000:]
    # One LoRA, written once (by rank 0) in the configured formats: the files a 1-process run writes, no more.
    assert lora_files(out) == lora_files(reference) and "adapter_model.safetensors" in lora_files(out)
    assert os.path.isdir(os.path.join(out, f"checkpoint-{STEPS}"))
    ranks = json.load(open(os.path.join(out, "model_info.json")))["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 for r in ranks)
    for report in ranks:
        assert report["wrapper"] == wrapper
        # Only the LoRA is in the engine's optimizer; the VAE and text encoder are neither wrapped nor trainable.
        assert report["optimised_all_lora"] and report["optimised_parameters"] == report["trainable_lora_parameters"] > 0
        assert report["frozen_encoders_inside_wrapper"] == [] and report["frozen_encoders_trainable"] == []
        assert report["gradient_checkpointing"] is True


@pytest.mark.distributed
def test_torchrun_ddp_matches_single_process(single_process_reference, tiny_model_dir, demo_data, tmp_path):
    out = str(tmp_path / "ddp")
    result = launch(2, DEMO, *COMMON, *demo_overrides(tiny_model_dir, demo_data, out))
    check_two_rank_run(result, out, "DistributedDataParallel", single_process_reference)
    ranks = json.load(open(os.path.join(out, "model_info.json")))["ranks"]
    assert {r["distributed_type"] for r in ranks} == {"MULTI_CPU"}
    reference = step_losses(single_process_reference, STEPS)
    assert len(reference) == STEPS
    assert step_losses(out, STEPS) == pytest.approx(reference, rel=LOSS_RTOL)
    assert max_difference(adapter(out), adapter(single_process_reference)) <= DDP_WEIGHT_ATOL


@pytest.mark.distributed
def test_deepspeed_zero2_matches_single_process(single_process_reference, tiny_model_dir, demo_data, tmp_path):
    out = str(tmp_path / "zero2")
    result = launch(2, DEMO, *COMMON, "--deepspeed", ZERO2, *demo_overrides(tiny_model_dir, demo_data, out))
    check_two_rank_run(result, out, "DeepSpeedEngine", single_process_reference)
    ranks = json.load(open(os.path.join(out, "model_info.json")))["ranks"]
    assert {r["distributed_type"] for r in ranks} == {"DEEPSPEED"}
    # ZeRO-2 state was written by both ranks (optimizer partitions).
    global_step = os.path.join(out, f"checkpoint-{STEPS}", f"global_step{STEPS}")
    assert len([n for n in os.listdir(global_step) if "optim_states" in n]) == 2
    assert step_losses(out, STEPS) == pytest.approx(step_losses(single_process_reference, STEPS), rel=LOSS_RTOL)
    assert max_difference(adapter(out), adapter(single_process_reference)) <= DEEPSPEED_WEIGHT_ATOL

    # Resuming the 2-rank ZeRO-2 run from checkpoint-2 (optimizer partitions, RNG per rank) ends exactly there.
    resumed = tmp_path / "zero2-resumed"
    shutil.copytree(os.path.join(out, "checkpoint-2"), resumed / "checkpoint-2")
    result = launch(2, DEMO, *COMMON, "--deepspeed", ZERO2, "--resume_from_checkpoint", "latest",
                    *demo_overrides(tiny_model_dir, demo_data, str(resumed)))
    assert result.returncode == 0, result.stderr[-4000:]
    assert step_losses(str(resumed), STEPS)[-1] == step_losses(out, STEPS)[-1]
    assert max_difference(adapter(str(resumed)), adapter(out)) <= 1e-6
