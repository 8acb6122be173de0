"""All ranks agree to skip an update when any one of them sees a non-finite loss (two gloo processes)."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, port: int, results: mp.SimpleQueue) -> None:
    from hf_easyanimate.training.guards import NonFiniteLossGuard

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        guard = NonFiniteLossGuard()
        # Step A: only rank 0 overflows. Step B: both are finite. Step C: only rank 1 is inf.
        losses = {0: [float("nan"), 1.0, 2.0], 1: [0.5, 1.5, float("inf")]}[rank]
        results.put((rank, [guard.should_skip(torch.tensor(loss)) for loss in losses]))
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_every_rank_skips_when_any_rank_is_nonfinite():
    results = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_worker, args=(_free_port(), results), nprocs=2, join=True)
    assert dict(results.get() for _ in range(2)) == {0: [True, False, True], 1: [True, False, True]}
