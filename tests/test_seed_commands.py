"""The seed command lines of the original README, run through our entry point.

Each line is the seed's ``accelerate launch [launcher flags] scripts/train_lora.py [flags]`` with only
``scripts/train_lora.py`` replaced by ``-m hf_easyanimate.train`` and MODEL_NAME / DATASET_NAME /
DATASET_META_NAME pointed at the tiny model and demo data. Additions, all needed only because CI has no GPU
and a short budget (docs/distributed.md lists them):

* ``--max_train_steps 2`` (the brief: two steps, not 100 epochs);
* DeepSpeed lines: ``accelerate launch --num_processes 2`` (accelerate counts GPUs, i.e. 0, by default) and a
  free ``--main_process_port`` (tests may run beside other jobs).

``--mixed_precision bf16`` needs no ``--use_cpu true`` on a machine without a GPU: it trains with bf16 autocast
on the CPU (one info line says so).

Every line must train and save a LoRA in both formats: V5.1 and V5 on the diffusers classes, V4 / V3 / V2 on
the ports in ``hf_easyanimate/models/legacy`` (tiny repos in those releases' Hub layouts). The V2 line names the
original's ``scripts/train_t2iv_lora.py``; it maps to the same entry point.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT

from hf_easyanimate.train import main

LAUNCH_PLAIN = '--mixed_precision="bf16"'
LAUNCH_DEEPSPEED = ("--use_deepspeed --deepspeed_config_file config/zero_stage2_config.json "
                    "--deepspeed_multinode_launcher standard")

_V5_FAMILY = """
  --pretrained_model_name_or_path=$MODEL_NAME --train_data_dir=$DATASET_NAME --train_data_meta=$DATASET_META_NAME
  --config_path "config/{config}" --image_sample_size=1024 --video_sample_size=256 --token_sample_size=512
  --video_sample_stride=3 --video_sample_n_frames=49 --train_batch_size=1 --video_repeat=1
  --gradient_accumulation_steps=1 --dataloader_num_workers=8 --num_train_epochs=100 --checkpointing_steps=100
  --learning_rate=1e-04 --seed=42 --low_vram --output_dir="output_dir" --gradient_checkpointing
  --mixed_precision="bf16" --adam_weight_decay=5e-3 --adam_epsilon=1e-10 --vae_mini_batch=1 --max_grad_norm=0.05
  --random_hw_adapt --training_with_video_token_length --loss_type="{loss}" --enable_bucket {deepspeed}
  --uniform_sampling --train_mode="inpaint"
"""
_V4 = """
  --pretrained_model_name_or_path=$MODEL_NAME --train_data_dir=$DATASET_NAME --train_data_meta=$DATASET_META_NAME
  --config_path "config/easyanimate_video_v4_slicevae_multi_text_encoder.yaml" --image_sample_size=512
  --video_sample_size=512 --video_sample_stride=1 --video_sample_n_frames=144 --train_batch_size=1
  --video_repeat=1 --gradient_accumulation_steps=1 --dataloader_num_workers=4 --num_train_epochs=100
  --checkpointing_steps=100 --learning_rate=1e-04 --seed=42 --low_vram --output_dir="output_dir"
  --enable_xformers_memory_efficient_attention --gradient_checkpointing --mixed_precision="bf16"
  --adam_weight_decay=3e-2 --adam_epsilon=1e-10 --vae_mini_batch=1 --max_grad_norm=0.05 --random_hw_adapt
  --motion_sub_loss --loss_type="ddpm" --enable_bucket {deepspeed} --train_mode="inpaint"
"""
_V3_V2 = """
  --pretrained_model_name_or_path=$MODEL_NAME --train_data_dir=$DATASET_NAME --train_data_meta=$DATASET_META_NAME
  --config_path "config/{config}" --image_sample_size=512 --video_sample_size=512 --video_sample_stride=1
  --video_sample_n_frames=144 --train_batch_size=1 --video_repeat=1 --gradient_accumulation_steps=1
  --dataloader_num_workers=4 --num_train_epochs=100 --checkpointing_steps=100 --learning_rate=1e-04 --seed=42
  --low_vram --output_dir="output_dir" --enable_xformers_memory_efficient_attention --gradient_checkpointing
  --mixed_precision="bf16" --adam_weight_decay=3e-2 --adam_epsilon=1e-10 --max_grad_norm=1 --vae_mini_batch=1
  --enable_bucket {inpaint}
