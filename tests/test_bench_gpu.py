"""The GPU step benchmark runs end to end (only where CUDA exists; docs/benchmarks.md records its output)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_step_benchmark_prints_measurements_and_the_48_layer_extrapolation():
    script = os.path.join(REPO_ROOT, "bench", "bench_gpu_step.py")
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, script, "--layers", "8", "9", "--steps", "1", "--size", "256", "256", "17"],
                            capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("s/step") >= 2 and "extrapolated to 48 layers" in result.stdout


def _bench_memory_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_gpu_memory", os.path.join(REPO_ROOT, "bench",
                                                                                   "bench_gpu_memory.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_memory_benchmark_says_it_needs_cuda_and_exits(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _bench_memory_module().main([]) == 0
    assert "no CUDA device" in capsys.readouterr().out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_memory_benchmark_prints_peaks_beside_the_planner(capsys):
    assert _bench_memory_module().main(["--layers", "8", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("planner") == 2 or "out of memory" in out
