"""Two processes (torchrun, gloo, CPU): the batch sampler through accelerate gives each rank its own batches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT
from datatools import synthetic_rows, write_metadata

from hf_easyanimate.data import SampleIndex, load_metadata


@pytest.mark.distributed
def test_two_ranks_get_disjoint_single_bucket_batches_covering_the_epoch(tmp_path):
    meta_path = write_metadata(str(tmp_path / "meta.jsonl"), synthetic_rows(1000, seed=3))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               os.path.join(REPO_ROOT, "tests", "distributed_sampler_worker.py"), meta_path, str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # torchrun's workers too, not only the launcher
        raise
    assert process.returncode == 0, stderr[-3000:]
    ranks = [json.load(open(tmp_path / f"rank{r}.json")) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]

    meta = load_metadata(meta_path)
    index = SampleIndex.build(meta, meta.usable, video_repeat=1, enable_bucket=True)
    full_batches = int((index.bucket_counts() // 4).sum())
    expected_batches = full_batches - full_batches % 2
    for epoch in range(2):
        per_rank = [r["epochs"][epoch] for r in ranks]
        assert [len(b) for b in per_rank] == [expected_batches // 2] * 2 == [r["len"] for r in ranks]
        for batches in per_rank:
            for batch in batches:
                assert len(batch["indices"]) == 4
                assert len({int(index.buckets[i]) for i in batch["indices"]}) == 1  # one bucket per batch
                assert len(set(batch["buckets"])) == 1 and len({tuple(s) for s in batch["sizes"]}) == 1
        flat = [i for batches in per_rank for batch in batches for i in batch["indices"]]
        assert len(flat) == len(set(flat)) == expected_batches * 4  # disjoint, and together the whole epoch
        left_out = np.setdiff1d(np.arange(len(index)), flat)
        assert (np.bincount(index.buckets[left_out], minlength=len(index.bucket_keys)) < 4 + 4).all()
        assert len(left_out) == len(index) - expected_batches * 4
    assert ranks[0]["epochs"][0] != ranks[0]["epochs"][1]  # a new order each epoch
    assert ranks[0]["gathered_problem_files"] == ranks[1]["gathered_problem_files"] == [
        "file-of-rank-0.mp4", "file-of-rank-1.mp4"]
