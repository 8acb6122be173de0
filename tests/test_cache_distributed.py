"""``hf-easyanimate precompute`` under torchrun: each of 2 CPU ranks encodes its share, then 2 ranks train from it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import RECIPES, REPO_ROOT, demo_overrides

from hf_easyanimate.cache import LatentCache

DEMO = os.path.join(RECIPES, "tiny", "cpu_demo.yaml")
pytestmark = pytest.mark.distributed


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=420)


def test_two_ranks_share_precompute_and_train_from_it(tiny_model_dir, demo_data, tmp_path):
    cache, out = str(tmp_path / "latents"), str(tmp_path / "run")
    flags = [DEMO, *demo_overrides(tiny_model_dir, demo_data, out), "--latent_cache_dir", cache,
             "--max_steps", "2", "--save_steps", "100", "--per_device_train_batch_size", "1"]
    encoded = torchrun("hf_easyanimate.cli", "precompute", *flags)
    assert encoded.returncode == 0, encoded.stderr[-3000:]
    assert "rank 0/2): latents: 6 encoded" in encoded.stdout and "rank 1/2): latents: 6 encoded" in encoded.stdout
    shards = os.listdir(cache)
    assert any(name.startswith("rank000") for name in shards) and any(name.startswith("rank001") for name in shards)
    assert len(LatentCache(cache)) >= 12
    trained = torchrun("hf_easyanimate.train", *flags)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert os.path.exists(os.path.join(out, "adapter_model.safetensors"))