"""
V51 = "easyanimate_video_v5.1_magvit_qwen.yaml"
V5 = "easyanimate_video_v5_magvit_multi_text_encoder.yaml"
# name -> (launcher flags, script flags)
SEED_COMMANDS = {
    "v5.1": (LAUNCH_PLAIN, _V5_FAMILY.format(config=V51, loss="flow", deepspeed="")),
    "v5.1-deepspeed": (LAUNCH_DEEPSPEED, _V5_FAMILY.format(config=V51, loss="flow", deepspeed="--use_deepspeed")),
    "v5": (LAUNCH_PLAIN, _V5_FAMILY.format(config=V5, loss="ddpm", deepspeed="")),
    "v5-deepspeed": (LAUNCH_DEEPSPEED, _V5_FAMILY.format(config=V5, loss="ddpm", deepspeed="--use_deepspeed")),
    "v4": (LAUNCH_PLAIN, _V4.format(deepspeed="")),
    "v4-deepspeed": (LAUNCH_DEEPSPEED, _V4.format(deepspeed="--use_deepspeed")),
    "v3": (LAUNCH_PLAIN, _V3_V2.format(config="easyanimate_video_v3_slicevae_motion_module.yaml",
                                       inpaint='--train_mode="inpaint"')),
    "v2": (LAUNCH_PLAIN, _V3_V2.format(config="easyanimate_video_v2_magvit_motion_module.yaml", inpaint="")),
}
# The seed's config/zero_stage2_config.json (see docs/distributed.md).
SEED_ZERO2 = {
    "bf16": {"enabled": True}, "train_micro_batch_size_per_gpu": 1, "train_batch_size": "auto",
    "gradient_accumulation_steps": "auto", "dump_state": True,
    "zero_optimization": {"stage": 2, "overlap_comm": True, "contiguous_gradients": True, "sub_group_size": 1e9,
                          "reduce_bucket_size": 5e8},
}
CPU_ADDITIONS = ["--max_train_steps", "2"]

def seed_argv(name: str, model: str, meta: str) -> tuple[list[str], list[str]]:
    """(launcher flags, script flags) of a seed line with the paths replaced, as the shell would split them."""
    launcher, script = SEED_COMMANDS[name]
    values = {"MODEL_NAME": model, "DATASET_NAME": os.path.dirname(meta) + "/", "DATASET_META_NAME": meta}
    for key, value in values.items():
        script = script.replace(f"${key}", value)
    return shlex.split(launcher), shlex.split(script) + CPU_ADDITIONS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def seed_workdir(tmp_path) -> str:
    """A working directory laid out like the original repo's: config/zero_stage2_config.json is there."""
    os.makedirs(tmp_path / "config")
    (tmp_path / "config" / "zero_stage2_config.json").write_text(json.dumps(SEED_ZERO2))
    return str(tmp_path)


def accelerate_launch(workdir: str, launcher: list[str], script: list[str]) -> subprocess.CompletedProcess:
    if "--use_deepspeed" in launcher:
        launcher = ["--num_processes", "2", "--main_process_port", str(free_port()), *launcher]
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "HF_HOME": os.path.join(workdir, "hf_home"), "OMP_NUM_THREADS": "1"}  # no stray accelerate config
    command = [sys.executable, "-m", "accelerate.commands.launch", *launcher, "-m", "hf_easyanimate.train", *script]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)


def check_trained(result: subprocess.CompletedProcess, workdir: str, deepspeed: bool) -> None:
    assert result.returncode == 0, result.stderr[-4000:]
    out = os.path.join(workdir, "output_dir")
    assert os.path.isfile(os.path.join(out, "adapter_model.safetensors"))
    state = json.load(open(os.path.join(out, "checkpoint-2", "trainer_state.json")))
    assert state["global_step"] == 2 and len([e for e in state["log_history"] if "loss" in e]) == 2
    assert state["train_batch_size"] == 1  # --train_batch_size=1 reached Trainer
    # The seed's flags acted: they are what the run trained with.
    args = torch.load(os.path.join(out, "training_args.bin"), weights_only=False)
    assert (args.bf16, args.low_vram, args.vae_mini_batch, args.save_steps) == (True, True, 1, 100)
    assert (args.weight_decay, args.adam_epsilon, args.max_grad_norm) == (5e-3, 1e-10, 0.05)
    assert args.dataloader_num_workers == 8 and args.seed == 42
    assert bool(args.deepspeed) == deepspeed == args.use_deepspeed
    if deepspeed:
        assert args.deepspeed == "config/zero_stage2_config.json"  # the launcher's file, adopted


