"""A rank that dies ends the whole job: under 2-rank torchrun (gloo), rank 1 is SIGKILLed at the start of a step;
rank 0 fails in that step's collective, says so in one line and exits; the launcher names rank 1; the last
checkpoint is intact, and resuming from it reaches the weights of a run never interrupted."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import RECIPES, REPO_ROOT, demo_overrides
from test_distributed import COMMON, DEEPSPEED_WEIGHT_ATOL, DDP_WEIGHT_ATOL, STEPS, ZERO2, adapter, launch, \
    max_difference

from hf_easyanimate.assembly import run
from hf_easyanimate.trainers.lora_config import parse_args
from hf_easyanimate.training.checkpoints import inspect_checkpoint

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")
KILL_AFTER = 2  # checkpoint-2 is written; rank 1 dies as step 3 begins
BOUNDED = 120  # seconds from the kill to the job's end

# The train command, with a callback that SIGKILLs rank 1 when step KILL_AFTER + 1 begins (after checkpoint-2).
DYING_RANK = textwrap.dedent(
    f"""
    import functools, os, signal, sys, time
    from transformers import TrainerCallback
    from hf_easyanimate.assembly import run
    from hf_easyanimate.commands.common import training_command
    from hf_easyanimate.trainers.lora_config import ARGUMENT_CLASSES, parse_args

    class Die(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if args.process_index == 1 and state.global_step == {KILL_AFTER}:
                open(os.environ["KILLED_AT"], "w").write(str(time.time()))
                os.kill(os.getpid(), signal.SIGKILL)

    sys.exit(training_command(sys.argv[1:], "train", "", ARGUMENT_CLASSES, parse_args,
                              functools.partial(run, callbacks=[Die()])))
    """
)


def launch_dying(out: str, killed_at: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "KILLED_AT": killed_at}
    script = os.path.join(os.path.dirname(out), "dying_rank.py")
    with open(script, "w") as handle:
        handle.write(DYING_RANK)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", script, *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def check_rank_death(tmp_path, model_dir: str, meta: str, atol: float, *extra: str) -> None:
    out, killed_at = str(tmp_path / "killed"), str(tmp_path / "killed_at")
    plain = [DEMO, *COMMON, "--max_steps", str(STEPS + 1)]
    flags = [*plain, *extra]
    died = launch_dying(out, killed_at, *flags, *demo_overrides(model_dir, meta, out))
    ended = time.time()
    assert os.path.exists(killed_at), died.stderr[-4000:]
    assert died.returncode != 0 and ended - float(open(killed_at).read()) < BOUNDED
    said = [line for line in died.stderr.splitlines() if "hf-easyanimate: error: rank 0 of 2" in line]
    assert len(said) == 1 and "a collective failed" in said[0] and "checkpoint-2" in said[0], died.stderr[-4000:]
    assert "rank      : 1 (local_rank: 1)" in died.stderr and "SIGKILL" in died.stderr  # torchrun names rank 1
    assert "[rank0]: Traceback" not in died.stderr
    checkpoint = os.path.join(out, f"checkpoint-{KILL_AFTER}")
    assert inspect_checkpoint(checkpoint).intact
    assert sorted(n for n in os.listdir(out) if n.startswith("checkpoint-")) == [f"checkpoint-{KILL_AFTER}"]
    assert not os.path.exists(os.path.join(out, "adapter_model.safetensors"))

    resumed = launch(2, *flags, "--resume_from_checkpoint", "latest", *demo_overrides(model_dir, meta, out))
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    straight = str(tmp_path / "straight")
    # One process accumulating 2 micro-batches sees the 2 ranks' global batch (see test_distributed).
    run(*parse_args([*plain, "--gradient_accumulation_steps", "2", *demo_overrides(model_dir, meta, straight)]))
    assert max_difference(adapter(out), adapter(straight)) <= atol


@pytest.mark.distributed
def test_a_killed_rank_ends_the_ddp_job_and_the_resume_is_exact(tiny_model_dir, demo_data, tmp_path):
    check_rank_death(tmp_path, tiny_model_dir, demo_data, DDP_WEIGHT_ATOL)


@pytest.mark.slow
@pytest.mark.distributed
def test_a_killed_rank_ends_the_deepspeed_job_and_the_resume_is_exact(tiny_model_dir, demo_data, tmp_path):
    check_rank_death(tmp_path, tiny_model_dir, demo_data, DEEPSPEED_WEIGHT_ATOL, "--deepspeed", ZERO2)
