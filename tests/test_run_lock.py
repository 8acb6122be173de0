"""One job per folder: a second train into a running job's output_dir (or precompute into its cache) refuses in one
line naming the running job; the lock of a job killed with SIGKILL is taken over by the next run."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import RECIPES, REPO_ROOT, demo_overrides, run_cli

from hf_easyanimate.assembly import run
from hf_easyanimate.cli import main
from hf_easyanimate.trainers.lora_config import parse_args
from hf_easyanimate.training.run_lock import LOCK_NAME, FolderLock, FolderLockedError

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")


def wait_for(path: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not os.path.exists(path):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def test_two_trains_into_one_output_dir_exactly_one_runs_and_a_killed_holder_is_taken_over(
        tiny_model_dir, demo_data, tmp_path, caplog):
    out = str(tmp_path / "out")
    args = [DEMO, *demo_overrides(tiny_model_dir, demo_data, out), "--save_steps", "1000"]
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    first = subprocess.Popen([sys.executable, "-m", "hf_easyanimate.cli", "train", *args, "--max_steps", "100000"],
                             cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(os.path.join(out, LOCK_NAME), first)
        second = run_cli("train", *args, "--max_steps", "2")
        assert second.returncode == 2, second.stderr[-3000:]
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
        assert f"--output_dir {out} is in use by another job (pid {first.pid} on {socket.gethostname()}" in lines[0]
        assert first.poll() is None  # the running job was not disturbed
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    assert first.returncode == -signal.SIGKILL
    assert os.path.exists(os.path.join(out, LOCK_NAME))  # a kill -9 leaves the lock behind

    with caplog.at_level(logging.WARNING):
        trainer = run(*parse_args([*args, "--max_steps", "2"]))
    assert trainer.state.global_step == 2
    assert any("taking over the lock of a job that is gone" in r.getMessage() and str(first.pid) in r.getMessage()
               for r in caplog.records)
    assert not os.path.exists(os.path.join(out, LOCK_NAME))  # released at the end of the run


def test_a_lock_from_another_host_is_not_guessed_stale(tmp_path):
    with open(tmp_path / LOCK_NAME, "w") as handle:
        json.dump({"pid": 1, "host": "node-17", "started": time.time(), "command": "hf-easyanimate train x.yaml"},
                  handle)
    with pytest.raises(FolderLockedError) as refused:
        FolderLock(str(tmp_path)).acquire()
    message = str(refused.value)
    assert "pid 1 on node-17" in message and "hf-easyanimate train x.yaml" in message
    assert f"delete {tmp_path / LOCK_NAME}" in message


def test_a_live_holder_on_this_host_keeps_its_lock_and_an_empty_lock_file_is_named(tmp_path):
    with FolderLock(str(tmp_path)):
        with pytest.raises(FolderLockedError, match=f"pid {os.getpid()}"):
            FolderLock(str(tmp_path)).acquire()  # a second job in this very process, too
    assert not os.path.exists(tmp_path / LOCK_NAME)
    open(tmp_path / LOCK_NAME, "w").close()
    with pytest.raises(FolderLockedError, match="lock file is empty or damaged"):
        FolderLock(str(tmp_path)).acquire()


def test_precompute_refuses_a_cache_another_precompute_holds(tiny_model_dir, demo_data, tmp_path, capsys):
    cache = str(tmp_path / "latents")
    with FolderLock(cache, "--latent_cache_dir"):
        code = main(["precompute", DEMO, *demo_overrides(tiny_model_dir, demo_data, str(tmp_path / "run")),
                     "--latent_cache_dir", cache])
        error = capsys.readouterr().err
        assert code == 2 and "Traceback" not in error, error
        assert f"--latent_cache_dir {cache} is in use by another job (pid {os.getpid()}" in error
        assert not [name for name in os.listdir(cache) if name.endswith(".safetensors")]  # nothing was written