@pytest.mark.distributed
@pytest.mark.parametrize("name", ["v5.1", "v5.1-deepspeed"])
def test_v51_seed_command_trains_a_lora(name, tiny_inpaint_model_dir, short_demo_data, seed_workdir):
    launcher, script = seed_argv(name, tiny_inpaint_model_dir, short_demo_data)
    check_trained(accelerate_launch(seed_workdir, launcher, script), seed_workdir, name.endswith("deepspeed"))


@pytest.mark.distributed
@pytest.mark.parametrize("name", ["v5", "v5-deepspeed"])
def test_v5_seed_command_trains_a_lora(name, request, short_demo_data, seed_workdir):
    model = request.getfixturevalue("tiny_v5_inpaint_model_dir")
    launcher, script = seed_argv(name, model, short_demo_data)
    check_trained(accelerate_launch(seed_workdir, launcher, script), seed_workdir, name.endswith("deepspeed"))


LEGACY_FIXTURES = {"v4": "v4-inp", "v4-deepspeed": "v4-inp", "v3": "v3-inp", "v2": "v2"}


def check_legacy_trained(workdir: str, name: str, deepspeed: bool) -> None:
    out = os.path.join(workdir, "output_dir")
    for lora_file in ("adapter_model.safetensors", "adapter_config.json", "easyanimate_lora.safetensors"):
        assert os.path.isfile(os.path.join(out, lora_file)), lora_file  # both formats
    state = json.load(open(os.path.join(out, "checkpoint-2", "trainer_state.json")))
    assert state["global_step"] == 2 and len([e for e in state["log_history"] if "loss" in e]) == 2
    args = torch.load(os.path.join(out, "training_args.bin"), weights_only=False)
    assert (args.bf16, args.low_vram, args.vae_mini_batch, args.save_steps, args.seed) == (True, True, 1, 100, 42)
    assert (args.weight_decay, args.adam_epsilon) == (3e-2, 1e-10) and args.dataloader_num_workers == 4
    assert args.max_grad_norm == (0.05 if name.startswith("v4") else 1.0)
    assert args.loss_type == ("ddpm" if name.startswith("v4") else "sigma")  # V3/V2: the checkpoint's objective
    assert bool(args.deepspeed) == deepspeed


@pytest.mark.distributed
def test_v4_deepspeed_seed_command_trains_a_lora(tiny_legacy_dirs, short_demo_data, seed_workdir):
    launcher, script = seed_argv("v4-deepspeed", tiny_legacy_dirs("v4-inp"), short_demo_data)
    result = accelerate_launch(seed_workdir, launcher, script)
    assert result.returncode == 0, result.stderr[-4000:]
    check_legacy_trained(seed_workdir, "v4-deepspeed", deepspeed=True)


@pytest.mark.parametrize("name", ["v4", "v3", "v2"])
def test_legacy_seed_commands_train_a_lora(name, tiny_legacy_dirs, short_demo_data, seed_workdir, monkeypatch, capsys):
    # In-process (the plain launcher adds nothing but bf16, which the line repeats).
    monkeypatch.chdir(seed_workdir)
    _, script = seed_argv(name, tiny_legacy_dirs(LEGACY_FIXTURES[name]), short_demo_data)
    assert main(script) == 0, capsys.readouterr().err[-4000:]
    check_legacy_trained(seed_workdir, name, deepspeed=False)


def test_every_seed_flag_parses_into_our_arguments(tiny_model_dir, demo_data, tmp_path, monkeypatch):
    """All lines, all flags: nothing is unknown, and the dialect lands on the right fields."""
    from hf_easyanimate.trainers.lora_config import parse_args

    monkeypatch.chdir(tmp_path)
    for name in SEED_COMMANDS:
        _, script = seed_argv(name, tiny_model_dir, demo_data)
        # --use_deepspeed needs the launcher's DeepSpeed set-up (tested by the launches above and in
        # test_scale_flags); parse the rest in-process without starting DeepSpeed here.
        model_args, data_args, args = parse_args([flag for flag in script if flag != "--use_deepspeed"])
        assert (args.per_device_train_batch_size, args.save_steps, args.max_steps) == (1, 100, 2), name
        assert args.bf16 and args.low_vram and args.vae_mini_batch == 1, name
        assert args.use_cpu == (not torch.cuda.is_available()), name  # bf16 on the CPU without --use_cpu
        assert args.adam_epsilon == 1e-10 and args.weight_decay in (5e-3, 3e-2), name
        assert args.activation_checkpointing, name
        assert model_args.config_path.startswith("config/easyanimate_video_v"), name
        assert data_args.enable_bucket and args.seed == 42, name
        if name.startswith(("v4", "v3", "v2")):
            assert args.enable_xformers_memory_efficient_attention and data_args.video_sample_n_frames == 144
