"""torchrun worker for test_data_distributed.py: one rank's batches through accelerate's dataloader preparation.

Usage: torchrun --nproc_per_node 2 tests/distributed_sampler_worker.py METADATA OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys

import torch
from accelerate import Accelerator

from hf_easyanimate.data import (
    BucketBatchSampler,
    DataProblem,
    DataProblemLog,
    PlanConfig,
    SampleIndex,
    load_metadata,
    unshard_batch_sampler,
)
from hf_easyanimate.data.problems import gather_problem_logs


class IndexOnly(torch.utils.data.Dataset):
    """Returns what the sampler sent: no files are read, the test is about which index goes where."""

    def __len__(self) -> int:
        return 10**9

    def __getitem__(self, item):
        index, plan = item
        return {"index": index, "bucket": plan.bucket, "size": [plan.height, plan.width, plan.max_frames]}


def collate(samples):
    return {"indices": torch.tensor([s["index"] for s in samples]), "buckets": [s["bucket"] for s in samples],
            "sizes": [s["size"] for s in samples]}


def main(meta_path: str, out_dir: str) -> None:
    accelerator = Accelerator(cpu=True)
    rank, world = accelerator.process_index, accelerator.num_processes
    meta = load_metadata(meta_path)
    index = SampleIndex.build(meta, meta.usable, video_repeat=1, enable_bucket=True)
    config = PlanConfig(image_sample_size=1024, video_sample_size=256, token_sample_size=512, video_sample_n_frames=49,
                        enable_bucket=True, random_hw_adapt=True, training_with_video_token_length=True)
    sampler = BucketBatchSampler(index, 4, config, seed=42, num_replicas=world, rank=rank)
    loader = torch.utils.data.DataLoader(IndexOnly(), batch_sampler=sampler, collate_fn=collate, num_workers=1)
    prepared = unshard_batch_sampler(accelerator.prepare(loader), sampler)
    result = {"rank": rank, "world": world, "len": len(prepared), "epochs": []}
    for epoch in range(2):
        prepared.set_epoch(epoch)
        batches = [{"indices": b["indices"].tolist(), "buckets": b["buckets"], "sizes": b["sizes"]} for b in prepared]
        result["epochs"].append(batches)
    log = DataProblemLog([DataProblem(rank, f"file-of-rank-{rank}.mp4", "missing_file", "test")])
    merged = gather_problem_logs(log)
    result["gathered_problem_files"] = sorted(p.file for p in merged.problems)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
