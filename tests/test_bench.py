"""Every benchmark still runs: each script in bench/ in its ``--smoke`` mode (smallest size, one round, seconds).

It must exit 0 and print its ``ratio ...`` result lines; a GPU benchmark on a machine without CUDA says so and exits
0. The models are built quietly (no "config attributes ... will be ignored" notice). The figures themselves are
not checked here: they are measured on purpose, at real sizes, and recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT

BENCH = os.path.join(REPO_ROOT, "bench")
SCRIPTS = sorted(name for name in os.listdir(BENCH) if name.endswith(".py") and not name.startswith("_"))
NEEDS_CUDA = {"bench_gpu_memory.py", "bench_gpu_step.py"}
RATIO = re.compile(r"^ratio .+: \d+\.\d{3}x", re.MULTILINE)


def test_every_script_in_bench_is_a_benchmark_with_a_smoke_mode():
    assert len(SCRIPTS) >= 9
    for name in SCRIPTS:
        assert "--smoke" in open(os.path.join(BENCH, name), encoding="utf-8").read(), name


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_benchmark_runs_in_smoke_mode_and_prints_its_ratios(script, tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TMPDIR": str(tmp_path)}
    result = subprocess.run([sys.executable, os.path.join(BENCH, script), "--smoke"], capture_output=True, text=True,
                            env=env, cwd=str(tmp_path), timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    if script in NEEDS_CUDA and not torch.cuda.is_available():
        assert "CUDA" in result.stdout and "nothing measured" in result.stdout or "no CUDA device" in result.stdout
        return
    assert RATIO.search(result.stdout), result.stdout[-2000:]
    assert "will be ignored" not in result.stdout + result.stderr
