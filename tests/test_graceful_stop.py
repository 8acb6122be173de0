"""Ctrl-C / SIGTERM finish the step, write checkpoint-N and the LoRA, say how to resume, exit 130 / 143.

The 2-process torchrun run is stopped by SIGTERM to its whole process group (what ``scancel`` and a container
runtime do); resuming it reaches the weights of the same run left uninterrupted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from conftest import RECIPES, REPO_ROOT, demo_overrides
from safetensors.torch import load_file

from hf_easyanimate.training import signals
from hf_easyanimate.training.signals import GracefulStop

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")
ENV = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
STEP_LINE = re.compile(r"'loss':")


class Run:
    """A training subprocess whose stdout is read as it comes; ``wait_for_logged_steps`` blocks until N loss lines."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=ENV, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.stdout: list[str] = []
        self.stderr = ""
        self.logged = threading.Semaphore(0)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._stderr_thread = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_thread.start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            self.stdout.append(line)
            if STEP_LINE.search(line):
                self.logged.release()

    def _read_stderr(self) -> None:
        self.stderr = self.process.stderr.read()

    def wait_for_logged_steps(self, count: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        for _ in range(count):
            assert self.logged.acquire(timeout=max(0.0, deadline - time.monotonic())), self.stderr[-3000:]

    def finish(self, timeout: float = 300) -> int:
        code = self.process.wait(timeout=timeout)
        self._stderr_thread.join(timeout=30)
        return code


def train_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hf_easyanimate.cli", "train", DEMO, *args]


def trainer_state(folder: str) -> dict:
    with open(os.path.join(folder, "trainer_state.json"), encoding="utf-8") as handle:
        return json.load(handle)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_finishes_the_step_checkpoints_and_says_how_to_resume(signum, code, tiny_model_dir, demo_data,
                                                                     tmp_path):
    out = str(tmp_path / "run")
    run = Run(train_command(*demo_overrides(tiny_model_dir, demo_data, out), "--max_steps", "500",
                            "--logging_steps", "1", "--save_steps", "1000"))
    run.wait_for_logged_steps(3)
    os.kill(run.process.pid, signum)
    assert run.finish() == code
    match = re.search(r"hf-easyanimate: stopped at step (\d+); resume with --resume_from_checkpoint latest",
                      run.stderr)
    assert match, run.stderr[-3000:]
    step = int(match.group(1))
    assert 3 <= step < 500 and "Traceback" not in run.stderr
    checkpoint = os.path.join(out, f"checkpoint-{step}")
    assert trainer_state(checkpoint)["global_step"] == step  # complete: Trainer writes this file last
    assert os.path.isfile(os.path.join(checkpoint, "optimizer.pt"))
    for name in ("adapter_model.safetensors", "easyanimate_lora.safetensors", "trainer_state.json"):
        assert os.path.isfile(os.path.join(out, name)), name  # the LoRA at the top of output_dir too


def test_a_second_ctrl_c_aborts_but_torchruns_forwarded_copy_does_not(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(signals.time, "monotonic", lambda: clock[0])
    stop = GracefulStop()
    stop._handle(signal.SIGINT, None)
    assert stop.received == signal.SIGINT
    clock[0] += 0.2
    stop._handle(signal.SIGINT, None)  # the launcher forwarding the same keypress: ignored
    stop._handle(signal.SIGTERM, None)  # a repeated SIGTERM (torchrun's shutdown): ignored
    clock[0] += 2.0
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)


def test_data_loader_workers_leave_stop_signals_to_the_main_process():
    code = ("import signal; from hf_easyanimate.training.signals import seed_worker_for_training as s; "
            "s(0, num_workers=2, rank=0); "
            "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert result.stdout.split() == ["True", "True"], result.stderr


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "hf_easyanimate.train", DEMO, *args]


def lora(folder: str) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(folder, "adapter_model.safetensors"))


@pytest.mark.distributed
@pytest.mark.timeout(900)
def test_sigterm_under_torchrun_stops_both_ranks_at_one_step_and_resumes_exactly(tiny_model_dir, demo_data,
                                                                                 tmp_path):
    steps = "14"
    common = ["--logging_steps", "1", "--save_steps", "1000", "--per_device_train_batch_size", "1",
              "--dataloader_num_workers", "1"]
    reference = str(tmp_path / "reference")
    result = subprocess.run(torchrun(*demo_overrides(tiny_model_dir, demo_data, reference), *common,
                                     "--max_steps", steps), cwd=REPO_ROOT, env=ENV, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stderr.count("samples in 9 bucket(s)") == 1  # per-process notices: rank 0 only

    out = str(tmp_path / "stopped")
    run = Run(torchrun(*demo_overrides(tiny_model_dir, demo_data, out), *common, "--max_steps", steps))
    run.wait_for_logged_steps(3)
    os.killpg(run.process.pid, signal.SIGTERM)  # the launcher and both workers, as scancel does
    assert run.finish() != 0
    checkpoints = [name for name in os.listdir(out) if name.startswith("checkpoint-")]
    assert len(checkpoints) == 1, (checkpoints, run.stderr[-4000:])
    checkpoint = os.path.join(out, checkpoints[0])
    step = trainer_state(checkpoint)["global_step"]
    assert 3 <= step < int(steps) and checkpoints[0] == f"checkpoint-{step}"
    # Each rank saved its RNG state into the same checkpoint-N: both stopped at that step.
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= set(os.listdir(checkpoint))
    assert f"stopped at step {step}; resume with --resume_from_checkpoint latest" in run.stderr
    assert "Traceback" not in run.stderr.split("stopped at step")[0]

    resumed = subprocess.run(torchrun(*demo_overrides(tiny_model_dir, demo_data, out), *common, "--max_steps",
                                      steps, "--resume_from_checkpoint", "latest"),
                             cwd=REPO_ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    expected, got = lora(reference), lora(out)
    assert expected.keys() == got.keys()
    assert max((expected[k] - got[k]).abs().max().item() for k in expected) <= 1e-6
